"""`sendwarden dns-check` against a good and a broken zone on the loopback DNS server."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from proxy.outbound import preflight
from proxy.dns import Resolver
from tests.conftest import SENDWARDEN
from tests.support.dkimkit import make_key
from tests.support.dnsserver import DnsServer


async def dns_check(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(*SENDWARDEN, "dns-check", *args, env=env, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    return proc.returncode or 0, out.decode(), err.decode()


@pytest.fixture
def good(tmp_path: Path, dns_server: DnsServer) -> Path:
    """example.com set up as a bulk sender should be; returns the local DKIM key's path."""
    dns_server.zone("example.com", """
        @        TXT   "v=spf1 ip4:192.0.2.0/24 include:_spf.example.com -all"
        _spf     TXT   "v=spf1 ip4:198.51.100.0/24 -all"
        @        TXT   "google-site-verification=abc"
        @        MX    10 mx.example.com.
        mx       A     192.0.2.25
        mail     A     198.51.100.7
        _dmarc   TXT   "v=DMARC1; p=reject; rua=mailto:dmarc@example.com"
    """).zone("100.51.198.in-addr.arpa", "7 PTR mail.example.com.")
    return Path(make_key(tmp_path, "example.com", "s1", "rsa", dns_server).path)


async def test_good_zone_passes(good: Path, dns_server: DnsServer, cli_env: dict[str, str]) -> None:
    code, out, err = await dns_check(cli_env, "example.com", "--selector", "s1", "--key", str(good),
                                     "--relay-ip", "198.51.100.7", "--nameserver", dns_server.nameserver, "--json")
    assert code == 0, out + err
    doc = json.loads(out)
    assert doc["ok"] is True
    by = {c["check"]: c for c in doc["checks"]}
    assert by["SPF"]["status"] == "pass" and by["SPF"]["data"]["lookups"] == 1 and by["SPF"]["data"]["result"] == "pass"
    assert by["DKIM s1"]["status"] == "pass" and by["DKIM s1"]["data"]["bits"] == 2048 and "matches" in by["DKIM s1"]["detail"]
    assert by["DMARC"]["status"] == "pass" and by["DMARC"]["data"]["policy"] == "reject"
    assert by["MX"]["status"] == "pass" and by["MX"]["data"]["mx"] == [[10, "mx.example.com"]]
    assert by["PTR"]["status"] == "pass" and by["PTR"]["detail"] == "198.51.100.7 → mail.example.com → 198.51.100.7"
    # The table for people says the same.
    code, out, _ = await dns_check(cli_env, "example.com", "--selector", "s1", "--key", str(good),
                                   "--relay-ip", "198.51.100.7", "--nameserver", dns_server.nameserver)
    assert code == 0 and "ready: every bulk-sender requirement checked here is met" in out
    assert any(line.startswith("SPF") and " pass " in line for line in out.splitlines())


@pytest.fixture
def broken(tmp_path: Path, dns_server: DnsServer) -> Path:
    """broken.example: SPF over the lookup limit, a DKIM record of another key, no DMARC, a PTR
    that does not resolve back."""
    includes = " ".join(f"include:s{i}.broken.example" for i in range(11))
    dns_server.zone("broken.example", "mail A 203.0.113.99").add("broken.example", "TXT", f"v=spf1 {includes} -all")
    for i in range(11):
        dns_server.add(f"s{i}.broken.example", "TXT", f"v=spf1 ip4:10.0.{i}.0/24 -all")
    dns_server.zone("113.0.203.in-addr.arpa", "5 PTR mail.broken.example.")
    make_key(tmp_path, "broken.example", "s1", "rsa", dns_server)  # published, but...
    other = tmp_path / "other"
    return Path(make_key(other, "broken.example", "s1", "rsa").path)  # ...this is the local key


