"""The one resolver against a real DNS server on loopback: answers, negative answers, caching,
shared in-flight queries, TCP fallback, and every failure turned into DnsFailure, never a crash."""

from __future__ import annotations

import asyncio
import time

import pytest

from proxy.dns import DnsFailure, Resolver, parse_nameserver
from tests.support.dnsserver import DnsServer

LONG = "v=DKIM1; k=rsa; p=" + "A" * 700  # more than one 255-byte string, more than 512 bytes


@pytest.fixture
def zone(dns_server: DnsServer) -> DnsServer:
    return dns_server.zone("example.com", """
        @        MX   10 mx1.example.com.
        @        MX   5 mx0.example.com.
        @        TXT  "v=spf1 ip4:192.0.2.0/24 -all"
        mx0      A    192.0.2.25
        mx0      AAAA 2001:db8::25
        www      CNAME web.example.com.
        web      A    192.0.2.80
        deep.sub TXT  "x"
        *.wild   TXT  "wildcard"
    """).add("big._domainkey.example.com", "TXT", LONG).zone("2.0.192.in-addr.arpa", """
        25 PTR mx0.example.com.
    """)


def resolver(server: DnsServer, **kw: float) -> Resolver:
    return Resolver([server.nameserver], timeout=kw.pop("timeout", 1.0), **kw)  # type: ignore[arg-type]


async def test_answers_by_type(zone: DnsServer) -> None:
    r = resolver(zone)
    assert await r.txt("example.com") == ["v=spf1 ip4:192.0.2.0/24 -all"]
    assert await r.mx("example.com.") == [(5, "mx0.example.com"), (10, "mx1.example.com")]
    assert sorted(await r.addresses("mx0.example.com")) == ["192.0.2.25", "2001:db8::25"]
    assert await r.ptr("192.0.2.25") == ["mx0.example.com"]
    assert (await r.query("WWW.Example.COM", "A")).values == ("192.0.2.80",)  # CNAME followed
    assert await r.txt("anything.wild.example.com") == ["wildcard"]


async def test_long_txt_joined_and_fetched_over_tcp(zone: DnsServer) -> None:
    r = resolver(zone)
    assert await r.txt("big._domainkey.example.com") == [LONG]
    # The UDP answer did not fit: the client was told so (TC) and asked again over TCP.
    protos = [p for n, t, p in zone.queries if n == "big._domainkey.example.com"]
    assert protos[-1] == "tcp"


async def test_negative_answers_are_answers(zone: DnsServer) -> None:
    r = resolver(zone)
    missing = await r.query("nope.example.com", "TXT")
    assert missing.nxdomain and missing.values == ()
    nodata = await r.query("web.example.com", "TXT")
    assert not nodata.nxdomain and nodata.values == ()
    ent = await r.query("sub.example.com", "TXT")  # empty non-terminal: exists, no data
    assert not ent.nxdomain
    assert (await r.query("bad..name", "TXT")).nxdomain  # cannot exist; nothing sent
    assert ("bad..name", "TXT", "udp") not in zone.queries


async def test_cache_serves_repeats_and_negative_answers(zone: DnsServer) -> None:
    r = resolver(zone)
    for _ in range(3):
        await r.txt("example.com")
        await r.query("nope.example.com", "TXT")
    assert [q for q in zone.queries if q[0] == "example.com"] == [("example.com", "TXT", "udp")]
    assert len([q for q in zone.queries if q[0] == "nope.example.com"]) == 1
    assert r.cache_stats()["hits"] >= 4


async def test_cache_is_bounded_and_ttl_capped(zone: DnsServer) -> None:
    r = resolver(zone, cache_size=2)
    for name in ("example.com", "mx0.example.com", "web.example.com", "example.com"):
        await r.query(name, "A" if name != "example.com" else "TXT")
    assert len([q for q in zone.queries if q[0] == "example.com"]) == 2  # evicted, asked again
    capped = resolver(zone, max_ttl=0.2)
    await capped.txt("example.com")
    await asyncio.sleep(0.3)
    await capped.txt("example.com")
    assert len([q for q in zone.queries if q[0] == "example.com"]) == 4


async def test_concurrent_lookups_share_one_query(zone: DnsServer) -> None:
    zone.behaviour.delay = 0.1
    r = resolver(zone)
    results = await asyncio.gather(*(r.txt("example.com") for _ in range(20)))
    assert all(x == results[0] for x in results)
    assert len([q for q in zone.queries if q[0] == "example.com"]) == 1


async def test_timeout_is_a_dns_failure_within_the_budget(zone: DnsServer) -> None:
    zone.behaviour.timeout.add("*._domainkey.example.com")
    r = resolver(zone, timeout=0.5)
    t0 = time.monotonic()
    with pytest.raises(DnsFailure, match="no answer within 0.5s"):
        await r.txt("sel._domainkey.example.com")
    assert time.monotonic() - t0 < 1.5
    assert await r.txt("example.com")  # other names still answer


async def test_servfail_refused_and_unreachable_are_dns_failures(zone: DnsServer) -> None:
    zone.behaviour.servfail.add("broken.example.com")
    r = resolver(zone)
    with pytest.raises(DnsFailure, match="nameservers"):
        await r.txt("broken.example.com")
    with pytest.raises(DnsFailure):
        await r.txt("outside.example.net")  # not our zone: REFUSED
    dead = Resolver(["127.0.0.1:9"], timeout=0.5)  # nothing listens on the discard port
    with pytest.raises(DnsFailure):
        await dead.txt("example.com")


async def test_a_caller_giving_up_does_not_cancel_the_others(zone: DnsServer) -> None:
    zone.behaviour.delay = 0.2
    r = resolver(zone)
    impatient = asyncio.ensure_future(asyncio.wait_for(r.txt("example.com"), 0.05))
    patient = asyncio.ensure_future(r.txt("example.com"))
    with pytest.raises(asyncio.TimeoutError):
        await impatient
    assert await patient == ["v=spf1 ip4:192.0.2.0/24 -all"]


def test_parse_nameserver() -> None:
    assert parse_nameserver("192.0.2.1") == ("192.0.2.1", 53)
    assert parse_nameserver("127.0.0.1:5353") == ("127.0.0.1", 5353)
    assert parse_nameserver("::1") == ("::1", 53)
    assert parse_nameserver("[::1]:5353") == ("::1", 5353)
    for bad in ("dns.example.com", "127.0.0.1:0", "127.0.0.1:x", "[::1]"):
        with pytest.raises(ValueError):
            parse_nameserver(bad)
