"""DKIM through the real relay: what it signs arrives verifiable at the sink; what arrives
signed is verified, and a key lookup that times out is answered 451 4.4.3."""

from __future__ import annotations

import time
from pathlib import Path

import aiosmtplib
import pytest
from structlog.testing import capture_logs

from proxy.facts.dkim import verify
from proxy.outbound.dkim import Signer
from proxy.dns import Resolver
from proxy.replies import Replies
from tests.conftest import ROOT
from tests.support.dkimkit import key_config, make_key
from tests.support.dnsserver import DnsServer
from tests.support.smtpclient import enhanced, send_one

COMPLIANT = (ROOT / "examples" / "compliant.eml").read_bytes().replace(b"\n", b"\r\n")
REFUSED, DEFERRED = Replies.policy_reject([], ""), Replies.policy_tempfail([], "")
RELAYED = Replies.relayed("", "")


def dns_config(dns: DnsServer, timeout: float = 1.0) -> dict[str, object]:
    return {"dns": {"nameservers": [dns.nameserver], "timeout": timeout}}


async def test_relay_signs_last_and_the_sink_gets_a_verifiable_message(tmp_path: Path, dns_server: DnsServer,
                                                                       start_relay, sink) -> None:
    rsa_key = make_key(tmp_path, "shop.example.com", "s2026", "rsa", dns_server)
    ed_key = make_key(tmp_path, "shop.example.com", "e2026", "ed25519", dns_server)
    relay = await start_relay({**dns_config(dns_server), "dkim": key_config(rsa_key, ed_key)})
    with capture_logs() as logs:
        assert (await send_one(relay.port, COMPLIANT))[0] == RELAYED.code
    [got] = sink.received
    # The signatures sit on top of everything the relay added (Received), the message below is untouched.
    assert got.data.startswith(b"DKIM-Signature: ") and got.data.endswith(COMPLIANT)
    assert got.data.index(b"Received: from") > got.data.rindex(b"DKIM-Signature: ")
    result = await verify(got.data, Resolver([dns_server.nameserver], timeout=1))
    assert sorted((s.selector, s.status) for s in result.signatures) == [("e2026", "pass"), ("s2026", "pass")]
    [audit] = [e for e in logs if e["event"] == "message"]
    assert "d=shop.example.com s=s2026 a=rsa-sha256" in audit["dkim"]


async def test_keys_are_loaded_once_at_start(tmp_path: Path, dns_server: DnsServer, start_relay, sink) -> None:
    key = make_key(tmp_path, "shop.example.com", "s1", "rsa", dns_server)
    relay = await start_relay({**dns_config(dns_server), "dkim": key_config(key)})
    Path(key.path).unlink()  # gone from disk: the relay still signs with what it loaded
    assert (await send_one(relay.port, COMPLIANT))[0] == RELAYED.code
    assert sink.received[0].data.startswith(b"DKIM-Signature: ")


async def test_a_bad_key_file_stops_the_start_with_a_clear_error(tmp_path: Path, start_relay) -> None:
    from proxy.tomlfile import ConfigError

    bad = tmp_path / "bad.key"
    bad.write_text("nope")
    bad.chmod(0o600)
    with pytest.raises(ConfigError, match=r"dkim\.keys\[0\]\.key: .*bad\.key: not a PEM private key"):
        await start_relay({"dkim": {"keys": [{"domain": "example.com", "selector": "s", "key": str(bad)}]}})


async def test_incoming_signature_verified_and_relayed(tmp_path: Path, dns_server: DnsServer, start_relay, sink) -> None:
    app_key = make_key(tmp_path, "shop.example.com", "app", "ed25519", dns_server)
    signed, _ = Signer([app_key], ["From", "To", "Subject"], ["From"]).sign(COMPLIANT)
    relay = await start_relay(dns_config(dns_server))
    assert (await send_one(relay.port, signed))[0] == RELAYED.code
    assert sink.received[0].data.endswith(signed)
    assert ("app._domainkey.shop.example.com", "TXT", "udp") in dns_server.queries


async def test_incoming_broken_signature_is_refused(tmp_path: Path, dns_server: DnsServer, start_relay, sink) -> None:
    app_key = make_key(tmp_path, "shop.example.com", "app", "rsa", dns_server)
    signed, _ = Signer([app_key], ["From", "To", "Subject"], ["From"]).sign(COMPLIANT)
    relay = await start_relay(dns_config(dns_server))
    code, text = await send_one(relay.port, signed.replace(b"autumn collection is here", b"autumn collection is HERE"))
    assert (code, enhanced(text)) == (REFUSED.code, REFUSED.enhanced) and "sender.dkim_fail" in text
    assert sink.received == []


