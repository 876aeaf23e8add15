"""Running it in production: reload, rate limits, PROXY protocol, metrics and health, status,
sd_notify, and the systemd unit."""

from __future__ import annotations

import asyncio
import json
import shutil
import signal
import socket
import struct
import subprocess
import time

import aiohttp
import aiosmtplib
import pytest
from prometheus_client.parser import text_string_to_metric_families

from proxy.policy.loader import load_policy
from proxy.replies import Replies
from tests.conftest import ROOT, SENDWARDEN, write_policy
from tests.support.smtpclient import RawClient, enhanced, send_one, line_start
from tests.runtime.test_serve_process import free_port

PLAIN = (ROOT / "examples" / "plain.eml").read_bytes().replace(b"\n", b"\r\n")
COMPLIANT = (ROOT / "examples" / "compliant.eml").read_bytes().replace(b"\n", b"\r\n")
REFUSED, HELD, RELAYED = Replies.policy_reject([], ""), Replies.quarantined(""), Replies.relayed("", "")
LIMITED = Replies.rate_limited("")

QUARANTINE_ALL = '[actions]\n"unsubscribe.*" = "quarantine"\n'


class Serve:
    """A `sendwarden serve` process whose JSON log lines are collected as they come."""

    def __init__(self, proc: asyncio.subprocess.Process, port: int) -> None:
        self.proc, self.port = proc, port
        self.events: list[dict] = []
        self._new = asyncio.Event()
        self._reader = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        async for line in self.proc.stdout:
            try:
                self.events.append(json.loads(line))
            except ValueError:
                self.events.append({"event": "raw", "line": line.decode("utf-8", "replace")})
            self._new.set()

    async def wait_for(self, event: str, after: int = 0, timeout: float = 20) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            for e in self.events[after:]:
                if e.get("event") == event:
                    return e
            self._new.clear()
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"no {event!r} in {self.events[-5:]}"
            try:
                await asyncio.wait_for(self._new.wait(), remaining)
            except asyncio.TimeoutError:
                pass

    async def stop(self) -> int:
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
        rc = await asyncio.wait_for(self.proc.wait(), 20)
        self._reader.cancel()
        return rc


async def serve(tmp_path, config_text: str, env: dict[str, str], *args: str) -> Serve:
    port = free_port()
    config = tmp_path / "sendwarden.toml"
    # One process unless the test asks for workers: these tests read one process's log. No
    # resolver outside the machine: recipient domains are not resolved.
    one = "" if "workers" in config_text else "workers = 1\n"
    config.write_text(f'state_dir = "{tmp_path / "var"}"\n{one}' + config_text + "\n[recipients]\nverify_domains = false\n")
    proc = await asyncio.create_subprocess_exec(
        *SENDWARDEN, "serve", "--config", str(config), "--listen", f"127.0.0.1:{port}", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, env=env,
    )
    s = Serve(proc, port)
    await s.wait_for("ready")
    return s


# -- reload ------------------------------------------------------------------------------------------

async def test_sighup_swaps_a_valid_policy_and_keeps_the_old_on_error(tmp_path, sink, cli_env) -> None:
    policy = write_policy(tmp_path, '[actions]\n"unsubscribe.*" = "reject"\n')
    s = await serve(tmp_path, f'policy = "{policy}"\n[upstream]\nurl = "{sink.url}"\n', cli_env)
    try:
        assert (await send_one(s.port, PLAIN))[0] == REFUSED.code
        policy.write_text(QUARANTINE_ALL)
        mark = len(s.events)
        s.proc.send_signal(signal.SIGHUP)
        await s.wait_for("reloaded", mark)
        code, text = await send_one(s.port, PLAIN)
        assert (code, enhanced(text)) == (HELD.code, HELD.enhanced)
        # A broken policy is refused with the error logged, and the old one stays.
        policy.write_text('[actions]\n"unsubscribe.*" = "bounce"\n')
        mark = len(s.events)
        s.proc.send_signal(signal.SIGHUP)
        failed = await s.wait_for("reload_failed", mark)
        assert f"{policy}:2: actions" in failed["error"]
        code, text = await send_one(s.port, PLAIN)
        assert (code, enhanced(text)) == (HELD.code, HELD.enhanced)
    finally:
        assert await s.stop() == 0


