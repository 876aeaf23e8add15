"""The routing fact of a recipient domain: its MX records, else its addresses (RFC 5321 5.1's
implicit MX), through the one resolver (proxy/dns.py) and its cache.

Negative answers (NXDOMAIN, no records) are cached by the resolver for the SOA's negative TTL
(RFC 2308), and concurrent lookups of one name share one query, so a list with thousands of
addresses at one dead domain costs one lookup. `DnsFailure` (timeout, SERVFAIL, ...) passes
through: the caller turns it into a `lookup.failed` finding.
"""

from __future__ import annotations

from proxy.dns import Resolver
from proxy.policy.families.recipient import Route

__all__ = ["cached_route", "route"]


def cached_route(resolver: Resolver, domain: str) -> Route | None:
    """The `Route` from the resolver's cache alone, or None when a lookup is needed."""
    mx = resolver.cached(domain, "MX")
    if mx is None:
        return None
    if mx.nxdomain:
        return Route(domain, nxdomain=True)
    if mx.values:
        return Route(domain, mx=tuple(sorted(mx.values)))
    a, aaaa = resolver.cached(domain, "A"), resolver.cached(domain, "AAAA")
    if a is None or aaaa is None:
        return None
    return Route(domain, addresses=(*a.values, *aaaa.values))


async def route(resolver: Resolver, domain: str) -> Route:
    """The `Route` of `domain` (A-label form); raises DnsFailure when the DNS gave no definite answer."""
    mx = await resolver.query(domain, "MX")
    if mx.nxdomain:
        return Route(domain, nxdomain=True)
    if mx.values:
        return Route(domain, mx=tuple(sorted(mx.values)))
    addresses = await resolver.addresses(domain)
    return Route(domain, addresses=tuple(addresses))
