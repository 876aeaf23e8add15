"""The listener speaks ESMTP as a drop-in relay must: extensions advertised and honoured,
enhanced status codes on every reply, DSN parameters passed upstream with their case."""

from __future__ import annotations

import re

import aiosmtplib

from proxy.replies import Replies
from tests.conftest import ROOT
from tests.support.smtpclient import RawClient, enhanced, line_start

COMPLIANT = (ROOT / "examples" / "compliant.eml").read_bytes().replace(b"\n", b"\r\n")
ENHANCED = re.compile(r"^\d{3} [245]\.\d{1,3}\.\d{1,3} ")


async def test_ehlo_advertises_what_a_relay_needs(start_relay) -> None:
    relay = await start_relay()
    c = await RawClient.connect(relay.port)
    assert (await c.reply()).startswith("220 relay.test ")  # aiosmtpd's greeting
    lines = (await c.cmd("EHLO client.test")).splitlines()
    keywords = {line[4:].split()[0] for line in lines[1:]}
    assert {"PIPELINING", "ENHANCEDSTATUSCODES", "8BITMIME", "SMTPUTF8", "SIZE", "DSN", "STARTTLS"} <= keywords
    # No AUTH before TLS, and none at all without credentials.
    assert "AUTH" not in keywords
    await c.close()


async def test_every_reply_carries_an_enhanced_code(start_relay) -> None:
    relay = await start_relay()
    c = await RawClient.connect(relay.port)
    await c.reply()
    await c.cmd("EHLO client.test")
    replies = [
        await c.cmd("DATA"),  # no MAIL yet
        await c.cmd("RCPT TO:<a@example.org>"),
        await c.cmd("MAIL FROM:<news@shop.example.com>"),
        await c.cmd("MAIL FROM:<news@shop.example.com>"),  # nested
        await c.cmd("RCPT TO:<a@example.org> NOTIFY=BOGUS"),
        await c.cmd("RCPT TO:<a@example.org>"),
        await c.cmd("VRFY a@example.org"),
        await c.cmd("FOO"),
        await c.cmd("RSET"),
        await c.cmd("NOOP"),
        await c.cmd("QUIT"),
    ]
    for reply in replies:
        assert ENHANCED.match(reply), reply
    assert replies[0].startswith(line_start(Replies.need_mail()))
    assert replies[4].startswith(line_start(Replies.syntax("")))
    await c.close()


async def test_pipelined_transaction_gets_replies_in_order(start_relay, sink) -> None:
    relay = await start_relay()
    c = await RawClient.connect(relay.port)
    await c.reply()
    await c.cmd("EHLO client.test")
    await c.send(
        "MAIL FROM:<news@shop.example.com>\r\nRCPT TO:<a@example.org>\r\nRCPT TO:<b@example.org>\r\nDATA\r\n"
    )
    assert (await c.reply()).startswith(line_start(Replies.sender_ok()))
    assert (await c.reply()).startswith(line_start(Replies.recipient_ok()))
    assert (await c.reply()).startswith(line_start(Replies.recipient_ok()))
    assert (await c.reply()).startswith(line_start(Replies.start_data()))
    # End of data and QUIT in one write, as Postfix's smtp client sends them.
    await c.send(COMPLIANT + b".\r\nQUIT\r\n")
    assert (await c.reply()).startswith(str(Replies.relayed("", "")).split(" id=")[0])
    assert (await c.reply()).startswith("221")  # aiosmtpd's goodbye
    await c.close()
    assert [r for r, _ in sink.received[0].rcpts] == ["a@example.org", "b@example.org"]


async def test_dsn_parameters_pass_upstream_with_their_case(start_relay, sink) -> None:
    relay = await start_relay()
    c = await RawClient.connect(relay.port)
    await c.reply()
    await c.cmd("EHLO client.test")
    assert (await c.cmd("MAIL FROM:<news@shop.example.com> RET=HDRS ENVID=Ab+2Bc123")).startswith(line_start(Replies.sender_ok()))
    assert (await c.cmd("RCPT TO:<a@example.org> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;A@Example.org")).startswith(line_start(Replies.recipient_ok()))
    assert (await c.cmd("RCPT TO:<b@example.org> NOTIFY=NEVER")).startswith(line_start(Replies.recipient_ok()))
    assert (await c.cmd("DATA")).startswith(line_start(Replies.start_data()))
    await c.send(COMPLIANT + b".\r\n")
    assert (await c.reply()).startswith(line_start(Replies.relayed("", "")))
    await c.close()
    [got] = sink.received
    assert "RET=HDRS" in got.mail_params and "ENVID=Ab+2Bc123" in got.mail_params
    assert got.rcpts == [
        ("a@example.org", ["NOTIFY=SUCCESS,FAILURE", "ORCPT=rfc822;A@Example.org"]),
        ("b@example.org", ["NOTIFY=NEVER"]),
    ]


async def test_null_sender_and_smtputf8_are_relayed(start_relay, sink) -> None:
    relay = await start_relay(policy="[policy]\ndefault_stream = \"transactional\"\n")
    c = await RawClient.connect(relay.port)
    await c.reply()
    await c.cmd("EHLO client.test")
    assert (await c.cmd("MAIL FROM:<> SMTPUTF8 BODY=8BITMIME")).startswith(line_start(Replies.sender_ok()))
    assert (await c.cmd("RCPT TO:<jürgen@exämple.org>")).startswith(line_start(Replies.recipient_ok()))
    assert (await c.cmd("DATA")).startswith(line_start(Replies.start_data()))
    body = ("From: postmaster@shop.example.com\r\nTo: jürgen@exämple.org\r\nSubject: Zustellung\r\n"
            "Date: Sun, 29 Nov 2026 09:00:00 +0000\r\nMessage-ID: <z-1@shop.example.com>\r\n\r\nGrüße\r\n")
    await c.send(body.encode() + b".\r\n")
    assert (await c.reply()).startswith(line_start(Replies.relayed("", "")))
    await c.close()
    [got] = sink.received
    assert got.mail_from == ""
    assert "SMTPUTF8" in got.mail_params and "BODY=8BITMIME" in got.mail_params
    assert got.rcpts[0][0] == "jürgen@exämple.org"
    assert got.data.endswith(body.encode())


async def test_too_many_recipients_gets_452(start_relay) -> None:
    relay = await start_relay({"limits": {"max_recipients": 2}})
    client = aiosmtplib.SMTP(hostname="127.0.0.1", port=relay.port, start_tls=False)
    await client.connect()
    await client.mail("news@shop.example.com")
    await client.rcpt("a@example.org")
    await client.rcpt("b@example.org")
    try:
        await client.rcpt("c@example.org")
        raise AssertionError("third recipient accepted")
    except aiosmtplib.SMTPRecipientRefused as exc:
        too_many = Replies.too_many_recipients()
        assert (exc.code, enhanced(exc.message)) == (too_many.code, too_many.enhanced)
    await client.quit()


async def test_connection_limit_per_client_answers_421(start_relay) -> None:
    relay = await start_relay({"limits": {"max_connections_per_client": 2}})
    a = await RawClient.connect(relay.port)
    b = await RawClient.connect(relay.port)
    assert (await a.reply()).startswith("220")  # aiosmtpd's greeting
    assert (await b.reply()).startswith("220")
    c = await RawClient.connect(relay.port)
    assert (await c.reply()).startswith(line_start(Replies.too_many_connections()))
    await a.close()
    await b.close()
    await c.close()