async def test_transaction_in_flight_keeps_its_policy(start_relay, sink, tmp_path) -> None:
    relay = await start_relay(policy=QUARANTINE_ALL)
    strict = write_policy(tmp_path, '[actions]\n"unsubscribe.*" = "reject"\n', "strict.toml")
    relay.reload_source = lambda: (relay.config, load_policy(strict))
    c = await RawClient.connect(relay.port)
    await c.reply()
    await c.cmd("EHLO client.test")
    assert (await c.cmd("MAIL FROM:<news@shop.example.com>")).startswith(line_start(Replies.sender_ok()))
    assert await relay.reload()
    assert (await c.cmd("RCPT TO:<a@example.org>")).startswith(line_start(Replies.recipient_ok()))
    assert (await c.cmd("DATA")).startswith("354")
    await c.send(PLAIN + b".\r\n")
    assert (await c.reply()).startswith(line_start(HELD))  # the policy of its MAIL FROM
    await c.close()
    assert (await send_one(relay.port, PLAIN))[0] == REFUSED.code  # the next one: the new policy


# -- rate limits -------------------------------------------------------------------------------------

async def test_rate_limit_per_client_answers_451_and_recovers(start_relay, sink) -> None:
    relay = await start_relay({"rate_limits": [{"name": "per-client", "per": "client_ip", "messages": 2, "window": 1}]})
    assert (await send_one(relay.port, COMPLIANT))[0] == RELAYED.code
    assert (await send_one(relay.port, COMPLIANT))[0] == RELAYED.code
    code, text = await send_one(relay.port, COMPLIANT)
    assert (code, enhanced(text)) == (LIMITED.code, LIMITED.enhanced) and "per-client" in text
    await asyncio.sleep(1.1)
    assert (await send_one(relay.port, COMPLIANT))[0] == RELAYED.code
    assert len(sink.received) == 3


async def test_recipient_domain_shaping_and_separate_bounce_budget(start_relay, sink) -> None:
    relay = await start_relay({"rate_limits": [
        {"name": "gmail", "per": "recipient_domain", "recipients": 2, "domains": ["gmail.com"], "classes": ["marketing"]},
    ]})
    client = aiosmtplib.SMTP(hostname="127.0.0.1", port=relay.port, start_tls=False)
    await client.connect()
    await client.mail("news@shop.example.com")
    await client.rcpt("a@gmail.com")
    await client.rcpt("b@gmail.com")
    with pytest.raises(aiosmtplib.SMTPRecipientRefused) as exc:
        await client.rcpt("c@gmail.com")
    assert (exc.value.code, enhanced(exc.value.message)) == (LIMITED.code, LIMITED.enhanced)
    await client.rcpt("d@example.org")  # other domains are not shaped
    await client.rset()
    # Bounces (null sender) have their own class: the marketing budget does not starve them.
    await client.mail("")
    await client.rcpt("e@gmail.com")
    await client.quit()


async def test_connection_flood_gets_421(start_relay) -> None:
    relay = await start_relay({"connection_rate": {"per_client": 2, "window": 60}})
    clients = [await RawClient.connect(relay.port) for _ in range(3)]
    replies = [await c.reply() for c in clients]
    assert replies[0].startswith("220") and replies[1].startswith("220")  # aiosmtpd's greeting
    assert replies[2].startswith(line_start(Replies.too_many_connections()))
    for c in clients:
        await c.close()


# -- PROXY protocol ----------------------------------------------------------------------------------

def proxy_v2(src: str, dst: str, sport: int, dport: int) -> bytes:
    sig = b"\r\n\r\n\x00\r\nQUIT\n"
    addr = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!HH", sport, dport)
    return sig + bytes([0x21, 0x11]) + struct.pack("!H", len(addr)) + addr


async def mail_from_after(port: int, header: bytes, local: str | None = None) -> str:
    c = await RawClient.connect(port, local=local)
    await c.send(header)
    try:
        await c.reply()
        await c.cmd("EHLO client.test")
        return await c.cmd("MAIL FROM:<news@shop.example.com>")
    finally:
        await c.close()


