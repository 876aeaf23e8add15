"""`workers = 2`: two relay processes share the listening port (SO_REUSEPORT); both take
mail, SIGHUP and SIGTERM reach both, and no worker outlives the main process."""

from __future__ import annotations

import asyncio
import os
import signal

import aiosmtplib

from tests.conftest import ROOT
from tests.test_operations import serve

COMPLIANT = (ROOT / "examples" / "compliant.eml").read_bytes().replace(b"\n", b"\r\n")


async def test_two_workers_share_the_port_and_stop_together(tmp_path, sink, cli_env) -> None:
    s = await serve(tmp_path, f'workers = 2\n[upstream]\nurl = "{sink.url}"\n', cli_env)
    try:
        started = await s.wait_for("worker_started")
        child = started["pid"]
        # The child is ready when its own "ready" line arrives.
        deadline = asyncio.get_running_loop().time() + 30
        while sum(1 for e in s.events if e.get("event") == "ready") < 2:
            assert asyncio.get_running_loop().time() < deadline, s.events[-5:]
            await asyncio.sleep(0.1)
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
