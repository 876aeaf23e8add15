"""The milter server against a raw, sometimes hostile peer: bytes written by hand over loopback.
Malformed or oversized packets close that connection (and only that one); partial and pipelined
writes work; limits, timeouts and failure actions hold."""

from __future__ import annotations

import asyncio
import struct
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from structlog.testing import capture_logs

from proxy.milter import Decision, MilterApplication, MilterOptions, MilterServer, MilterTransaction
from proxy.milter.wire import PacketDecoder
from proxy.replies import Replies, Reply
from tests.support.milterapp import Recorder
from tests.support.smtpclient import line_start


def wire(reply: Reply) -> bytes:
    """A reply as the milter's SMFIR_REPLYCODE carries it: the reply line, NUL-terminated."""
    return str(reply).encode() + b"\0"


def packet(cmd: bytes, data: bytes = b"") -> bytes:
    return struct.pack(">I", len(data) + 1) + cmd + data


POSTFIX_OPTNEG = packet(b"O", struct.pack(">III", 6, 0x1FF, 0x1FFFFF))
CONNECT = packet(b"C", b"client.test\x004\x9c\x40127.0.0.1\0")
MAIL = packet(b"M", b"<news@shop.example.com>\0")
RCPT = packet(b"R", b"<reader@example.org>\0")


def message(subject: str = "hello", body: bytes = b"Hi.\r\n") -> bytes:
    """Header, EOH, body and EOM packets as Postfix sends them once NR_* is agreed."""
    return (packet(b"L", b"Subject\0 " + subject.encode() + b"\0") + packet(b"L", b"To\0 reader@example.org\0")
            + packet(b"N") + packet(b"B", body) + packet(b"D", b"Ei\0QID1\0") + packet(b"E"))


