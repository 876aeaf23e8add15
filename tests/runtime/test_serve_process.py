"""The real `sendwarden serve` process: it starts from a config file, and SIGTERM drains it:
no new connections, transactions in flight finish, then it exits 0."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
from pathlib import Path

import aiosmtplib

from tests.conftest import ROOT, SENDWARDEN
from tests.support.sink import Sink

COMPLIANT = (ROOT / "examples" / "compliant.eml").read_bytes().replace(b"\n", b"\r\n")


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


async def start_serve(tmp_path: Path, upstream: str, env: dict[str, str], *extra: str,
                      top: str = "") -> tuple[asyncio.subprocess.Process, int]:
    port = free_port()
    config = tmp_path / "sendwarden.toml"
    one = "" if "workers" in top else "workers = 1\n"
    config.write_text(f'{top}{one}state_dir = "{tmp_path / "var"}"\n[upstream]\nurl = "{upstream}"\n[timeouts]\nshutdown = 10\n'
                      '[recipients]\nverify_domains = false\n')  # no resolver outside the machine
    proc = await asyncio.create_subprocess_exec(
        *SENDWARDEN, "serve", "--config", str(config), "--listen", f"127.0.0.1:{port}", *extra,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, env=env,
    )
    assert proc.stdout is not None
    while True:
        line = await asyncio.wait_for(proc.stdout.readline(), 20)
        assert line, "serve exited before it was ready"
        if json.loads(line).get("event") == "ready":
            return proc, port


async def test_sigterm_lets_the_transaction_in_flight_finish(tmp_path, sink: Sink, cli_env) -> None:
    sink.behaviour.data_delay = 1.5
    proc, port = await start_serve(tmp_path, sink.url, cli_env)
    try:
        client = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, start_tls=False, timeout=20)
        await client.connect()
        idle = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, start_tls=False, timeout=20)
        await idle.connect()
        sending = asyncio.create_task(client.sendmail("news@shop.example.com", ["reader@example.org"], COMPLIANT))
        while not sink.commands or not any(c.startswith("RCPT") for c in sink.commands):
            await asyncio.sleep(0.02)
        proc.send_signal(signal.SIGTERM)
        await asyncio.sleep(0.3)
        # No new connections once draining.
        try:
            _, w = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 2)
            w.close()
            refused = False
        except (ConnectionError, OSError):
            refused = True
        assert refused
        errors, text = await sending
        assert errors == {} and text.startswith("2.0.0 Ok: relayed")
        assert len(sink.received) == 1
        assert await asyncio.wait_for(proc.wait(), 15) == 0
        idle.close()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_serve_refuses_a_bad_config_in_one_line(tmp_path, cli_env) -> None:
    config = tmp_path / "bad.toml"
    config.write_text("[listeners]\naddress = 5\n")
    proc = await asyncio.create_subprocess_exec(*SENDWARDEN, "serve", "--config", str(config),
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=cli_env)
    out, err = await asyncio.wait_for(proc.communicate(), 20)
    assert proc.returncode == 78  # EX_CONFIG
    assert err.decode() == f"{config}:1: listeners: expected a list, [...]\n"
    assert b"Traceback" not in err


async def test_serve_with_embedded_default_delivers_into_maildir(tmp_path, cli_env) -> None:
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        *SENDWARDEN, "serve", "--listen", f"127.0.0.1:{port}", "--metrics", "", cwd=tmp_path,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, env=cli_env,
    )
    try:
        assert proc.stdout is not None
        # The configuration it uses is said first (README's `make run` is this path).
        note = (await asyncio.wait_for(proc.stdout.readline(), 20)).decode()
        assert note.startswith("sendwarden: using the embedded development configuration") and str(tmp_path) in note
        while json.loads(await asyncio.wait_for(proc.stdout.readline(), 20)).get("event") != "ready":
            pass
        client = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, start_tls=False)
        await client.connect()
        _, text = await client.sendmail("news@shop.example.com", ["reader@example.org"], COMPLIANT)
        await client.quit()
        assert "delivered as" in text
        [delivered] = list((tmp_path / "var" / "outbox" / "new").iterdir())
        assert delivered.read_bytes().endswith(COMPLIANT)
        assert os.stat(delivered).st_mode & 0o077 == 0
    finally:
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 15) == 0


async def test_serve_monitor_flag_relays_everything(tmp_path, sink: Sink, cli_env) -> None:
    proc, port = await start_serve(tmp_path, sink.url, cli_env, "--monitor")
    try:
        client = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, start_tls=False)
        await client.connect()
        plain = (ROOT / "examples" / "plain.eml").read_bytes().replace(b"\n", b"\r\n")
        _, text = await client.sendmail("news@shop.example.com", ["reader@example.org"], plain)
        await client.quit()
        assert text.startswith("2.0.0 Ok: relayed")
        assert b"X-Sendwarden-Findings: monitor would reject; unsubscribe.header_missing" in sink.received[0].data
    finally:
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 15) == 0

