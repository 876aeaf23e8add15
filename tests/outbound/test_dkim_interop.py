"""Interoperability: what sendwarden signs (through the real relay, as it arrives at the sink)
verifies with independent verifiers that look the key up through /etc/resolv.conf: dkimpy's
`dkimverify` script and OpenDKIM's `opendkim-testmsg` (C, libopendkim; Debian opendkim-tools).
Both run in a private mount+network namespace with the loopback DNS server on its port 53, so
nothing leaves this machine (tests/support/nsverify.py)."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import aiosmtplib
import pytest

from tests.conftest import ROOT
from tests.support.dkimkit import key_config, make_key
from tests.support.dnsserver import txt_value
from tests.support.nsverify import verify_independently

COMPLIANT = (ROOT / "examples" / "compliant.eml").read_bytes().replace(b"\n", b"\r\n")

pytestmark = pytest.mark.skipif(shutil.which("opendkim-testmsg") is None,
                                reason="opendkim-tools is not installed (make test installs it)")


async def relay_signed(start_relay, sink, keys: list) -> bytes:
    relay = await start_relay({"dkim": key_config(*keys)})
    client = aiosmtplib.SMTP(hostname="127.0.0.1", port=relay.port, start_tls=False)
    await client.connect()
    await client.sendmail("news@shop.example.com", ["reader@example.org"], COMPLIANT)
    await client.quit()
    [got] = sink.received
    return got.data


@pytest.mark.parametrize("key_type", ["rsa", "ed25519"])
async def test_independent_verifiers_accept_what_the_relay_signs(tmp_path: Path, start_relay, sink, key_type: str) -> None:
    key = make_key(tmp_path, "shop.example.com", "s2026", key_type)
    data = await relay_signed(start_relay, sink, [key])
    zones = {"example.com": f"s2026._domainkey.shop TXT {txt_value(key.record)}"}
    result = await asyncio.to_thread(verify_independently, data, zones, tmp_path)
    assert result["dkimverify"] == {"status": 0, "output": "signature ok"}
    assert result["opendkim"] == {"status": 0, "output": ""}
    # ...and they are really checking: one changed byte in a signed header, both refuse.
    bad = data.replace(b"Subject: Our autumn", b"Subject: Our Autumn")
    result = await asyncio.to_thread(verify_independently, bad, zones, tmp_path)
    assert result["dkimverify"]["status"] == 1
    assert result["opendkim"]["status"] != 0 and "Bad signature" in str(result["opendkim"]["output"])


async def test_dual_signed_both_signatures_verify(tmp_path: Path, start_relay, sink) -> None:
    rsa_key = make_key(tmp_path, "shop.example.com", "r1", "rsa")
    ed_key = make_key(tmp_path, "shop.example.com", "e1", "ed25519")
    data = await relay_signed(start_relay, sink, [rsa_key, ed_key])
    zones = {"example.com": "\n".join(f"{k.selector}._domainkey.shop TXT {txt_value(k.record)}" for k in (rsa_key, ed_key))}
    for index in (0, 1):
        result = await asyncio.to_thread(verify_independently, data, zones, tmp_path, index)
        assert result["dkimverify"] == {"status": 0, "output": "signature ok"}, index
    assert result["opendkim"]["status"] == 0
