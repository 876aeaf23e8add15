"""What the network rules cost a relay, from the loopback DNS server (not a timed test; prints
figures):

    .venv/bin/python bench/network_rules.py [--n 5000]

- RCPT: `recipient.blocked_destination` + `recipient.domain_unroutable` for a recipient whose
  domain is in the resolver's cache (the steady state: a list mails the same domains all day),
  and a dead domain (NXDOMAIN, cached for the SOA's negative TTL);
- DATA: the URI blocklist fact of a newsletter (its link domains in two zones, cached);
- DATA: the dead-link and complaint-rate facts, read from the in-memory snapshot.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from proxy.dns import Resolver  # noqa: E402
from proxy.facts.blocklist import look_up  # noqa: E402
from proxy.facts.reputation import Reputation, complaint_rate_fact, privacy_dead_fact  # noqa: E402
from proxy.message.mime import Message  # noqa: E402
from proxy.policy.families.blocklist import BlocklistOptions, Zone, lookup_domains  # noqa: E402
from proxy.policy.families.complaints import ComplaintRateOptions, Rate  # noqa: E402
from proxy.policy.families.privacy import PrivacyOptions  # noqa: E402
from proxy.policy.families.recipient import RecipientOptions  # noqa: E402
from proxy.policy.registry import Context  # noqa: E402
from proxy.transaction.recipients import domain_findings  # noqa: E402
from tests.support.dnsserver import DnsServer  # noqa: E402

NEWSLETTER = (ROOT / "tests" / "fixtures" / "corpus" / "newsletter_en.eml").read_bytes()


async def per_call(n: int, fn) -> float:  # type: ignore[no-untyped-def]
    """Median microseconds per call over 5 rounds of n calls."""
    rounds = []
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(n):
            await fn()
        rounds.append((time.perf_counter() - t0) / n * 1e6)
    return statistics.median(rounds)


async def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--n", type=int, default=5000)
    n = p.parse_args().n
    server = await DnsServer().start()
    server.zone("test", "ok MX 10 mx.ok.test.\nmx.ok A 192.0.2.25\n")
    server.zone("dbl.test", "listed.com A 127.0.1.2\n")
    server.zone("multi.test", "")
    resolver = Resolver([server.nameserver], timeout=2)
    opts = RecipientOptions(blocked_tlds=["ru", "ir", "kp"], blocked_domains=["sanctioned.example"])
    await domain_findings(resolver, opts, "a@ok.test", 2)
    await domain_findings(resolver, opts, "a@dead.test", 2)
    rows = [
        ("RCPT: blocked list only (no lookup)", await per_call(n, lambda: domain_findings(None, opts, "a@ok.test", 2))),
        ("RCPT: routable domain, cached", await per_call(n, lambda: domain_findings(resolver, opts, "a@ok.test", 2))),
        ("RCPT: dead domain, negative answer cached", await per_call(n, lambda: domain_findings(resolver, opts, "a@dead.test", 2))),
    ]
    msg = Message.from_bytes(NEWSLETTER)
    bl = BlocklistOptions(enabled=True, zones=[Zone(zone="dbl.test"), Zone(zone="multi.test")])
    domains = lookup_domains(msg, bl)
    await look_up(resolver, domains, bl.zones)
    rows.append((f"DATA: blocklist fact, {len(domains)} domains x 2 zones, cached",
                 await per_call(n // 5, lambda: look_up(resolver, domains, bl.zones))))
    rep = Reputation(announce=False)
    rep.dead = {f"https://example{i}.com/privacy": "HTTP 404" for i in range(1000)}
    rep.rates = {f"domain:d{i}.example": Rate(f"domain:d{i}.example", 5000, 1) for i in range(1000)}
    holder = type("Holder", (), {"reputation": rep})()
    ctx = Context(marketing=True)
    popts, copts = PrivacyOptions(), ComplaintRateOptions()

    async def snapshot() -> None:
        privacy_dead_fact(holder, msg, ctx, popts)
        complaint_rate_fact(holder, msg, ctx, copts)

    rows.append(("DATA: dead-link + complaint-rate facts (snapshot of 1000 each)", await per_call(n, snapshot)))
    await server.stop()
    print(f"{'step':<64} us/call")
    for name, us in rows:
        print(f"{name:<64} {us:8.1f}")
    print(f"DNS queries sent in all: {len(server.queries)} (everything else came from the cache)")


if __name__ == "__main__":
    asyncio.run(main())