async def test_key_lookup_timeout_is_answered_451(tmp_path: Path, dns_server: DnsServer, start_relay, sink) -> None:
    app_key = make_key(tmp_path, "shop.example.com", "app", "rsa", dns_server)
    signed, _ = Signer([app_key], ["From", "To", "Subject"], ["From"]).sign(COMPLIANT)
    dns_server.behaviour.timeout.add("*._domainkey.shop.example.com")
    relay = await start_relay(dns_config(dns_server, timeout=0.5))
    t0 = time.monotonic()
    with capture_logs() as logs:
        code, text = await send_one(relay.port, signed)
    assert (code, enhanced(text)) == (DEFERRED.code, DEFERRED.enhanced) and "lookup.failed" in text
    assert "app._domainkey.shop.example.com" in text  # says what failed
    assert time.monotonic() - t0 < 3
    assert sink.received == []  # nothing relayed, nothing lost: the client retries
    [audit] = [e for e in logs if e["event"] == "message"]
    assert audit["action"] == "tempfail" and audit["rules"] == ["lookup.failed"]
    # Once DNS answers again, the retry goes through.
    dns_server.behaviour.timeout.clear()
    assert (await send_one(relay.port, signed))[0] == RELAYED.code


async def test_reload_reads_new_keys_and_keeps_the_old_on_a_bad_one(tmp_path: Path, dns_server: DnsServer,
                                                                    start_relay, sink) -> None:
    from tests.conftest import make_config

    old = make_key(tmp_path, "shop.example.com", "old", "rsa", dns_server)
    new = make_key(tmp_path, "shop.example.com", "new", "ed25519", dns_server)
    relay = await start_relay({**dns_config(dns_server), "dkim": key_config(old)})
    resolver = relay.resolver
    policy = relay.policy
    relay.reload_source = lambda: (make_config(tmp_path, sink.url, {**dns_config(dns_server), "dkim": key_config(new)}), policy)
    assert await relay.reload()
    assert relay.resolver is resolver  # [dns] unchanged: the resolver and its cache stay
    bad = tmp_path / "bad.key"
    bad.write_text("nope")
    bad.chmod(0o600)
    broken = {**dns_config(dns_server), "dkim": {"keys": [{"domain": "shop.example.com", "selector": "x", "key": str(bad)}]}}
    relay.reload_source = lambda: (make_config(tmp_path, sink.url, broken), policy)
    assert not await relay.reload()  # refused; the keys loaded before stay in force
    assert (await send_one(relay.port, COMPLIANT))[0] == RELAYED.code
    result = await verify(sink.received[-1].data, Resolver([dns_server.nameserver], timeout=1))
    assert [(s.selector, s.status) for s in result.signatures] == [("new", "pass")]


async def test_a_released_message_is_signed_like_a_relayed_one(tmp_path: Path, dns_server: DnsServer,
                                                               start_relay, sink) -> None:
    from proxy.outbound.upstream import upstream_for
    from proxy.transaction.release import Reviewer

    key = make_key(tmp_path, "shop.example.com", "s1", "rsa", dns_server)
    relay = await start_relay({**dns_config(dns_server), "dkim": key_config(key)},
                              policy='[actions]\n"unsubscribe.*" = "quarantine"\n')
    plain = (ROOT / "examples" / "plain.eml").read_bytes().replace(b"\n", b"\r\n")
    client = aiosmtplib.SMTP(hostname="127.0.0.1", port=relay.port, start_tls=False)
    await client.connect()
    _, text = await client.sendmail("news@shop.example.com", ["reader@example.org"], plain)
    await client.quit()
    hold_id = text.rsplit("id=", 1)[1].split()[0]
    upstream = upstream_for(relay.config)
    reviewer = Reviewer(relay.quarantine, relay.config, "tester", "root", upstream=upstream)
    try:
        outcome = await reviewer.release(hold_id, "checked by hand")
    finally:
        await upstream.close()
    assert outcome.ok, outcome
    [got] = sink.received
    assert got.data.startswith(b"DKIM-Signature: ") and got.data.endswith(plain)
    result = await verify(got.data, Resolver([dns_server.nameserver], timeout=1))
    assert [(s.selector, s.status) for s in result.signatures] == [("s1", "pass")]
