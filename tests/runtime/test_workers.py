"""`workers = 2`: two relay processes share the listening port (SO_REUSEPORT); both take
mail, SIGHUP and SIGTERM reach both, and no worker outlives the main process. They share rate
limits, per-client connection counts and metrics; a killed one comes back. `cpu_affinity`
binds each worker, with all its threads, to one CPU."""

from __future__ import annotations

import asyncio
import json
import os
import signal

import aiosmtplib
import pytest
from prometheus_client.parser import text_string_to_metric_families

from proxy.replies import Replies
from tests.conftest import ROOT, SENDWARDEN, write_policy
from tests.runtime.test_operations import scrape, serve
from tests.runtime.test_serve_process import free_port
from tests.support.smtpclient import RawClient, line_start, send_one

COMPLIANT = (ROOT / "examples" / "compliant.eml").read_bytes().replace(b"\n", b"\r\n")


async def test_two_workers_share_the_port_and_stop_together(tmp_path, sink, cli_env) -> None:
    s = await serve(tmp_path, f'workers = 2\n[upstream]\nurl = "{sink.url}"\n', cli_env)
    try:
        started = await s.wait_for("worker_started")
        child = started["pid"]
        await _ready_workers(s, 2)
        for i in range(40):
            client = aiosmtplib.SMTP(hostname="127.0.0.1", port=s.port, start_tls=False, timeout=20)
            try:
                await client.connect()
                await client.sendmail("news@shop.example.com", ["reader@example.org"], COMPLIANT)
                await client.quit()
            except aiosmtplib.SMTPException as exc:
                raise AssertionError(f"message {i}: {exc!r}; the relay's last lines: {s.events[-8:]}") from exc
        assert len(sink.received) == 40
        workers = {e.get("worker") for e in s.events if e.get("event") == "message"}
        assert workers == {0, 1}, workers
        mark = len(s.events)
        s.proc.send_signal(signal.SIGHUP)
        deadline = asyncio.get_running_loop().time() + 60
        while sum(1 for e in s.events[mark:] if e.get("event") == "reloaded") < 2:
            assert asyncio.get_running_loop().time() < deadline, s.events[mark:]
            await asyncio.sleep(0.1)
    finally:
        assert await s.stop() == 0
    try:
        os.kill(child, 0)
        alive = True
    except ProcessLookupError:
        alive = False
    assert not alive, "the worker outlived the main process"


def _cpus_of_every_thread(pid: int) -> set[str]:
    """Cpus_allowed_list of each thread of a process (threads started after the binding inherit
    it; one started before would not)."""
    found = set()
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/status") as f:
            found |= {line.split(":", 1)[1].strip() for line in f if line.startswith("Cpus_allowed_list:")}
    return found


async def _ready_workers(s, n: int) -> None:
    """Wait for `n` "ready" lines: a child is ready when its own arrives."""
    deadline = asyncio.get_running_loop().time() + 30
    while sum(1 for e in s.events if e.get("event") == "ready") < n:
        assert asyncio.get_running_loop().time() < deadline, s.events[-5:]
        await asyncio.sleep(0.1)


async def test_cpu_affinity_auto_puts_each_worker_and_its_threads_on_its_own_cpu(tmp_path, sink, cli_env) -> None:
    allowed = sorted(os.sched_getaffinity(0))
    s = await serve(tmp_path, f'workers = 2\ncpu_affinity = "auto"\n[upstream]\nurl = "{sink.url}"\n', cli_env)
    try:
        started = await s.wait_for("worker_started")
        await _ready_workers(s, 2)
        expected_main, expected_child = str(allowed[0]), str(allowed[1 % len(allowed)])
        assert started["cpu"] == int(expected_child)
        assert _cpus_of_every_thread(s.proc.pid) == {expected_main}
        assert _cpus_of_every_thread(started["pid"]) == {expected_child}
        pinned = {(e["worker"], e["cpu"]) for e in s.events if e.get("event") == "cpu_affinity"}
        assert pinned == {(0, int(expected_main)), (1, int(expected_child))}
        # Pinned workers still take mail.
        client = aiosmtplib.SMTP(hostname="127.0.0.1", port=s.port, start_tls=False)
        await client.connect()
        await client.sendmail("news@shop.example.com", ["reader@example.org"], COMPLIANT)
        await client.quit()
        assert len(sink.received) == 1
    finally:
        assert await s.stop() == 0


async def test_cpu_affinity_list_names_the_cpus_in_turn(tmp_path, sink, cli_env) -> None:
    last = max(os.sched_getaffinity(0))
    s = await serve(tmp_path, f'cpu_affinity = [{last}]\n[upstream]\nurl = "{sink.url}"\n', cli_env)
    try:
        assert _cpus_of_every_thread(s.proc.pid) == {str(last)}
    finally:
        assert await s.stop() == 0


