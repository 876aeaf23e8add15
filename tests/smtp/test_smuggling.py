"""SMTP smuggling and malformed DATA: nothing the upstream could read as a second message ever
leaves the relay (NOTES.md lists the published sequences)."""

from __future__ import annotations

import pytest

from proxy.replies import Replies
from tests.support.smtpclient import RawClient, line_start

HEAD = (b"From: news@shop.example.com\r\nTo: a@example.org\r\nSubject: hello\r\n"
        b"Date: Sun, 29 Nov 2026 09:00:00 +0000\r\nMessage-ID: <first@shop.example.com>\r\n\r\nfirst message\r\n")
SMUGGLED = (
    b"MAIL FROM:<admin@bank.example>\r\nRCPT TO:<victim@example.org>\r\nDATA\r\n"
    b"From: admin@bank.example\r\nTo: victim@example.org\r\nSubject: smuggled\r\n\r\nsmuggled\r\n"
)
# The end-of-data forms a lenient MTA might accept (published December 2023).
PROBES = [b"\n.\n", b"\n.\r\n", b"\r.\n", b"\r.\r\n", b"\r\n.\r", b"\r\n.\n"]
TRANSACTIONAL = '[policy]\ndefault_stream = "transactional"\n'
# Malformed data (RFC 3463 5.6.0, as the DATA reader gives it), a message over the size limit, one relayed.
BAD_DATA, TOO_LARGE, RELAYED = Replies.bare_line_ending(), Replies.too_large(0), Replies.relayed("", "")


async def open_data(port: int) -> RawClient:
    c = await RawClient.connect(port)
    await c.reply()
    await c.cmd("EHLO client.test")
    assert (await c.cmd("MAIL FROM:<news@shop.example.com>")).startswith(line_start(Replies.sender_ok()))
    assert (await c.cmd("RCPT TO:<a@example.org>")).startswith(line_start(Replies.recipient_ok()))
    assert (await c.cmd("DATA")).startswith(line_start(Replies.start_data()))
    return c


@pytest.mark.parametrize("probe", PROBES, ids=[p.decode().encode("unicode_escape").decode() for p in PROBES])
async def test_smuggling_probe_is_refused_and_nothing_reaches_upstream(start_relay, sink, probe) -> None:
    relay = await start_relay(policy=TRANSACTIONAL)
    c = await open_data(relay.port)
    await c.send(HEAD + probe + SMUGGLED + b"\r\n.\r\n")
    reply = await c.reply()
    assert reply.startswith(line_start(BAD_DATA)) and "Bare CR or LF" in reply
    # The session is still in step: the next command is a command.
    assert (await c.cmd("NOOP")).startswith("250")  # aiosmtpd's NOOP
    await c.close()
    assert sink.received == []


@pytest.mark.parametrize("probe", PROBES, ids=[p.decode().encode("unicode_escape").decode() for p in PROBES])
async def test_normalize_mode_forwards_exactly_one_message(start_relay, sink, probe) -> None:
    relay = await start_relay({"smtp": {"bare_line_endings": "normalize"}}, policy=TRANSACTIONAL)
    c = await open_data(relay.port)
    await c.send(HEAD + probe + SMUGGLED + b"\r\n.\r\n")
    assert (await c.reply()).startswith(line_start(RELAYED))
    await c.close()
    # One message, and on the wire every line ends in CRLF and every leading dot is stuffed.
    [got] = sink.received
    assert got.rcpts == [("a@example.org", [])]
    wire = got.wire
    assert wire.count(b"\r") == wire.count(b"\r\n") == wire.count(b"\n")
    assert b"\r\n.\r\n" not in wire


async def test_message_without_data_lines_is_relayed_empty(start_relay, sink) -> None:
    relay = await start_relay(policy='[policy]\ndefault_stream = "transactional"\n[checks.sender]\nenabled = false\n[checks.subject]\nenabled = false\n'
                              '[checks.message]\nenabled = false\n')
    c = await open_data(relay.port)
    await c.send(b".\r\n")
    assert (await c.reply()).startswith(line_start(RELAYED))
    await c.close()
    [got] = sink.received
    assert got.data.startswith(b"Received: ")


async def test_leading_dots_round_trip(start_relay, sink) -> None:
    relay = await start_relay(policy=TRANSACTIONAL)
    c = await open_data(relay.port)
    body = HEAD + b"..a line that starts with a dot\r\n...two dots\r\n..\r\n"
    await c.send(body + b".\r\n")
    assert (await c.reply()).startswith(line_start(RELAYED))
    await c.close()
    [got] = sink.received
    assert got.data.endswith(HEAD + b".a line that starts with a dot\r\n..two dots\r\n.\r\n")


async def test_oversize_message_is_refused_552(start_relay, sink) -> None:
    relay = await start_relay({"limits": {"max_message_size": 10_000}}, policy=TRANSACTIONAL)
    c = await open_data(relay.port)
    await c.send(HEAD + (b"x" * 70 + b"\r\n") * 500 + b".\r\n")
    assert (await c.reply()).startswith(line_start(TOO_LARGE))
    assert (await c.cmd("NOOP")).startswith("250")  # aiosmtpd's NOOP
    await c.close()
    assert sink.received == []


async def test_declared_size_over_limit_is_refused_at_mail(start_relay) -> None:
    relay = await start_relay({"limits": {"max_message_size": 10_000}})
    c = await RawClient.connect(relay.port)
    await c.reply()
    await c.cmd("EHLO client.test")
    assert (await c.cmd("MAIL FROM:<news@shop.example.com> SIZE=20000")).startswith(line_start(TOO_LARGE))
    await c.close()


async def test_line_over_998_characters_is_refused(start_relay, sink) -> None:
    relay = await start_relay(policy=TRANSACTIONAL)
    c = await open_data(relay.port)
    await c.send(HEAD + b"y" * 1200 + b"\r\n.\r\n")
    reply = await c.reply()
    assert reply.startswith(line_start(BAD_DATA)) and "longer than 998" in reply
    await c.close()
    assert sink.received == []


async def test_nul_bytes_and_8bit_content_do_not_crash(start_relay, sink) -> None:
    relay = await start_relay(policy=TRANSACTIONAL)
    c = await open_data(relay.port)
    await c.send(HEAD + b"binary \x00\xff\xfe junk\r\n.\r\n")
    reply = await c.reply()
    assert reply[:1] in ("2", "5"), reply
    assert (await c.cmd("NOOP")).startswith("250")  # aiosmtpd's NOOP
    await c.close()
