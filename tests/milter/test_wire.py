"""The milter codec with hand-built packets: framing (partial, pipelined, malformed, oversized),
command parsing, reply encoding and option negotiation."""

from __future__ import annotations

import struct

import pytest

from proxy.milter import AddHeader, ChangeHeader, InsertHeader, MilterOptions
from proxy.milter.commands import (
    Abort, Body, Connect, EndOfHeaders, EndOfMessage, Header, Helo, Macro, Mail, OptNeg, Quit, QuitNewConnection,
    Rcpt, Unknown, parse_command,
)
from proxy.milter.options import negotiate
from proxy.milter.replies import header_edit, optneg, replycode, step_reply
from proxy.milter.wire import (
    ActionFlag, Family, MacroStage, PacketDecoder, ProtocolError, ProtocolFlag, encode_packet,
)
from proxy.replies import Reply


def packet(cmd: bytes, data: bytes = b"") -> bytes:
    """Built by hand, independently of encode_packet."""
    return struct.pack(">I", len(data) + 1) + cmd + data


HELO = packet(b"H", b"client.example\0")
MAIL = packet(b"M", b"<a@example.com>\0SIZE=100\0BODY=8BITMIME\0")
BODY = packet(b"B", b"x" * 70000)


def test_encode_packet_matches_hand_built() -> None:
    assert encode_packet(b"H", b"client.example\0") == HELO
    assert encode_packet(b"c") == b"\x00\x00\x00\x01c"


def test_whole_packet() -> None:
    assert PacketDecoder().feed(HELO) == [(b"H", b"client.example\0")]


def test_partial_reads_byte_by_byte() -> None:
    decoder = PacketDecoder()
    stream = HELO + MAIL
    got = []
    for i in range(len(stream)):
        got += decoder.feed(stream[i:i + 1])
        if i < len(HELO) - 1:
            assert got == [] and decoder.pending == i + 1
    assert got == [(b"H", b"client.example\0"), (b"M", b"<a@example.com>\0SIZE=100\0BODY=8BITMIME\0")]
    assert decoder.pending == 0


@pytest.mark.parametrize("cut", [1, 3, 4, 5, 6, 100, 69_999, 70_004])
def test_split_at_any_point(cut: int) -> None:
    decoder = PacketDecoder()
    stream = BODY + HELO
    assert decoder.feed(stream[:cut]) == ([] if cut < len(BODY) else [(b"B", b"x" * 70000)])
    rest = decoder.feed(stream[cut:])
    assert len(rest) == (2 if cut < len(BODY) else 1) and rest[-1] == (b"H", b"client.example\0")


def test_pipelined_packets_in_one_read() -> None:
    stream = HELO + MAIL + packet(b"R", b"<b@example.org>\0") + packet(b"N") + HELO[:3]
    decoder = PacketDecoder()
    got = decoder.feed(stream)
    assert [cmd for cmd, _ in got] == [b"H", b"M", b"R", b"N"]
    assert decoder.pending == 3


def test_zero_length_is_an_error() -> None:
    with pytest.raises(ProtocolError, match="length 0"):
        PacketDecoder().feed(b"\x00\x00\x00\x00Hjunk\0")


def test_oversized_length_is_refused_before_the_data_arrives() -> None:
    decoder = PacketDecoder(max_packet=100_000)
    with pytest.raises(ProtocolError, match="exceeds the limit of 100000"):
        decoder.feed(struct.pack(">I", 100_001) + b"B")
    with pytest.raises(ProtocolError):
        PacketDecoder().feed(b"\xff\xff\xff\xff")


def test_a_trickled_maximal_packet_is_the_most_that_is_buffered() -> None:
    decoder = PacketDecoder(max_packet=70_000)
    header = struct.pack(">I", 70_000) + b"B"
    decoder.feed(header)
    for _ in range(69):
        assert decoder.feed(b"y" * 1000) == []
    assert decoder.pending == 5 + 69_000
    [(cmd, data)] = decoder.feed(b"y" * 999)
    assert cmd == b"B" and len(data) == 69_999 and decoder.pending == 0


def test_limit_must_hold_one_body_chunk() -> None:
    with pytest.raises(ValueError):
        PacketDecoder(max_packet=1000)


