"""The happy path: a compliant message goes through the real relay to the real sink, byte for byte."""

from __future__ import annotations

import aiosmtplib

from tests.conftest import ROOT

COMPLIANT = (ROOT / "examples" / "compliant.eml").read_bytes().replace(b"\n", b"\r\n")


async def test_compliant_message_arrives_byte_for_byte(start_relay, sink) -> None:
    relay = await start_relay()
    client = aiosmtplib.SMTP(hostname="127.0.0.1", port=relay.port, start_tls=False)
    await client.connect()
    errors, text = await client.sendmail("news@shop.example.com", ["reader@example.org"], COMPLIANT)
    await client.quit()
    assert errors == {}
    assert text.startswith("2.0.0 Ok: relayed id=")
    assert "SINK1" in text  # the upstream's queue id is passed back
    [got] = sink.received
    assert got.mail_from == "news@shop.example.com"
    assert [r for r, _ in got.rcpts] == ["reader@example.org"]
    # sendwarden only prepends its Received header; the rest is the original, unchanged.
    assert got.data.endswith(COMPLIANT)
    prefix = got.data[: -len(COMPLIANT)]
    assert prefix.startswith(b"Received: from ")
    assert prefix.count(b"\r\n") == 4 and b"(sendwarden) with ESMTP id " in prefix