@pytest.mark.parametrize("version", [1, 2])
async def test_proxy_header_sets_the_client_address_for_policy(start_relay, version) -> None:
    relay = await start_relay({"listeners": [{"name": "lb", "address": "127.0.0.1:0", "proxy_protocol": True,
                                              "proxy_networks": ["127.0.0.1/32", "127.0.0.2/32"]}]})

    def header(src: str) -> bytes:
        return f"PROXY TCP4 {src} 127.0.0.1 40000 25\r\n".encode() if version == 1 else proxy_v2(src, "127.0.0.1", 40000, 25)

    # The real client is outside relay_networks although the balancer (127.0.0.1) is inside.
    assert (await mail_from_after(relay.port, header("192.0.2.10"))).startswith(line_start(Replies.relay_denied()))
    # And the other way round: a balancer at 127.0.0.2 forwarding a client at 127.0.0.1.
    assert (await mail_from_after(relay.port, header("127.0.0.1"), local="127.0.0.2")).startswith(line_start(Replies.sender_ok()))


async def test_proxy_header_is_refused_where_not_configured(start_relay) -> None:
    relay = await start_relay()
    c = await RawClient.connect(relay.port, local="127.0.0.2")
    assert (await c.reply()).startswith("220")
    reply = await c.cmd("PROXY TCP4 127.0.0.1 127.0.0.1 40000 25")
    assert reply.startswith("500")  # aiosmtpd's answer to a command it does not know
    await c.cmd("EHLO client.test")
    assert (await c.cmd("MAIL FROM:<news@shop.example.com>")).startswith(line_start(Replies.relay_denied()))
    await c.close()


async def test_proxy_header_only_from_the_balancers(start_relay) -> None:
    relay = await start_relay({"listeners": [{"name": "lb", "address": "127.0.0.1:0", "proxy_protocol": True,
                                              "proxy_networks": ["127.0.0.3/32"]}]})
    c = await RawClient.connect(relay.port)
    await c.send(b"PROXY TCP4 127.0.0.1 127.0.0.1 40000 25\r\n")
    with pytest.raises((ConnectionError, asyncio.IncompleteReadError)):
        await c.reply()
    await c.close()


# -- metrics, health, status -------------------------------------------------------------------------

async def scrape(address: tuple[str, int], path: str = "/metrics") -> tuple[int, str]:
    async with aiohttp.ClientSession() as http:
        async with http.get(f"http://{address[0]}:{address[1]}{path}") as resp:
            return resp.status, await resp.text()


async def test_metrics_after_traffic(start_relay, sink) -> None:
    relay = await start_relay({"metrics": {"address": "127.0.0.1:0"}})
    assert (await send_one(relay.port, COMPLIANT))[0] == RELAYED.code
    assert (await send_one(relay.port, PLAIN))[0] == REFUSED.code
    status, text = await scrape(relay.ops_address)
    assert status == 200
    samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    assert samples[("sendwarden_messages_total", (("action", "relay"), ("stream", "marketing")))] == 1
    assert samples[("sendwarden_messages_total", (("action", "reject"), ("stream", "marketing")))] == 1
    assert samples[("sendwarden_findings_total", (("action", "reject"), ("rule", "unsubscribe.header_missing")))] == 1
    assert samples[("sendwarden_upstream_replies_total", (("reply_class", "2xx"),))] == 1
    assert samples[("sendwarden_policy_seconds_count", ())] == 2
    assert samples[("sendwarden_upstream_seconds_count", ())] == 1
    assert samples[("sendwarden_messages_last_hour", (("action", "relay"),))] == 1
    assert samples[("sendwarden_quarantine_held", ())] == 0
    assert samples[("sendwarden_upstream_up", ())] == 1


async def test_healthz_follows_the_upstream(start_relay, sink) -> None:
    relay = await start_relay({"metrics": {"address": "127.0.0.1:0"}})
    status, body = await scrape(relay.ops_address, "/healthz")
    assert status == 200 and json.loads(body)["ok"] is True
    await sink.stop()
    await relay.probe_upstream()
    status, body = await scrape(relay.ops_address, "/healthz")
    assert status == 503 and json.loads(body)["upstream"] is False


