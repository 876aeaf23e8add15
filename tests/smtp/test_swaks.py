"""swaks, an independent SMTP client, against the real relay: what the README shows a newcomer."""

from __future__ import annotations

import asyncio
import shutil

from proxy.replies import Replies
from tests.conftest import ROOT



async def swaks(port: int, *args: str) -> tuple[int, str]:
    assert shutil.which("swaks"), "swaks is not installed: `make test` installs it (Debian package swaks)"
    proc = await asyncio.create_subprocess_exec(
        "swaks", "--server", f"127.0.0.1:{port}", "--from", "news@shop.example.com", "--to", "reader@example.org",
        "--helo", "app.test", *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    return proc.returncode or 0, out.decode("utf-8", "replace")


async def test_swaks_sends_the_compliant_example(start_relay, sink) -> None:
    relay = await start_relay()
    rc, out = await swaks(relay.port, "--data", str(ROOT / "examples" / "compliant.eml"))
    assert rc == 0, out
    assert f"<-  {Replies.relayed('', '')}".split(" id=")[0] in out
    [got] = sink.received
    assert b"Subject: Our autumn collection is here" in got.data


async def test_swaks_plain_example_is_refused_with_rule_ids(start_relay, sink) -> None:
    relay = await start_relay()
    rc, out = await swaks(relay.port, "--data", str(ROOT / "examples" / "plain.eml"))
    assert rc != 0
    assert f"<** {Replies.policy_reject(['unsubscribe.header_missing'], '')}".rstrip(": ") in out
    assert sink.received == []


async def test_swaks_pipelining_and_starttls(start_relay, sink) -> None:
    relay = await start_relay()
    rc, out = await swaks(relay.port, "--pipeline", "--tls", "--data", str(ROOT / "examples" / "compliant.eml"))
    assert rc == 0, out
    assert "STARTTLS" in out and str(Replies.relayed("", "")).split(" id=")[0] in out
    [got] = sink.received
    assert b"with ESMTPS id" in got.data
