"""ClamAV over clamd's socket: a real clamd (Debian's clamav-daemon, `make test` installs it)
started with a one-signature database of our own, the INSTREAM client against it, and the
relay end to end: a signature found is `attachment.dangerous`; clamd configured but down is
`lookup.failed` (quarantined by default) or relayed regardless, as the policy says."""

from __future__ import annotations

import asyncio
import base64
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import AsyncIterator, Iterator

import pytest

from proxy.facts.clamav import ClamdError, ScanResult, instream, parse_reply
from proxy.replies import Replies
from tests.policy.checks.judging import FOOTER, mail
from tests.support.smtpclient import enhanced, send_one

MARKER = b"SENDWARDEN-TEST-MALWARE-SIGNATURE"
SIGNATURE = "Sendwarden.Test.Marker.UNOFFICIAL"
CLAMD = shutil.which("clamd") or ("/usr/sbin/clamd" if os.path.exists("/usr/sbin/clamd") else None)
needs_clamd = pytest.mark.skipif(CLAMD is None, reason="clamd not installed (Debian clamav-daemon; `make test` installs it)")


@pytest.fixture(scope="module")
def clamd() -> Iterator[str]:
    """A real clamd on a unix socket, with a database holding only our test signature."""
    assert CLAMD is not None
    d = Path(tempfile.mkdtemp(prefix="swclam"))  # short: unix socket paths are limited
    (d / "test.ndb").write_text(f"Sendwarden.Test.Marker:0:*:{MARKER.hex()}\n")
    sock = d / "clamd.sock"
    (d / "clamd.conf").write_text(
        f"DatabaseDirectory {d}\nLocalSocket {sock}\nForeground yes\nLogFile {d}/clamd.log\n"
        f"PidFile {d}/clamd.pid\nStreamMaxLength 25M\n"
    )
    proc = subprocess.Popen([CLAMD, "-c", str(d / "clamd.conf")], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while not sock.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("clamd did not start: " + (d / "clamd.log").read_text(errors="replace")[-2000:])
            time.sleep(0.05)
        yield str(sock)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
async def silent_clamd() -> AsyncIterator[str]:
    """A socket that accepts and never answers: a hung clamd."""
    d = tempfile.mkdtemp(prefix="swsil")
    path = os.path.join(d, "s.sock")
    held: list[asyncio.StreamWriter] = []

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_unix_server(accept, path)
    yield path
    server.close()
    for w in held:
        w.close()
    await server.wait_closed()
    shutil.rmtree(d, ignore_errors=True)


def with_attachment(payload: bytes, name: str = "catalogue.pdf") -> bytes:
    b64 = base64.encodebytes(payload).decode().replace("\n", "\r\n")
    extra = (f'--b\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment; filename="{name}"\r\n'
             f"Content-Transfer-Encoding: base64\r\n\r\n{b64}\r\n")
    return mail(FOOTER, "", extra=extra)


@needs_clamd
async def test_instream_clean_and_found(clamd: str) -> None:
    assert await instream(clamd, with_attachment(b"%PDF-1.4 a catalogue"), 10) == ScanResult()
    found = await instream(clamd, with_attachment(b"%PDF-1.4 " + MARKER), 10)
    assert found.found == (SIGNATURE,)


@needs_clamd
async def test_instream_streams_in_chunks(clamd: str) -> None:
    big = os.urandom(300_000) + MARKER  # several 64 KB chunks
    assert (await instream(clamd, big, 10)).found == (SIGNATURE,)
    assert (await instream(clamd, b"", 10)).found == ()


@pytest.mark.parametrize("reply, result", [
    ("stream: OK", ScanResult()),
    ("stream: Win.Test.EICAR_HDB-1 FOUND", ScanResult(found=("Win.Test.EICAR_HDB-1",))),
])
def test_parse_reply(reply: str, result: ScanResult) -> None:
    assert parse_reply(reply) == result


@pytest.mark.parametrize("reply", ["INSTREAM size limit exceeded. ERROR", "stream: Can't allocate memory ERROR", "", "UNKNOWN COMMAND"])
def test_parse_reply_errors(reply: str) -> None:
    with pytest.raises(ClamdError):
        parse_reply(reply)


async def test_unreachable_clamd() -> None:
    with pytest.raises(ClamdError, match="unreachable"):
        await instream("/nonexistent/clamd.sock", b"x", 2)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, not listening: connections are refused
        with pytest.raises(ClamdError, match="unreachable"):
            await instream(f"tcp:127.0.0.1:{port}", b"x", 2)
    with pytest.raises(ClamdError, match="not tcp:HOST:PORT"):
        await instream("tcp:nohostport", b"x", 2)


async def test_hung_clamd_times_out(silent_clamd: str) -> None:
    t0 = time.monotonic()
    with pytest.raises(ClamdError, match="did not answer within 0.3s"):
        await instream(silent_clamd, b"x" * 1000, 0.3)
    assert time.monotonic() - t0 < 5


def policy_text(address: str, on_unreachable: str = "lookup_failed", scan: str = "attachments",
                lookup_failed: str = "quarantine") -> str:
    return f"""
[actions]
"attachment.*" = "reject"
"lookup.failed" = "{lookup_failed}"

[checks.attachment.clamav]
address = "{address}"
timeout = 1
scan = "{scan}"
on_unreachable = "{on_unreachable}"
"""


REFUSED, DEFERRED = Replies.policy_reject([], ""), Replies.policy_tempfail([], "")
HELD, RELAYED = Replies.quarantined(""), Replies.relayed("", "")


@needs_clamd
async def test_relay_refuses_what_clamd_finds(start_relay, sink, clamd: str) -> None:
    relay = await start_relay(policy=policy_text(clamd))
    code, message = await send_one(relay.port, with_attachment(b"%PDF-1.4 " + MARKER))
    assert (code, enhanced(message)) == (REFUSED.code, REFUSED.enhanced) and "attachment.dangerous" in message
    assert (await send_one(relay.port, with_attachment(b"%PDF-1.4 a clean catalogue")))[0] == RELAYED.code
    assert len(sink.received) == 1


async def test_relay_with_clamd_down_holds_the_message(start_relay, sink, tmp_path: Path) -> None:
    relay = await start_relay(policy=policy_text(str(tmp_path / "no-clamd.sock")))
    code, reply = await send_one(relay.port, with_attachment(b"%PDF-1.4 a catalogue"))
    assert (code, enhanced(reply)) == (HELD.code, HELD.enhanced) and "held for review" in reply
    assert sink.received == []


async def test_relay_with_clamd_down_fails_temporarily_when_the_policy_says_tempfail(start_relay, sink, tmp_path: Path) -> None:
    relay = await start_relay(policy=policy_text(str(tmp_path / "no-clamd.sock"), lookup_failed="tempfail"))
    code, message = await send_one(relay.port, with_attachment(b"%PDF-1.4 a catalogue"))
    assert (code, enhanced(message)) == (DEFERRED.code, DEFERRED.enhanced) and "virus scan not done" in message
    # A permanent problem found as well makes the refusal permanent.
    code, message = await send_one(relay.port, with_attachment(b"MZ\x90\x00", name="setup.exe"))
    assert (code, enhanced(message)) == (REFUSED.code, REFUSED.enhanced) and "attachment.dangerous" in message
    assert sink.received == []


async def test_relay_with_clamd_down_relays_when_the_policy_says_so(start_relay, sink, tmp_path: Path) -> None:
    relay = await start_relay(policy=policy_text(str(tmp_path / "no-clamd.sock"), on_unreachable="relay"))
    assert (await send_one(relay.port, with_attachment(b"%PDF-1.4 a catalogue")))[0] == RELAYED.code
    assert len(sink.received) == 1


async def test_relay_with_hung_clamd_holds_within_the_timeout(start_relay, sink, silent_clamd: str) -> None:
    relay = await start_relay(policy=policy_text(silent_clamd))
    t0 = time.monotonic()
    code, reply = await send_one(relay.port, with_attachment(b"%PDF-1.4 a catalogue"))
    assert (code, enhanced(reply)) == (HELD.code, HELD.enhanced) and time.monotonic() - t0 < 10
    # A message without attachments is not sent to clamd at all (scan = "attachments").
    assert (await send_one(relay.port, mail(FOOTER)))[0] == RELAYED.code
    assert len(sink.received) == 1


@pytest.mark.parametrize("address, ok", [
    ("", True), ("/run/clamav/clamd.ctl", True), ("unix:/run/clamav/clamd.ctl", True), ("tcp:127.0.0.1:3310", True),
    ("tcp:[::1]:3310", True), ("clamd.sock", False), ("tcp:127.0.0.1", False), ("tcp:host:99999", False), ("127.0.0.1:3310", False),
])
def test_clamd_address_is_validated(address: str, ok: bool) -> None:
    from proxy.tomlfile import ConfigError
    from tests.policy.checks.judging import policy

    if ok:
        policy({"attachment": {"clamav": {"address": address}}})
    else:
        with pytest.raises(ConfigError, match=r"checks\.attachment\.clamav\.address"):
            policy({"attachment": {"clamav": {"address": address}}})
