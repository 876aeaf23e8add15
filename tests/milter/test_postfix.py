"""The milter under a real Postfix (Debian's package), configured in a temporary directory,
listening on a loopback port, relaying to the test sink; the demo application decides.

Each test starts its own Postfix with `postfix -c DIR start` and stops it with `postfix -c DIR
stop` in the fixture's finaliser, failing or not; afterwards nothing may listen on port 25.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from proxy.milter import MilterOptions, MilterServer
from proxy.replies import Replies
from tests.support.milterapp import REJECT_REPLY, SUPPRESSED_REPLY, TEMPFAIL_REPLY, Recorder
from tests.support.postfix import PostfixInstance, available, delivered, transaction
from tests.support.sink import Sink

pytestmark = pytest.mark.skipif(available() is not None, reason=str(available()))

MESSAGE = (
    b'From: "Example Shop" <news@shop.example.com>\r\n'
    b"To: reader@example.org\r\n"
    b"Subject: SUBJECT\r\n"
    b"Date: Sun, 29 Nov 2026 09:00:00 +0000\r\n"
    b"Message-ID: <milter-test@shop.example.com>\r\n"
    b"X-Tab:\tafter a tab\r\n"
    b"X-No-Space:tight\r\n"
    b"X-Folded: first line\r\n"
    b"\tsecond line\r\n"
    b"   third line\r\n"
    b"MIME-Version: 1.0\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"\r\n"
    b"Hello reader,\r\n"
    b".a line that starts with a dot\r\n"
    b"\r\n"
    b"caf\xc3\xa9\r\n"
)


def message(subject: str, body_extra: bytes = b"") -> bytes:
    return MESSAGE.replace(b"SUBJECT", subject.encode()) + body_extra


def port_25_listeners() -> list[str]:
    """Sockets listening on port 25 on this machine (IPv4 and IPv6), from /proc."""
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[1].endswith(":0019"):
                found.append(f"{table}: {fields[1]}")
    return found


@dataclass
class Rig:
    postfix: PostfixInstance
    milter: MilterServer
    recorder: Recorder
    sink: Sink

    async def send(self, subject: str, rcpts: tuple[str, ...] = ("reader@example.org",),
                   body_extra: bytes = b"") -> list[str]:
        """One SMTP transaction through Postfix: every reply, last the one to end of data."""
        return await transaction(self.postfix.port, message(subject, body_extra), rcpts)

    async def delivered(self, count: int, timeout: float = 15) -> None:
        await delivered(self.sink, count, timeout)


@pytest.fixture
async def rig(sink: Sink) -> AsyncIterator[Rig]:
    recorder = Recorder()
    milter = MilterServer(recorder.factory, MilterOptions(message_timeout=1.0, progress_interval=0.4,
                                                          max_message_size=50_000))
    address = await milter.listen("inet:127.0.0.1:0")
    postfix = PostfixInstance(sink.port, main={
        "smtpd_milters": address,
        "non_smtpd_milters": "",
        "milter_protocol": "6",
        "milter_default_action": "tempfail",
        "milter_command_timeout": "10s",
        "milter_content_timeout": "20s",
    })
    try:
        await asyncio.to_thread(postfix.start)
        yield Rig(postfix, milter, recorder, sink)
    finally:
        await asyncio.to_thread(postfix.stop)
        await milter.stop()
    assert port_25_listeners() == []


async def test_accepted_message_arrives_with_the_added_headers(rig: Rig) -> None:
    answers = await rig.send("hello")
    assert answers[-1].startswith("250 2.0.0 Ok: queued as "), answers
    queue_id = answers[-1].rsplit(" ", 1)[1]
    await rig.delivered(1)
    [got] = rig.sink.received
    assert [r for r, _ in got.rcpts] == ["reader@example.org"]
    head, _, body = got.data.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    # InsertHeader(0, …) lands above Postfix's own Received header; AddHeader at the end.
    assert lines[0] == b"X-Sendwarden-Top: first"
    assert lines[1].startswith(b"Received: from client.test (localhost [127.0.0.1])")
    assert lines[-1] == b"X-Sendwarden: checked; queue=" + queue_id.encode()
    assert body == message("hello").partition(b"\r\n\r\n")[2]

    # What the application saw: the message byte for byte as the client sent it (Postfix's
    # Received header is not shown to milters), the queue id, and the client's address.
    [txn] = rig.recorder.transactions
    assert txn.message == message("hello")
    assert txn.queue_id == queue_id
    assert txn.sender == "news@shop.example.com" and txn.recipients == ("reader@example.org",)
    _, (host, family, _port, address, macros) = rig.recorder.events[0]
    assert (host, family, address) == ("localhost", "4", "127.0.0.1")
    assert macros["client_addr"] == "127.0.0.1" and macros["j"] == "mta.test"
    _, (_, _, mail_macros) = next(e for e in rig.recorder.events if e[0] == "mail_from")
    assert mail_macros["mail_addr"] == "news@shop.example.com"
    assert "helo" not in rig.recorder.names()  # negotiated away


async def logged(rig: Rig, text: str) -> None:
    """Wait for a line in Postfix's log: postlogd writes it a moment after the SMTP reply."""
    async with asyncio.timeout(10):
        while text not in rig.postfix.log():
            await asyncio.sleep(0.05)


async def test_rejected_message_gets_our_reply_text(rig: Rig) -> None:
    answers = await rig.send("reject")
    assert answers[-1] == str(REJECT_REPLY)
    await logged(rig, "milter-reject: END-OF-MESSAGE")
    assert rig.sink.received == []


async def test_suppressed_recipient_is_refused_at_rcpt_only(rig: Rig) -> None:
    answers = await rig.send("hello", rcpts=("suppressed@example.org", "reader@example.org"))
    assert answers[3] == str(SUPPRESSED_REPLY)
    assert answers[4].startswith("250 ") and answers[-1].startswith("250 2.0.0 Ok: queued as ")
    await rig.delivered(1)
    assert [r for r, _ in rig.sink.received[0].rcpts] == ["reader@example.org"]
    assert rig.recorder.transactions[0].recipients == ("reader@example.org",)


async def test_tempfail_from_the_application(rig: Rig) -> None:
    answers = await rig.send("tempfail")
    assert answers[-1] == str(TEMPFAIL_REPLY)
    assert rig.sink.received == []


async def test_application_timeout_is_a_tempfail(rig: Rig) -> None:
    answers = await rig.send("slow")
    assert answers[-1] == str(Replies.policy_timeout("end_of_message took longer than 1s"))

    assert rig.sink.received == []


async def test_quarantined_message_goes_to_the_hold_queue(rig: Rig) -> None:
    answers = await rig.send("quarantine")
    assert answers[-1].startswith("250 2.0.0 Ok: queued as ")
    async with asyncio.timeout(10):
        while not rig.postfix.held():
            await asyncio.sleep(0.05)
    await logged(rig, "milter triggers HOLD action")
    await asyncio.sleep(0.5)
    assert rig.sink.received == []


async def test_oversized_message_is_refused(rig: Rig) -> None:
    answers = await rig.send("big", body_extra=b"x" * 998 + b"\r\n" + (b"y" * 78 + b"\r\n") * 700)
    assert answers[-1] == str(Replies.too_large(50000))
    assert "end_of_message" not in rig.recorder.names()
    assert rig.sink.received == []