async def test_status_command_summarises(start_relay, sink, cli_env) -> None:
    relay = await start_relay({"metrics": {"address": "127.0.0.1:0"}})
    assert (await send_one(relay.port, COMPLIANT))[0] == RELAYED.code
    url = f"http://{relay.ops_address[0]}:{relay.ops_address[1]}/metrics"
    proc = await asyncio.create_subprocess_exec(*SENDWARDEN, "status", "--url", url, stdout=asyncio.subprocess.PIPE, env=cli_env)
    out, _ = await proc.communicate()
    assert proc.returncode == 0
    text = out.decode()
    assert "last hour     1 relayed, 0 held, 0 rejected" in text and "upstream      up" in text
    proc = await asyncio.create_subprocess_exec(*SENDWARDEN, "status", "--url", url, "--json", stdout=asyncio.subprocess.PIPE, env=cli_env)
    out, _ = await proc.communicate()
    assert json.loads(out)["last_hour"]["relay"] == 1


# -- sd_notify and systemd ---------------------------------------------------------------------------

async def test_sd_notify_ready_watchdog_reload_stopping(tmp_path, sink, cli_env) -> None:
    path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.setblocking(False)
    env = {**cli_env, "NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "200000"}
    s = await serve(tmp_path, f'[upstream]\nurl = "{sink.url}"\n', env)
    loop = asyncio.get_running_loop()
    got: list[str] = []

    async def until(field: str) -> None:
        while not any(field in d for d in got):
            got.append((await asyncio.wait_for(loop.sock_recv(sock, 4096), 10)).decode())

    try:
        await until("READY=1")
        ready = next(d for d in got if "READY=1" in d)
        assert "STATUS=0 sessions; last hour: 0 relayed" in ready and "upstream up" in ready
        await until("WATCHDOG=1")
        s.proc.send_signal(signal.SIGHUP)
        await until("RELOADING=1")
    finally:
        rc = await s.stop()
    await until("STOPPING=1")
    sock.close()
    assert rc == 0


def test_systemd_unit_verifies_and_is_hardened(tmp_path) -> None:
    assert shutil.which("systemd-analyze"), "systemd-analyze is missing: `make test` installs systemd"
    text = (ROOT / "systemd" / "sendwarden.service").read_text()
    for directive in ("Type=notify", "WatchdogSec=", "ExecReload=/bin/kill -HUP $MAINPID", "User=sendwarden",
                      "NoNewPrivileges=yes", "ProtectSystem=strict", "ReadWritePaths=/var/lib/sendwarden",
                      "PrivateTmp=yes", "ProtectHome=yes", "CapabilityBoundingSet=CAP_NET_BIND_SERVICE",
                      "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX", "SystemCallFilter=@system-service",
                      "MemoryDenyWriteExecute=yes"):
        assert directive in text, directive
    unit = tmp_path / "sendwarden.service"
    unit.write_text(text.replace("/opt/sendwarden/bin/sendwarden", str(ROOT / ".venv" / "bin" / "sendwarden")))
    out = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    for timer in (ROOT / "systemd").glob("*.timer"):
        out = subprocess.run(["systemd-analyze", "verify", str(timer)], capture_output=True, text=True, timeout=60,
                             cwd=ROOT / "systemd")
        assert "timer" not in out.stderr.lower() or out.returncode == 0, out.stderr


async def test_every_log_line_of_a_transaction_carries_its_queue_id(start_relay, sink) -> None:
    import io

    import structlog

    from proxy.audit import configure

    out = io.StringIO()
    configure("info", "json", stream=out)
    try:
        relay = await start_relay({"rate_limits": [{"name": "rcpts", "per": "client_ip", "recipients": 1}]})
        client = aiosmtplib.SMTP(hostname="127.0.0.1", port=relay.port, start_tls=False)
        await client.connect()
        errors, _ = await client.sendmail("news@shop.example.com", ["a@example.org", "b@example.org"], COMPLIANT)
        await client.quit()
        assert list(errors) == ["b@example.org"]
    finally:
        structlog.reset_defaults()
    lines = [json.loads(x) for x in out.getvalue().splitlines()]
    limited = next(x for x in lines if x["event"] == "rate_limited")
    message = next(x for x in lines if x["event"] == "message")
    assert limited["queue_id"] == message["queue_id"]
    assert all(set(x) >= {"timestamp", "level", "event"} for x in lines)