def test_parse_every_command() -> None:
    assert parse_command(b"O", struct.pack(">III", 6, 0x1FF, 0x1FFFFF)) == OptNeg(6, ActionFlag(0x1FF), ProtocolFlag(0x1FFFFF))
    assert parse_command(b"D", b"C{client_addr}\x00192.0.2.1\x00j\x00mta.test\x00") == Macro(b"C", {"client_addr": "192.0.2.1", "j": "mta.test"})
    assert parse_command(b"D", b"M") == Macro(b"M", {})
    assert parse_command(b"C", b"client.example\x004\x30\x39192.0.2.1\0") == Connect("client.example", Family.INET, 12345, "192.0.2.1")
    assert parse_command(b"C", b"[::1]\x006\x00\x19::1\0") == Connect("[::1]", Family.INET6, 25, "::1")
    assert parse_command(b"C", b"localhost\0U") == Connect("localhost", Family.UNKNOWN, 0, "")
    assert parse_command(b"H", b"client.example\0") == Helo("client.example")
    assert parse_command(b"M", b"<a@example.com>\0SIZE=100\0") == Mail("a@example.com", ("SIZE=100",))
    assert parse_command(b"M", b"<>\0") == Mail("", ())
    assert parse_command(b"R", b"<b@example.org>\0NOTIFY=NEVER\0") == Rcpt("b@example.org", ("NOTIFY=NEVER",))
    assert parse_command(b"L", b"Subject\0 hello\n\tworld\0") == Header("Subject", " hello\n\tworld")
    assert parse_command(b"L", b"X-8bit\0 caf\xc3\xa9 \xff\0").value.encode("utf-8", "surrogateescape") == b" caf\xc3\xa9 \xff"
    assert parse_command(b"N", b"") == EndOfHeaders()
    assert parse_command(b"B", b"line\r\n") == Body(b"line\r\n")
    assert parse_command(b"E", b"") == EndOfMessage(b"")
    assert parse_command(b"U", b"XYZZY\0") == Unknown("XYZZY")
    assert parse_command(b"A", b"") == Abort()
    assert parse_command(b"Q", b"") == Quit()
    assert parse_command(b"K", b"") == QuitNewConnection()


@pytest.mark.parametrize("cmd,data,message", [
    (b"Z", b"", "unknown command"),
    (b"H", b"no terminator", "NUL terminator"),
    (b"H", b"one\0two\0", "expected 1 strings"),
    (b"C", b"host\0", "truncated"),
    (b"C", b"host\x004\x00", "truncated port"),
    (b"C", b"host\x00X\x00\x19addr\0", "unknown address family"),
    (b"C", b"host\x004\x00\x19addr", "NUL terminator"),
    (b"C", b"host\0Uextra", "unexpected 5 data bytes"),
    (b"M", b"", "no address"),
    (b"D", b"", "missing command code"),
    (b"D", b"Mi\0", "odd number"),
    (b"O", b"\x00\x00\x00\x06", "expected 12 data bytes"),
    (b"L", b"Subject\0", "expected 2 strings"),
    (b"L", b"\0value\0", "empty header name"),
    (b"N", b"x", "unexpected 1 data bytes"),
    (b"Q", b"\0", "unexpected"),
])
def test_malformed_commands(cmd: bytes, data: bytes, message: str) -> None:
    with pytest.raises(ProtocolError, match=message):
        parse_command(cmd, data)


def test_replycode_text() -> None:
    assert replycode(Reply(550, "5.7.1", "Refused: 100% sure")) == packet(b"y", b"550 5.7.1 Refused: 100%% sure\0")
    assert replycode(Reply(451, "", "later")) == packet(b"y", b"451 later\0")
    # CR/LF could split the SMTP reply; NUL would cut the string short.
    assert replycode(Reply(550, "5.7.1", "a\r\nb\x00c\u00e9")) == packet(b"y", b"550 5.7.1 a b?c?\0")


@pytest.mark.parametrize("reply", [Reply(250, "2.0.0", "ok"), Reply(550, "4.7.1", "mixed"),
                                   Reply(451, "5.7.1", "mixed"), Reply(550, "x.y.z", "bad"), Reply(600, "", "no")])
def test_replycode_refuses_what_postfix_would_call_malformed(reply: Reply) -> None:
    with pytest.raises(ValueError):
        replycode(reply)


def test_step_reply() -> None:
    assert step_reply(None) == packet(b"c")
    assert step_reply(Reply(250, "2.1.5", "ok")) == packet(b"c")
    assert step_reply(Reply(550, "5.7.1", "no")) == packet(b"y", b"550 5.7.1 no\0")


