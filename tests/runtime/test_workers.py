"""`workers = 2`: two relay processes share the listening port (SO_REUSEPORT); both take
mail, SIGHUP and SIGTERM reach both, and no worker outlives the main process. `cpu_affinity`
binds each worker, with all its threads, to one CPU."""

from __future__ import annotations

import asyncio
import os
import signal

import aiosmtplib
import pytest

from tests.conftest import ROOT, SENDWARDEN
from tests.runtime.test_operations import serve

COMPLIANT = (ROOT / "examples" / "compliant.eml").read_bytes().replace(b"\n", b"\r\n")


async def test_two_workers_share_the_port_and_stop_together(tmp_path, sink, cli_env) -> None:
    s = await serve(tmp_path, f'workers = 2\n[upstream]\nurl = "{sink.url}"\n', cli_env)
    try:
        started = await s.wait_for("worker_started")
        child = started["pid"]
        await _ready_workers(s, 2)
        for _ in range(40):
            client = aiosmtplib.SMTP(hostname="127.0.0.1", port=s.port, start_tls=False)
            await client.connect()
            await client.sendmail("news@shop.example.com", ["reader@example.org"], COMPLIANT)
            await client.quit()
        assert len(sink.received) == 40
        workers = {e.get("worker") for e in s.events if e.get("event") == "message"}
        assert workers == {0, 1}, workers
        mark = len(s.events)
        s.proc.send_signal(signal.SIGHUP)
        while sum(1 for e in s.events[mark:] if e.get("event") == "reloaded") < 2:
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
