"""XFORWARD (proxy/outbound/xforward.py and the client): the upstream hears who the real client
was, in the attributes it offers, xtext-encoded, within Postfix's limits, before MAIL FROM; a
switch turns it off, and a refusal never costs the message. Postfix itself reads it in
tests/test_production_doc.py."""

from __future__ import annotations

import asyncio

import aiosmtplib
import pytest

from proxy.outbound.client import open_connection
from proxy.outbound.xforward import Origin, commands, xtext
from tests.conftest import ROOT
from tests.support.sink import Sink

COMPLIANT = (ROOT / "examples" / "compliant.eml").read_bytes().replace(b"\n", b"\r\n")
OFFER = "NAME ADDR PROTO HELO SOURCE PORT IDENT"


def decode(value: str) -> str:
    """xtext back to text (RFC 3461 §4), to prove the encoding loses nothing."""
    out, i = bytearray(), 0
    while i < len(value):
        if value[i] == "+":
            out.append(int(value[i + 1:i + 3], 16))
            i += 3
        else:
            out.append(ord(value[i]))
            i += 1
    return out.decode("utf-8")


def test_xtext_escapes_plus_equals_space_and_non_ascii() -> None:
    assert xtext("mail.example.com") == "mail.example.com"
    assert xtext("a+b=c d") == "a+2Bb+3Dc+20d"
    assert xtext("héllo") == "h+C3+A9llo"
    assert decode(xtext("[x] +=\t~é")) == "[x] +=\t~é"


def test_only_the_offered_attributes_with_unavailable_for_the_unknown() -> None:
    origin = Origin(addr="192.0.2.7", helo="app.example.com", proto="ESMTPSA")
    assert commands(OFFER, origin) == [
        "XFORWARD NAME=[UNAVAILABLE] ADDR=192.0.2.7 PROTO=ESMTPSA HELO=app.example.com"]
    assert commands("addr helo", origin) == ["XFORWARD ADDR=192.0.2.7 HELO=app.example.com"]
    assert commands("SOURCE IDENT", origin) == []
    assert commands("ADDR", Origin(addr="2001:db8::1")) == ["XFORWARD ADDR=2001:db8::1"]


def test_long_values_are_cut_to_255_and_split_over_two_lines_of_at_most_512() -> None:
    helo = "h" * 200 + "=" * 100  # each "=" is three characters of xtext
    origin = Origin(addr="192.0.2.7", name="n" * 300, helo=helo, proto="ESMTP")
    lines = commands(OFFER, origin)
    assert len(lines) == 2 and all(len(line) + 2 <= 512 for line in lines)
    pairs = dict(pair.split("=", 1) for line in lines for pair in line.split()[1:])
    assert set(pairs) == {"NAME", "ADDR", "PROTO", "HELO"}
    assert all(len(value) <= 255 for value in pairs.values())
    assert pairs["NAME"] == "n" * 255
    assert decode(pairs["HELO"]) == "h" * 200 + "=" * 18  # cut between characters, never mid-escape


async def test_client_sends_xforward_first_and_a_refusal_still_delivers() -> None:
    sink = await Sink().start()
    sink.behaviour.xforward = OFFER
    sink.behaviour.xforward_reply = "501 5.5.4 Bad XFORWARD attribute name"
    try:
        conn = await open_connection("127.0.0.1", sink.port, helo="relay.test", connect_timeout=5, command_timeout=3)
        xf = commands(conn.extensions["XFORWARD"], Origin(addr="192.0.2.7", helo="app", proto="ESMTP"))
        outcome = await conn.transaction("<a@x.example>", [("<b@y.example>", "b@y.example")],
                                         b"Subject: x\r\n\r\nbody\r\n", 5, xf)
        await conn.quit()
    finally:
        await sink.stop()
    assert outcome.delivered and outcome.xforward == "501 5.5.4 Bad XFORWARD attribute name"
    assert sink.commands[1:3] == ["XFORWARD NAME=[UNAVAILABLE] ADDR=192.0.2.7 PROTO=ESMTP HELO=app",
                                  "MAIL FROM:<a@x.example>"]