class Peer:
    """A raw MTA side: write bytes, read decoded replies."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.decoder = PacketDecoder()
        self.pending: list[tuple[bytes, bytes]] = []

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def reply(self, timeout: float = 5) -> tuple[bytes, bytes]:
        async with asyncio.timeout(timeout):
            while not self.pending:
                data = await self.reader.read(65536)
                if not data:
                    raise EOFError("server closed the connection")
                self.pending += self.decoder.feed(data)
        return self.pending.pop(0)

    async def closed(self, timeout: float = 5) -> bool:
        """True once the server has closed its side (EOF or reset)."""
        try:
            async with asyncio.timeout(timeout):
                while True:
                    if not await self.reader.read(65536):
                        return True
        except ConnectionError:
            return True

    async def handshake(self) -> None:
        await self.send(POSTFIX_OPTNEG + CONNECT + MAIL + RCPT)
        cmd, _ = await self.reply()
        assert cmd == b"O"
        assert await self.reply() == (b"c", b"")  # CONNECT
        assert await self.reply() == (b"c", b"")  # MAIL
        assert await self.reply() == (b"c", b"")  # RCPT

    def close(self) -> None:
        self.writer.close()


@pytest.fixture
async def milter() -> AsyncIterator[Callable[..., Any]]:
    servers: list[MilterServer] = []
    peers: list[Peer] = []

    async def start(options: MilterOptions | None = None, factory: Callable[[], MilterApplication] | None = None
                    ) -> tuple[Callable[[], Any], Recorder]:
        rec = Recorder()
        server = MilterServer(factory or rec.factory, options or MilterOptions())
        address = await server.listen("inet:127.0.0.1:0")
        servers.append(server)
        port = int(address.rsplit(":", 1)[1])

        async def peer() -> Peer:
            p = Peer(*await asyncio.open_connection("127.0.0.1", port))
            peers.append(p)
            return p

        return peer, rec

    yield start
    for p in peers:
        p.close()
    for server in servers:
        await server.stop()


async def test_a_whole_conversation_in_one_write(milter) -> None:
    peer, rec = await milter()
    p = await peer()
    await p.send(POSTFIX_OPTNEG + CONNECT + MAIL + RCPT + message())
    replies = [await p.reply() for _ in range(7)]
    assert [cmd for cmd, _ in replies] == [b"O", b"c", b"c", b"c", b"h", b"i", b"a"]
    assert replies[4] == (b"h", b"X-Sendwarden\0 checked; queue=QID1\0")
    assert rec.transactions[0].message == b"Subject: hello\r\nTo: reader@example.org\r\n\r\nHi.\r\n"


async def test_byte_by_byte(milter) -> None:
    peer, rec = await milter()
    p = await peer()
    for b in POSTFIX_OPTNEG + CONNECT + MAIL + RCPT + message():
        await p.send(bytes([b]))
    assert [(await p.reply())[0] for _ in range(7)][-1] == b"a"


async def test_optneg_reply_asks_for_macros(milter) -> None:
    peer, _ = await milter()
    p = await peer()
    await p.send(POSTFIX_OPTNEG)
    cmd, data = await p.reply()
    version, actions, protocol = struct.unpack(">III", data[:12])
    assert (cmd, version, actions) == (b"O", 6, 0x131)
    assert b"\0\0\0\x02i {auth_authen} {auth_type} {mail_addr}\0" in data[12:]
    assert b"\0\0\0\x00j {client_addr} {client_name} {daemon_name}\0" in data[12:]


@pytest.mark.parametrize("name,garbage", [
    ("oversized", struct.pack(">I", 50_000_000) + b"B"),
    ("zero length", b"\0\0\0\0"),
    ("unknown command", packet(b"Z")),
    ("string without NUL", packet(b"M", b"<a@b>")),
    ("body before MAIL", packet(b"B", b"x")),
    ("second OPTNEG", POSTFIX_OPTNEG),
    ("second CONNECT", CONNECT),
])
async def test_malformed_input_closes_only_that_connection(milter, name: str, garbage: bytes) -> None:
    peer, rec = await milter()
    bad = await peer()
    await bad.send(POSTFIX_OPTNEG + CONNECT)
    await bad.reply()
    await bad.reply()
    with capture_logs() as logs:
        await bad.send(garbage)
        assert await bad.closed()
    assert [e["event"] for e in logs if e["log_level"] == "warning"] == ["milter_protocol_error"]
    assert ("close", None) in rec.events
    good = await peer()  # the server goes on serving
    await good.handshake()
    await good.send(message())
    assert [(await good.reply())[0] for _ in range(3)] == [b"h", b"i", b"a"]


async def test_command_before_negotiation_is_refused(milter) -> None:
    peer, _ = await milter()
    p = await peer()
    await p.send(CONNECT)
    assert await p.closed()


async def test_oversized_message_is_refused_unjudged(milter) -> None:
    peer, rec = await milter(MilterOptions(max_message_size=100_000))
    p = await peer()
    await p.handshake()
    body = packet(b"B", b"x" * 60_000 + b"\r\n")
    await p.send(packet(b"L", b"Subject\0 big\0") + packet(b"N") + body + body + packet(b"E"))
    assert await p.reply() == (b"y", wire(Replies.too_large(100000)))
    assert "end_of_message" not in rec.names() and rec.names()[-1] == "abort"


async def test_oversized_message_is_skipped_when_the_mta_waits_for_body_replies(milter) -> None:
    peer, _ = await milter(MilterOptions(max_message_size=100_000))
    p = await peer()
    no_nr_body = packet(b"O", struct.pack(">III", 6, 0x1FF, 0x1FFFFF & ~0x80000))
    await p.send(no_nr_body + CONNECT + MAIL + RCPT)
    assert [(await p.reply())[0] for _ in range(4)] == [b"O", b"c", b"c", b"c"]
    body = packet(b"B", b"x" * 60_000)
    await p.send(packet(b"N") + body)
    assert await p.reply() == (b"c", b"")
    await p.send(body)
    assert await p.reply() == (b"s", b"")  # SMFIR_SKIP: send no more body


@pytest.mark.parametrize("on_error,expected", [
    ("tempfail", [b"y"]),
    ("quarantine", [b"q", b"a"]),
    ("accept", [b"a"]),
])
async def test_on_error(milter, on_error: str, expected: list[bytes]) -> None:
    peer, _ = await milter(MilterOptions(on_error=on_error))
    p = await peer()
    await p.handshake()
    await p.send(message("crash"))
    got = [await p.reply() for _ in expected]
    assert [cmd for cmd, _ in got] == expected
    if on_error == "quarantine":
        assert got[0][1] == b"sendwarden could not judge this message (end_of_message failed)\0"


async def test_failure_in_an_observing_hook_is_settled_at_end_of_message(milter) -> None:
    class BrokenHeaders(MilterApplication):
        called = False

        async def header(self, name: str, value: str) -> None:
            raise KeyError(name)

        async def end_of_message(self, transaction: MilterTransaction) -> Decision:
            BrokenHeaders.called = True
            return Decision.accept()

    peer, _ = await milter(factory=BrokenHeaders)
    p = await peer()
    await p.handshake()
    await p.send(message())
    assert await p.reply() == (b"y", wire(Replies.internal_error()))
    assert not BrokenHeaders.called


async def test_timeout_at_rcpt_is_a_tempfail_for_that_recipient(milter) -> None:
    class SlowRcpt(MilterApplication):
        async def rcpt(self, recipient: str, args: tuple[str, ...], macros: Any) -> None:
            await asyncio.sleep(60)

        async def end_of_message(self, transaction: MilterTransaction) -> Decision:
            return Decision.accept()

    peer, _ = await milter(MilterOptions(command_timeout=0.2), factory=SlowRcpt)
    p = await peer()
    await p.send(POSTFIX_OPTNEG + CONNECT + MAIL + RCPT)
    assert [(await p.reply())[0] for _ in range(3)] == [b"O", b"c", b"c"]
    cmd, data = await p.reply()
    assert cmd == b"y" and data.startswith(wire(Replies.policy_timeout("")).rstrip(b": \0"))


async def test_bad_decision_becomes_the_failure_action(milter) -> None:
    class BadEdit(MilterApplication):
        async def end_of_message(self, transaction: MilterTransaction) -> Decision:
            from proxy.milter import AddHeader
            return Decision.accept(AddHeader("Bad Name", "x"))

    peer, _ = await milter(factory=BadEdit)
    p = await peer()
    await p.handshake()
    with capture_logs() as logs:
        await p.send(message())
        cmd, _ = await p.reply()
    assert cmd == b"y"  # no partial edits were sent
    assert "milter_bad_decision" in [e["event"] for e in logs]


async def test_connection_limit(milter) -> None:
    peer, _ = await milter(MilterOptions(max_connections=1))
    first = await peer()
    await first.send(POSTFIX_OPTNEG)
    await first.reply()
    second = await peer()
    assert await second.closed()
    await first.send(CONNECT)  # the first one is still served
    assert await first.reply() == (b"c", b"")


async def test_idle_connection_is_closed(milter) -> None:
    peer, rec = await milter(MilterOptions(idle_timeout=0.2))
    p = await peer()
    await p.send(POSTFIX_OPTNEG + CONNECT)
    await p.reply()
    await p.reply()
    assert await p.closed(timeout=3)
    assert rec.names()[-1] == "close"


async def test_stop_cuts_a_session_stuck_in_the_application(milter) -> None:
    rec = Recorder()
    server = MilterServer(rec.factory, MilterOptions(message_timeout=60))
    address = await server.listen("inet:127.0.0.1:0")
    p = Peer(*await asyncio.open_connection("127.0.0.1", int(address.rsplit(":", 1)[1])))
    await p.handshake()
    await p.send(message("slow"))
    await asyncio.sleep(0.1)
    with capture_logs() as logs:
        await server.stop(grace=0.2)
    assert "milter_session_cut" in [e["event"] for e in logs]
    assert await p.closed()
    p.close()


async def test_recipients_and_macros_are_bounded(milter) -> None:
    peer, rec = await milter(MilterOptions(max_recipients=2))
    p = await peer()
    await p.handshake()  # one recipient accepted already
    await p.send(RCPT + RCPT)
    assert await p.reply() == (b"c", b"")
    assert await p.reply() == (b"y", wire(Replies.too_many_recipients()))
    assert rec.names().count("rcpt") == 2  # the third never reached the application

    flood = b"".join(packet(b"D", b"M" + b"".join(b"m%d\0v\0" % (i * 100 + j) for j in range(100)))
                     for i in range(11))
    await p.send(flood)
    assert await p.closed()


async def test_headers_past_the_limit_are_not_kept(milter) -> None:
    peer, rec = await milter(MilterOptions(max_message_size=10_000))
    p = await peer()
    await p.handshake()
    header = packet(b"L", b"X-Filler\0 " + b"z" * 900 + b"\0")
    await p.send(header * 50 + packet(b"N") + packet(b"E"))
    assert (await p.reply())[1].startswith(line_start(Replies.too_large(0)).encode())
    assert rec.names().count("header") < 12


def test_parse_address() -> None:
    from proxy.milter import parse_address
    assert parse_address("inet:127.0.0.1:8891") == ("inet", ("127.0.0.1", 8891))
    assert parse_address("inet:[::1]:8891") == ("inet", ("::1", 8891))
    assert parse_address("127.0.0.1:8891") == ("inet", ("127.0.0.1", 8891))
    assert parse_address("unix:/run/sendwarden/milter.sock") == ("unix", "/run/sendwarden/milter.sock")
    for bad in ("unix:relative.sock", "inet:127.0.0.1", "inet:127.0.0.1:99999", "nonsense"):
        with pytest.raises(ValueError):
            parse_address(bad)


async def test_ipv6_loopback_listener() -> None:
    rec = Recorder()
    server = MilterServer(rec.factory)
    address = await server.listen("inet:[::1]:0")
    assert address.startswith("inet:[::1]:")
    p = Peer(*await asyncio.open_connection("::1", int(address.rsplit(":", 1)[1])))
    await p.handshake()
    p.close()
    await server.stop()


async def test_a_live_unix_socket_is_not_taken_over(tmp_path) -> None:
    path = tmp_path / "milter.sock"
    first = MilterServer(Recorder().factory)
    await first.listen(f"unix:{path}")
    second = MilterServer(Recorder().factory)
    with pytest.raises(OSError, match="in use"):
        await second.listen(f"unix:{path}")
    await first.stop()
    import socket
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(path))  # a socket file left behind by a crashed run: nobody serves it
    stale.close()
    assert path.exists()
    await second.listen(f"unix:{path}")
    await second.stop()
    plain = tmp_path / "plain-file"
    plain.write_text("not a socket")
    with pytest.raises(OSError, match="not a socket"):
        await MilterServer(Recorder().factory).listen(f"unix:{plain}")


async def test_a_failing_application_factory_is_a_tempfail_at_connect(milter) -> None:
    def broken() -> MilterApplication:
        raise ConnectionRefusedError("policy store down")

    peer, _ = await milter(factory=broken)
    p = await peer()
    await p.send(POSTFIX_OPTNEG + CONNECT)
    assert (await p.reply())[0] == b"O"
    assert await p.reply() == (b"y", wire(Replies.internal_error()))


async def test_replies_before_a_pipelined_quit_are_still_sent(milter) -> None:
    peer, _ = await milter()
    p = await peer()
    await p.send(POSTFIX_OPTNEG + CONNECT + packet(b"Q"))
    assert [(await p.reply())[0] for _ in range(2)] == [b"O", b"c"]
    assert await p.closed()


async def test_no_reply_stages_are_not_answered_and_the_mta_is_told_so(milter) -> None:
    peer, rec = await milter(MilterOptions(no_reply=frozenset({"connect", "mail"})))
    p = await peer()
    await p.send(POSTFIX_OPTNEG)
    _, data = await p.reply()
    _, _, protocol = struct.unpack(">III", data[:12])
    assert protocol & 0x1000 and protocol & 0x4000  # SMFIP_NR_CONN, SMFIP_NR_MAIL
    assert not protocol & 0x8000  # RCPT is still answered
    await p.send(CONNECT + MAIL + RCPT + message())
    replies = [await p.reply() for _ in range(4)]
    assert [cmd for cmd, _ in replies] == [b"c", b"h", b"i", b"a"]  # RCPT, then end of message
    assert rec.transactions[0].sender == "news@shop.example.com"


async def test_a_failure_where_no_reply_is_sent_is_settled_at_end_of_message(milter) -> None:
    class BrokenMail(MilterApplication):
        called = False

        async def mail_from(self, sender: str, args: tuple[str, ...], macros: Any) -> None:
            raise KeyError(sender)

        async def end_of_message(self, transaction: MilterTransaction) -> Decision:
            BrokenMail.called = True
            return Decision.accept()

    peer, _ = await milter(MilterOptions(no_reply=frozenset({"connect", "mail"})), factory=BrokenMail)
    p = await peer()
    await p.send(POSTFIX_OPTNEG + CONNECT + MAIL + RCPT + message())
    assert [(await p.reply())[0] for _ in range(2)] == [b"O", b"c"]  # OPTNEG, RCPT
    assert await p.reply() == (b"y", wire(Replies.internal_error()))
    assert not BrokenMail.called


def test_no_reply_names_only_stages_that_can_go_unanswered() -> None:
    with pytest.raises(ValueError, match="no_reply"):
        MilterOptions(no_reply=frozenset({"rcpt"}))