async def test_broken_zone_fails_with_reasons(broken: Path, dns_server: DnsServer, cli_env: dict[str, str]) -> None:
    code, out, err = await dns_check(cli_env, "broken.example", "--selector", "s1", "--key", str(broken),
                                     "--relay-ip", "203.0.113.5", "--nameserver", dns_server.nameserver, "--json")
    assert code == 11, out + err
    by = {c["check"]: c for c in json.loads(out)["checks"]}
    assert by["SPF"]["status"] == "fail" and "permerror" in by["SPF"]["detail"] and "Too many DNS lookups" in by["SPF"]["detail"]
    assert by["DKIM s1"]["status"] == "fail" and "does not match the local key" in by["DKIM s1"]["detail"]
    assert by["DMARC"]["status"] == "fail" and "no DMARC record" in by["DMARC"]["detail"]
    assert by["MX"]["status"] == "warn" and by["MX"]["required"] is False
    assert by["PTR"]["status"] == "fail" and "does not resolve back" in by["PTR"]["detail"]
    code, out, _ = await dns_check(cli_env, "broken.example", "--selector", "s1", "--key", str(broken),
                                   "--nameserver", dns_server.nameserver)
    assert code == 11 and "NOT READY: unmet bulk-sender requirements: SPF, DKIM s1, DMARC" in out


async def run(dns: DnsServer, domain: str, relay_ip: str | None = None, selectors: Any = ()) -> dict[str, preflight.Item]:
    items = await preflight.run(domain, Resolver([dns.nameserver], timeout=0.5), list(selectors), relay_ip)
    return {i.check: i for i in items}


async def test_spf_details(dns_server: DnsServer) -> None:
    dns_server.zone("example.net", """
        @      TXT "v=spf1 ip4:192.0.2.1 -all"
        @      TXT "v=spf1 a -all"
        open   TXT "v=spf1 +all"
        soft   TXT "v=spf1 ip4:192.0.2.1 ~all"
        bad    TXT "v=spf1 ip4:192.0.2.300 -all"
        voids  TXT "v=spf1 a:x1.example.net a:x2.example.net a:x3.example.net -all"
        none   TXT "hello"
    """)
    assert "2 SPF records" in (await run(dns_server, "example.net"))["SPF"].detail
    assert (await run(dns_server, "open.example.net"))["SPF"].status == "warn"
    soft = (await run(dns_server, "soft.example.net", relay_ip="192.0.2.9"))["SPF"]
    assert soft.status == "fail" and "not authorised (softfail" in soft.detail
    assert "Invalid IP4 address" in (await run(dns_server, "bad.example.net"))["SPF"].detail
    assert "Void lookup limit" in (await run(dns_server, "voids.example.net"))["SPF"].detail
    assert "no SPF record" in (await run(dns_server, "none.example.net"))["SPF"].detail


async def test_dmarc_and_dkim_details(tmp_path: Path, dns_server: DnsServer) -> None:
    dns_server.zone("example.org", """
        _dmarc       TXT "v=DMARC1; p=none"
        _dmarc.sub   TXT "v=DMARC1; p=bogus"
        s2._domainkey TXT "v=DKIM1; k=rsa; t=y; p=MIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQKBgQC8"
    """)
    items = await run(dns_server, "news.example.org")
    assert items["DMARC"].status == "pass" and "p=none at _dmarc.example.org" in items["DMARC"].detail  # inherited
    items = await run(dns_server, "example.org", selectors=[("s2", None)])
    assert items["DKIM s2"].status == "fail" and "does not parse" in items["DKIM s2"].detail
    assert (await run(dns_server, "sub.example.org"))["DMARC"].status == "fail"
    key = make_key(tmp_path, "example.org", "e1", "ed25519", dns_server)
    assert (await run(dns_server, "example.org", selectors=[("e1", key)]))["DKIM e1"].status == "pass"


async def test_dns_failure_is_a_failed_check_not_a_crash(dns_server: DnsServer, cli_env: dict[str, str]) -> None:
    dns_server.zone("example.com", '@ TXT "v=spf1 -all"')
    dns_server.behaviour.timeout.add("*")
    code, out, err = await dns_check(cli_env, "example.com", "--selector", "s1", "--nameserver", dns_server.nameserver,
                                     "--timeout", "0.3", "--json")
    assert code == 11 and err.startswith("sendwarden: using the embedded development configuration") and err.count("\n") == 1
    checks = json.loads(out)["checks"]
    assert all(c["status"] == "fail" and "DNS lookup failed" in c["detail"] for c in checks if c["check"] != "PTR")


async def test_usage_errors(cli_env: dict[str, str]) -> None:
    code, _, err = await dns_check(cli_env, "not a domain")
    assert code == 1 and "is not a domain name" in err
    code, _, err = await dns_check(cli_env, "example.com", "--relay-ip", "nope")
    assert code == 1 and "--relay-ip" in err
    code, _, err = await dns_check(cli_env, "example.com", "--nameserver", "dns.example.com")
    assert code == 1 and "--nameserver" in err