def test_header_edits() -> None:
    assert header_edit(AddHeader("X-Tag", "a"), leading_space=True) == packet(b"h", b"X-Tag\0 a\0")
    assert header_edit(AddHeader("X-Tag", "a"), leading_space=False) == packet(b"h", b"X-Tag\0a\0")
    assert header_edit(AddHeader("X-Tag", "a\r\n\tb"), leading_space=True) == packet(b"h", b"X-Tag\0 a\n\tb\0")
    assert header_edit(InsertHeader(0, "DKIM-Signature", "v=1"), leading_space=True) == packet(b"i", b"\0\0\0\0DKIM-Signature\0 v=1\0")
    assert header_edit(ChangeHeader(2, "Subject", ""), leading_space=True) == packet(b"m", b"\0\0\0\x02Subject\0\0")
    for bad in (AddHeader("Bad Name", "x"), AddHeader("X:Y", "x"), AddHeader("X", "a\nb"), AddHeader("X", "a\rb"),
                AddHeader("X", "nul\0"), ChangeHeader(0, "X", "y"), InsertHeader(-1, "X", "y")):
        with pytest.raises(ValueError):
            header_edit(bad, leading_space=True)


def test_optneg_reply_carries_macro_lists_only_with_setsymlist() -> None:
    macros = {MacroStage.CONNECT: ("j", "{client_addr}"), MacroStage.EOM: ("i",)}
    head = struct.pack(">III", 6, 0x131, 0x100000)
    assert optneg(6, ActionFlag(0x131), ProtocolFlag(0x100000), macros) == packet(
        b"O", head + b"\0\0\0\0j {client_addr}\0" + b"\0\0\0\x05i\0")
    assert optneg(6, ActionFlag(0x31), ProtocolFlag(0), macros) == packet(b"O", struct.pack(">III", 6, 0x31, 0))


def test_negotiation_asks_only_for_what_is_needed_and_offered() -> None:
    postfix = OptNeg(6, ActionFlag(0x1FF), ProtocolFlag(0x1FFFFF))
    agreed, macros = negotiate(postfix, MilterOptions())
    assert agreed.version == 6
    assert agreed.actions == ActionFlag.ADDHDRS | ActionFlag.CHGHDRS | ActionFlag.QUARANTINE | ActionFlag.SETSYMLIST
    p = agreed.protocol
    assert ProtocolFlag.NOHELO in p and ProtocolFlag.NODATA in p and ProtocolFlag.NOUNKNOWN in p
    assert ProtocolFlag.NR_HDR in p and ProtocolFlag.NR_EOH in p and ProtocolFlag.NR_BODY in p
    assert ProtocolFlag.HDR_LEADSPC in p and ProtocolFlag.SKIP in p
    for never in (ProtocolFlag.NOCONNECT, ProtocolFlag.NOMAIL, ProtocolFlag.NORCPT, ProtocolFlag.NOHDRS,
                  ProtocolFlag.NOBODY, ProtocolFlag.NR_CONN, ProtocolFlag.NR_MAIL, ProtocolFlag.NR_RCPT, ProtocolFlag.RCPT_REJ):
        assert never not in p
    assert "{auth_authen}" in macros[MacroStage.ENVFROM] and "i" in macros[MacroStage.EOM]
    assert "{client_addr}" in macros[MacroStage.CONNECT] and "{rcpt_addr}" in macros[MacroStage.ENVRCPT]

    helo, _ = negotiate(postfix, MilterOptions(want_helo=True))
    assert ProtocolFlag.NOHELO not in helo.protocol

    old = OptNeg(2, ActionFlag(0x3F), ProtocolFlag(0x7F))  # a version 2 MTA: no NR_*, no macro lists
    agreed, macros = negotiate(old, MilterOptions())
    assert agreed.version == 2 and macros == {} and ActionFlag.SETSYMLIST not in agreed.actions
    assert agreed.protocol == ProtocolFlag.NOHELO and agreed.replies_to(ProtocolFlag.NR_HDR)

    with pytest.raises(ProtocolError, match="version 1"):
        negotiate(OptNeg(1, ActionFlag(0xF), ProtocolFlag(0x3F)), MilterOptions())


def test_options_are_validated() -> None:
    for bad in ({"on_error": "reject"}, {"command_timeout": 0}, {"max_packet_size": 100},
                {"max_connections": 0}, {"macros": {MacroStage.EOM: ("a b",)}}):
        with pytest.raises(ValueError):
            MilterOptions(**bad)  # type: ignore[arg-type]
