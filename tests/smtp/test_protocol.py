"""The listener speaks ESMTP as a drop-in relay must: extensions advertised and honoured,
enhanced status codes on every reply, DSN parameters passed upstream with their case."""

from __future__ import annotations

import re

import aiosmtplib

from tests.conftest import ROOT
from tests.support.smtpclient import RawClient

COMPLIANT = (ROOT / "examples" / "compliant.eml").read_bytes().replace(b"\n", b"\r\n")
ENHANCED = re.compile(r"^\d{3} [245]\.\d{1,3}\.\d{1,3} ")


async def test_ehlo_advertises_what_a_relay_needs(start_relay) -> None:
    relay = await start_relay()
    c = await RawClient.connect(relay.port)
    assert (await c.reply()).startswith("220 relay.test ")
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
    assert replies[0].startswith("503 5.5.1")
    assert replies[4].startswith("501 5.5.4")
    await c.close()


async def test_pipelined_transaction_gets_replies_in_order(start_relay, sink) -> None:
    relay = await start_relay()
    c = await RawClient.connect(relay.port)
    await c.reply()
    await c.cmd("EHLO client.test")
    await c.send(
        "MAIL FROM:<news@shop.example.com>\r\nRCPT TO:<a@example.org>\r\nRCPT TO:<b@example.org>\r\nDATA\r\n"
    )
    assert (await c.reply()).startswith("250 2.1.0")
    assert (await c.reply()).startswith("250 2.1.5")
    assert (await c.reply()).startswith("250 2.1.5")
    assert (await c.reply()).startswith("354")
    # End of data and QUIT in one write, as Postfix's smtp client sends them.
    await c.send(COMPLIANT + b".\r\nQUIT\r\n")
    assert (await c.reply()).startswith("250 2.0.0 Ok: relayed")
    assert (await c.reply()).startswith("221")
    await c.close()
    assert [r for r, _ in sink.received[0].rcpts] == ["a@example.org", "b@example.org"]


async def test_dsn_parameters_pass_upstream_with_their_case(start_relay, sink) -> None:
    relay = await start_relay()
    c = await RawClient.connect(relay.port)
    await c.reply()
    await c.cmd("EHLO client.test")
    assert (await c.cmd("MAIL FROM:<news@shop.example.com> RET=HDRS ENVID=Ab+2Bc123")).startswith("250")
    assert (await c.cmd("RCPT TO:<a@example.org> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;A@Example.org")).startswith("250")
    assert (await c.cmd("RCPT TO:<b@example.org> NOTIFY=NEVER")).startswith("250")
    assert (await c.cmd("DATA")).startswith("354")
    await c.send(COMPLIANT + b".\r\n")
    assert (await c.reply()).startswith("250 2.0.0")
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
    assert (await c.cmd("MAIL FROM:<> SMTPUTF8 BODY=8BITMIME")).startswith("250")
    assert (await c.cmd("RCPT TO:<jürgen@exämple.org>")).startswith("250")
    assert (await c.cmd("DATA")).startswith("354")
    body = ("From: postmaster@shop.example.com\r\nTo: jürgen@exämple.org\r\nSubject: Zustellung\r\n"
            "Date: Sun, 29 Nov 2026 09:00:00 +0000\r\nMessage-ID: <z-1@shop.example.com>\r\n\r\nGrüße\r\n")
    await c.send(body.encode() + b".\r\n")
    assert (await c.reply()).startswith("250 2.0.0")
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
        assert exc.code == 452 and exc.message.startswith("4.5.3")
    await client.quit()


async def test_connection_limit_per_client_answers_421(start_relay) -> None:
    relay = await start_relay({"limits": {"max_connections_per_client": 2}})
    a = await RawClient.connect(relay.port)
    b = await RawClient.connect(relay.port)
    assert (await a.reply()).startswith("220")
    assert (await b.reply()).startswith("220")
    c = await RawClient.connect(relay.port)
    assert (await c.reply()).startswith("421 4.7.0")
    await a.close()
    await b.close()
    await c.close()