async def test_cpu_affinity_none_leaves_the_process_where_it_was(tmp_path, sink, cli_env) -> None:
    s = await serve(tmp_path, f'[upstream]\nurl = "{sink.url}"\n', cli_env)
    try:
        with open(f"/proc/{s.proc.pid}/status") as f:
            mine = [line for line in f if line.startswith("Cpus_allowed_list:")]
        with open("/proc/self/status") as f:
            assert mine == [line for line in f if line.startswith("Cpus_allowed_list:")]
        assert not [e for e in s.events if e.get("event") == "cpu_affinity"]
    finally:
        assert await s.stop() == 0


@pytest.mark.parametrize("setting, message", [
    ("[4095]", "cpu_affinity: CPU 4095 is not one this process may use"),
    ("[]", ":2: cpu_affinity: must not be empty"),
    ('"all"', ':2: cpu_affinity: expected "none" or "auto", or expected a list, [...]'),
    ("[-1]", ":2: cpu_affinity[0]: must be at least 0"),
])
async def test_a_cpu_affinity_that_cannot_be_met_is_a_one_line_error(tmp_path, cli_env, setting, message) -> None:
    config = tmp_path / "sendwarden.toml"
    config.write_text(f'state_dir = "{tmp_path / "var"}"\ncpu_affinity = {setting}\n')
    proc = await asyncio.create_subprocess_exec(*SENDWARDEN, "serve", "--config", str(config), "--listen", "127.0.0.1:0",
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=cli_env)
    out, err = await asyncio.wait_for(proc.communicate(), 20)
    assert proc.returncode == 78  # EX_CONFIG
    assert message in err.decode() and err.decode().count("\n") == 1
    assert b"Traceback" not in err


# -- what the workers of one host share ------------------------------------------------------------

PLAIN = (ROOT / "examples" / "plain.eml").read_bytes().replace(b"\n", b"\r\n")
REFUSED, RELAYED = Replies.policy_reject([], ""), Replies.relayed("", "")


async def _serve_workers(tmp_path, sink, cli_env, extra: str = "", top: str = "") -> tuple[object, tuple[str, int]]:
    """`sendwarden serve` with two workers and /metrics; returns it and the metrics address
    once both workers are ready."""
    ops_port = free_port()
    s = await serve(tmp_path, f'workers = 2\n{top}[upstream]\nurl = "{sink.url}"\n{extra}', cli_env,
                    "--metrics", f"127.0.0.1:{ops_port}")
    await _ready_workers(s, 2)
    return s, ("127.0.0.1", ops_port)