async def _send_from(port: int, source: str, helo: str) -> None:
    client = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, start_tls=False, local_hostname=helo,
                             source_address=(source, 0))
    await client.connect()
    errors, _ = await client.sendmail("news@shop.example.com", ["reader@example.org"], COMPLIANT)
    await client.quit()
    assert errors == {}


@pytest.mark.parametrize("enabled", [True, False])
async def test_relay_passes_the_real_client_on_each_pooled_transaction(start_relay, sink, enabled) -> None:
    sink.behaviour.xforward = OFFER
    relay = await start_relay({"relay_networks": ["127.0.0.0/8"], "upstream": {"xforward": enabled}})
    await _send_from(relay.port, "127.0.0.2", "app-one.example")
    await _send_from(relay.port, "127.0.0.3", "app-two.example")
    await asyncio.sleep(0)
    sent = [c for c in sink.commands if c.startswith("XFORWARD")]
    assert len(sink.received) == 2 and sink.connections == 1  # the second went over the pooled connection
    if not enabled:
        assert sent == []
        return
    assert sent == ["XFORWARD NAME=[UNAVAILABLE] ADDR=127.0.0.2 PROTO=ESMTP HELO=app-one.example",
                    "XFORWARD NAME=[UNAVAILABLE] ADDR=127.0.0.3 PROTO=ESMTP HELO=app-two.example"]
    # Each came right before its own MAIL FROM, outside any transaction.
    for line in sent:
        assert sink.commands[sink.commands.index(line) + 1].startswith("MAIL FROM:")


async def test_no_xforward_to_an_upstream_that_does_not_offer_it(start_relay, sink) -> None:
    relay = await start_relay({"relay_networks": ["127.0.0.0/8"]})
    await _send_from(relay.port, "127.0.0.2", "app-one.example")
    assert len(sink.received) == 1 and not any(c.upper().startswith("XFORWARD") for c in sink.commands)


async def test_one_at_a_time_a_refused_xforward_does_not_stop_the_transaction() -> None:
    """Without PIPELINING each command waits for its reply; a refused XFORWARD is not a refused
    transaction (only a refusal of MAIL, RCPT or DATA stops it)."""
    from tests.outbound.test_client import greet, serve

    seen: list[bytes] = []
    replies = [b"501 5.5.4 Bad XFORWARD attribute\r\n", b"250 ok\r\n", b"250 ok\r\n", b"354 go\r\n",
               b"250 2.0.0 queued as Q1\r\n"]

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await greet(reader, writer, pipelining=False, extensions=b"250-XFORWARD NAME ADDR PROTO HELO\r\n")
        for i, reply in enumerate(replies):  # XFORWARD, MAIL, RCPT, DATA, then the message
            seen.append(await reader.readuntil(b"\r\n.\r\n" if i == 4 else b"\r\n"))
            writer.write(reply)
        await reader.read()

    server, port = await serve(script)
    async with server:
        conn = await open_connection("127.0.0.1", port, helo="relay.test", connect_timeout=5, command_timeout=3)
        assert not conn.supports("PIPELINING")
        xf = commands(conn.extensions["XFORWARD"], Origin(addr="192.0.2.7"))
        outcome = await conn.transaction("<a@x.example>", [("<b@y.example>", "b@y.example")], b"Subject: x\r\n\r\nhi\r\n", 5, xf)
        conn.close()
    assert outcome.delivered and outcome.code == 250 and outcome.xforward.startswith("501")
    assert seen[0] == b"XFORWARD NAME=[UNAVAILABLE] ADDR=192.0.2.7 PROTO=[UNAVAILABLE] HELO=[UNAVAILABLE]\r\n"
    assert seen[1:4] == [b"MAIL FROM:<a@x.example>\r\n", b"RCPT TO:<b@y.example>\r\n", b"DATA\r\n"]