async def _send_one(port: int, message: bytes = COMPLIANT) -> int:
    """One message on its own connection (the kernel picks the worker per connection)."""
    code, _ = await send_one(port, message)
    return code


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            found[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return found


def _workers_of(s, event: str, after: int = 0) -> set[int]:
    return {e["worker"] for e in s.events[after:] if e.get("event") == event and "worker" in e}


async def test_metrics_healthz_and_status_count_every_worker(tmp_path, sink, cli_env) -> None:
    s, ops = await _serve_workers(tmp_path, sink, cli_env)
    try:
        codes = [await _send_one(s.port) for _ in range(30)] + [await _send_one(s.port, PLAIN) for _ in range(10)]
        assert codes == [RELAYED.code] * 30 + [REFUSED.code] * 10
        assert len(sink.received) == 30
        assert _workers_of(s, "message") == {0, 1}, "the kernel gave every connection to one worker"
        status, text = await scrape(ops)
        assert status == 200
        m = _samples(text)
        assert m[("sendwarden_messages_total", (("action", "relay"), ("stream", "marketing")))] == 30
        assert m[("sendwarden_messages_total", (("action", "reject"), ("stream", "marketing")))] == 10
        assert m[("sendwarden_upstream_replies_total", (("reply_class", "2xx"),))] == 30
        assert m[("sendwarden_policy_seconds_count", ())] == 40
        assert m[("sendwarden_messages_last_hour", (("action", "relay"),))] == 30
        assert m[("sendwarden_connections", ())] == 0
        assert m[("sendwarden_upstream_up", ())] == 1
        assert m[("sendwarden_uptime_seconds", ())] > 0
        status, body = await scrape(ops, "/healthz")
        assert status == 200
        assert json.loads(body)["workers"] == {"running": 2, "configured": 2}
        proc = await asyncio.create_subprocess_exec(*SENDWARDEN, "status", "--url", f"http://{ops[0]}:{ops[1]}/metrics", "--json",
                                                    stdout=asyncio.subprocess.PIPE, env=cli_env)
        out, _ = await proc.communicate()
        assert proc.returncode == 0
        assert json.loads(out)["last_hour"] == {"relay": 30, "quarantine": 0, "reject": 10, "refused": 0}
    finally:
        assert await s.stop() == 0


async def test_a_rate_limit_holds_across_workers(tmp_path, sink, cli_env) -> None:
    limit = '[[rate_limits]]\nname = "per-client"\nper = "client_ip"\nmessages = 10\nwindow = 3600\n'
    s, _ = await _serve_workers(tmp_path, sink, cli_env, extra=limit)
    try:
        codes = [await _send_one(s.port) for _ in range(30)]
        assert codes.count(RELAYED.code) == 10 and codes.count(Replies.rate_limited("").code) == 20, codes
        assert len(sink.received) == 10
        # Both workers refused some: each had its own 10 to give if the bucket were per worker.
        assert _workers_of(s, "rate_limited") == {0, 1}
    finally:
        assert await s.stop() == 0


async def test_connections_per_client_are_counted_on_the_host(tmp_path, sink, cli_env) -> None:
    s, _ = await _serve_workers(tmp_path, sink, cli_env, top="[limits]\nmax_connections_per_client = 4\n")
    try:
        clients = [await RawClient.connect(s.port) for _ in range(12)]
        replies = [await c.reply() for c in clients]
        greeted = [c for c, r in zip(clients, replies, strict=True) if r.startswith("220")]  # aiosmtpd's greeting
        assert len(greeted) == 4, replies
        # Counted per worker, 4 would be greeted only if the kernel had given all 12
        # connections to one worker (2 in 4,096).
        assert sum(r.startswith(line_start(Replies.too_many_connections())) for r in replies) == 8
        for c in clients:
            await c.close()
        # Closed connections are given back: four new ones are greeted again.
        await asyncio.sleep(0.5)
        again = [await RawClient.connect(s.port) for _ in range(4)]
        assert [(await c.reply())[:3] for c in again] == ["220"] * 4
        for c in again:
            await c.close()
    finally:
        assert await s.stop() == 0


async def test_a_killed_worker_is_restarted_and_its_counts_kept(tmp_path, sink, cli_env) -> None:
    s, ops = await _serve_workers(tmp_path, sink, cli_env)
    try:
        first = await s.wait_for("worker_started")
        for _ in range(20):
            assert await _send_one(s.port) == RELAYED.code
        counted = _samples((await scrape(ops))[1])[("sendwarden_messages_total", (("action", "relay"), ("stream", "marketing")))]
        assert counted == 20
        mark = len(s.events)
        os.kill(first["pid"], signal.SIGKILL)
        died = await s.wait_for("worker_died", mark)
        assert died["worker"] == 1 and died["pid"] == first["pid"] and died["status"] == -signal.SIGKILL
        again = await s.wait_for("worker_started", mark)
        assert again["worker"] == 1 and again["pid"] != first["pid"]
        await s.wait_for("ready", mark)
        _, body = await scrape(ops, "/healthz")
        assert json.loads(body)["workers"]["running"] == 2
        for _ in range(20):
            assert await _send_one(s.port) == RELAYED.code
        assert len(sink.received) == 40
        # The audit lines reach us through the log pipe, possibly after the replies: wait for them.
        for _ in range(100):
            if len([e for e in s.events[mark:] if e.get("event") == "message"]) >= 20:
                break
            await asyncio.sleep(0.1)
        assert 1 in _workers_of(s, "message", mark), "the restarted worker took no mail"
        m = _samples((await scrape(ops))[1])
        # The dead worker's counts are still counted; its live gauge is not.
        assert m[("sendwarden_messages_total", (("action", "relay"), ("stream", "marketing")))] == 40
        assert m[("sendwarden_connections", ())] == 0
    finally:
        assert await s.stop() == 0


async def test_sighup_reloads_every_worker(tmp_path, sink, cli_env) -> None:
    policy = write_policy(tmp_path, '[actions]\n"unsubscribe.*" = "reject"\n')
    s, _ = await _serve_workers(tmp_path, sink, cli_env, top=f'policy = "{policy}"\n')
    try:
        before = [await _send_one(s.port, PLAIN) for _ in range(10)]
        assert before == [REFUSED.code] * 10
        policy.write_text('[actions]\n"unsubscribe.*" = "quarantine"\n')
        mark = len(s.events)
        s.proc.send_signal(signal.SIGHUP)
        deadline = asyncio.get_running_loop().time() + 60
        while _workers_of(s, "reloaded", mark) != {0, 1}:
            assert asyncio.get_running_loop().time() < deadline, s.events[mark:][-8:]
            await asyncio.sleep(0.1)
        after = [await _send_one(s.port, PLAIN) for _ in range(20)]
        assert after == [Replies.quarantined("").code] * 20
        assert _workers_of(s, "message", mark) == {0, 1}
    finally:
        assert await s.stop() == 0
