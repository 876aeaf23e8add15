"""The one DNS resolver of the process: dnspython's asyncio stub resolver with a bounded TTL
cache, a time limit on every lookup, and answers as plain Python values.

Every DNS lookup sendwarden makes (DKIM keys, `dns-check`, recipient domains) goes through one
`Resolver`, so the cache is shared and the limits hold everywhere. Callers see two outcomes:

- an answer, possibly empty: `Records.values` is empty when the name has no record of that type,
  and `Records.nxdomain` says the name does not exist at all. Both are definite, and cached.
- `DnsFailure`: nothing definite could be learnt (timeout, SERVFAIL, REFUSED, no nameserver,
  a reply that does not parse). It is temporary by nature; a fact provider turns it into
  `LookupFailed` and the policy decides (default: 451 4.4.3). Nothing else is ever raised,
  whatever the name or the answer: a DNS problem is never a crash.

Concurrent lookups of the same name and type share one query, so a burst of messages signed
with the same key costs one round trip, not one per message.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import time
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Iterable, Sequence

import dns.asyncresolver
import dns.exception
import dns.name
import dns.nameserver
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.resolver
import dns.reversename
import structlog

log = structlog.get_logger("sendwarden.dns")

__all__ = ["DnsFailure", "Records", "Resolver", "parse_nameserver"]


class DnsFailure(Exception):
    """No definite answer could be had (timeout, SERVFAIL, unreachable nameservers...)."""


@dataclass(frozen=True, slots=True)
class Records:
    """The answer for one name and type. `values` by type: TXT → str (the record's strings
    joined), MX → (preference, host), A/AAAA → address, PTR/CNAME/NS → host (no final dot),
    anything else → its presentation text."""

    name: str
    rdtype: str
    values: tuple[Any, ...] = ()
    nxdomain: bool = False
    ttl: int = 0


def parse_nameserver(text: str) -> tuple[str, int]:
    """'192.0.2.1', '192.0.2.1:5353', '::1', '[::1]:5353' → (address, port).
    Nameservers are IP addresses: resolving a resolver's name would need a resolver."""
    text = text.strip()
    try:
        return str(ipaddress.ip_address(text)), 53
    except ValueError:
        pass
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        port_text = rest[1:] if sep and rest.startswith(":") else ""
    else:
        host, _, port_text = text.rpartition(":")
    try:
        address = str(ipaddress.ip_address(host))
    except ValueError:
        raise ValueError(f"{text!r}: a nameserver is an IP address, optionally with :PORT") from None
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f"{text!r}: port must be a number from 1 to 65535")
    return address, int(port_text)


class _BoundedTTLCache(dns.resolver.LRUCache):
    """dnspython's LRU cache (bounded in entries, honours each answer's TTL, caches NXDOMAIN and
    empty answers too), with TTLs capped so that a huge TTL cannot pin a stale key for days."""

    def __init__(self, max_size: int, max_ttl: float) -> None:
        super().__init__(max_size)
        self.max_ttl = max_ttl

    def put(self, key: Any, value: dns.resolver.Answer) -> None:
        value.expiration = min(value.expiration, time.time() + self.max_ttl)
        super().put(key, value)


def _value(rdtype: str, rdata: Any) -> Any:
    if rdtype == "TXT":
        return b"".join(rdata.strings).decode("utf-8", "replace")
    if rdtype == "MX":
        return (int(rdata.preference), rdata.exchange.to_text(omit_final_dot=True).lower())
    if rdtype in ("A", "AAAA"):
        return str(rdata.address)
    if rdtype in ("PTR", "CNAME", "NS"):
        return rdata.target.to_text(omit_final_dot=True).lower()
    return rdata.to_text()


class Resolver:
    """An async stub resolver with a shared, bounded TTL cache and per-lookup time limits.

    `nameservers` empty: the system's (/etc/resolv.conf); given: exactly those, each
    "ADDRESS" or "ADDRESS:PORT" (tests point it at a loopback server on a high port).
    `timeout` bounds one whole lookup, retries and TCP fallback included."""

    def __init__(self, nameservers: Sequence[str] = (), timeout: float = 3.0, cache_size: int = 10_000,
                 max_ttl: float = 3600.0) -> None:
        self.timeout = timeout
        self._resolver = self._make(nameservers)
        self._resolver.lifetime = timeout
        # Each try may use most of the budget: a nameserver that answers slowly but surely is
        # still better than giving up after a fraction of the time.
        self._resolver.timeout = max(0.2, timeout / 2)
        self._resolver.cache = _BoundedTTLCache(cache_size, max_ttl) if cache_size > 0 else None
        self._inflight: dict[tuple[str, str], asyncio.Future[Records]] = {}
        # In front of dnspython's cache: answers as Records by (name, type), with the expiry
        # dnspython gave them. dnspython's own look-up hashes a dns.name.Name (~25 us); this
        # is a dict look-up, for the answers asked again and again (RCPT domains, link domains).
        self._memo: dict[tuple[str, str], tuple[float, Records]] = {}
        self._memo_size = cache_size
        self._memo_hits = 0

    @classmethod
    def from_config(cls, cfg: Any) -> "Resolver":
        """From the service config's `[dns]` section."""
        return cls(cfg.nameservers, cfg.timeout, cfg.cache_size, cfg.max_ttl)

    @staticmethod
    def _make(nameservers: Sequence[str]) -> dns.asyncresolver.Resolver:
        if nameservers:
            r = dns.asyncresolver.Resolver(configure=False)
            r.nameservers = [dns.nameserver.Do53Nameserver(*parse_nameserver(n)) for n in nameservers]
            return r
        try:
            return dns.asyncresolver.Resolver()
        except (dns.resolver.NoResolverConfiguration, OSError) as exc:
            # Start anyway: every lookup fails temporarily (and says why) until DNS is fixed.
            log.error("dns_no_configuration", error=str(exc))
            r = dns.asyncresolver.Resolver(configure=False)
            r.nameservers = []
            return r

    @property
    def nameservers(self) -> list[str]:
        return [f"{n.address}:{n.port}" if isinstance(n, dns.nameserver.Do53Nameserver) else str(n)
                for n in self._resolver.nameservers]

    def _done(self, key: tuple[str, str], _future: asyncio.Future[Records]) -> None:
        self._inflight.pop(key, None)

    def cache_stats(self) -> dict[str, int]:
        cache = self._resolver.cache
        if cache is None:
            return {"hits": 0, "misses": 0}
        return {"hits": cache.hits() + self._memo_hits, "misses": cache.misses()}

    def flush(self) -> None:
        self._memo.clear()
        if self._resolver.cache is not None:
            self._resolver.cache.flush()

    async def query(self, name: str, rdtype: str) -> Records:
        """Look up `rdtype` records of `name` (absolute; a final dot is optional)."""
        rdtype = rdtype.upper()
        key = (name.lower().rstrip("."), rdtype)
        cached = self.cached(*key)
        if cached is not None:
            return cached
        pending = self._inflight.get(key)
        if pending is None:
            pending = asyncio.ensure_future(self._lookup(key[0], rdtype))
            self._inflight[key] = pending
            pending.add_done_callback(functools.partial(self._done, key))
        # shield: one caller giving up (its own time budget) must not cancel the others' query.
        return await asyncio.shield(pending)

    def cached(self, name: str, rdtype: str) -> Records | None:
        """The answer from the cache (None when it has none), without a task or a trip through
        dnspython's resolution: a cached lookup is the common case at RCPT and for a
        newsletter's link domains. `name` in lower case without a final dot."""
        key = (name, rdtype)
        memo = self._memo.get(key)
        if memo is not None:
            if memo[0] > time.time():
                self._memo_hits += 1
                return memo[1]
            del self._memo[key]
        cache = self._resolver.cache
        qname = _qname(name)
        if cache is None or qname is None:
            return None
        answer = cache.get((qname, _rdtype(rdtype), dns.rdataclass.IN))
        if answer is not None:
            return self._remember(key, answer.expiration, _records(name, rdtype, answer))
        nx = cache.get((qname, dns.rdatatype.ANY, dns.rdataclass.IN))
        if nx is not None and nx.response.rcode() == dns.rcode.NXDOMAIN:
            return self._remember(key, nx.expiration, Records(name, rdtype, nxdomain=True))
        return None

    def _remember(self, key: tuple[str, str], expiration: float, records: Records) -> Records:
        if len(self._memo) >= self._memo_size:
            self._memo.clear()  # bounded like the cache behind it; refilled from it as asked
        self._memo[key] = (expiration, records)
        return records

    async def _lookup(self, name: str, rdtype: str) -> Records:
        try:
            qname = dns.name.from_text(name or ".")
        except (dns.exception.DNSException, ValueError):
            return Records(name, rdtype, nxdomain=True)  # cannot exist in the DNS
        try:
            answer = await self._resolver.resolve(qname, rdtype, raise_on_no_answer=False, search=False)
        except dns.resolver.NXDOMAIN:
            return Records(name, rdtype, nxdomain=True)
        except dns.resolver.LifetimeTimeout:
            raise DnsFailure(f"{name} {rdtype}: no answer within {self.timeout:g}s") from None
        except dns.resolver.NoNameservers as exc:
            raise DnsFailure(f"{name} {rdtype}: {_servfail_reason(exc)}") from None
        except dns.exception.DNSException as exc:
            raise DnsFailure(f"{name} {rdtype}: {type(exc).__name__}: {exc}") from None
        except (OSError, ValueError) as exc:  # e.g. a nameserver address that cannot be reached
            raise DnsFailure(f"{name} {rdtype}: {exc}") from None
        return _records(name, rdtype, answer)

    # -- convenience, one per record type callers need -------------------------------------------

    async def txt(self, name: str) -> list[str]:
        return list((await self.query(name, "TXT")).values)

    async def mx(self, name: str) -> list[tuple[int, str]]:
        return sorted((await self.query(name, "MX")).values)

    async def addresses(self, name: str) -> list[str]:
        """A and AAAA addresses of `name`, looked up together."""
        a, aaaa = await asyncio.gather(self.query(name, "A"), self.query(name, "AAAA"))
        return [*a.values, *aaaa.values]

    async def ptr(self, ip: str) -> list[str]:
        try:
            rev = dns.reversename.from_address(ip).to_text()
        except (dns.exception.DNSException, ValueError) as exc:
            raise ValueError(f"{ip!r} is not an IP address") from exc
        return list((await self.query(rev, "PTR")).values)


@lru_cache(maxsize=16384)
def _qname(name: str) -> dns.name.Name | None:
    try:
        return dns.name.from_text(name or ".")
    except (dns.exception.DNSException, ValueError):
        return None


@lru_cache(maxsize=64)
def _rdtype(text: str) -> dns.rdatatype.RdataType:
    return dns.rdatatype.RdataType.make(text)


def _records(name: str, rdtype: str, answer: dns.resolver.Answer) -> Records:
    if answer.rrset is None:
        return Records(name, rdtype)
    values = tuple(_value(rdtype, rd) for rd in answer.rrset)
    return Records(name, rdtype, values, ttl=int(answer.rrset.ttl))


def _servfail_reason(exc: dns.resolver.NoNameservers) -> str:
    errors: Iterable[Any] = exc.kwargs.get("errors", []) if hasattr(exc, "kwargs") else []
    parts = []
    for err in errors:
        # (nameserver, tcp, port, error or answer) tuples in dnspython 2.x
        try:
            where, what = err[0], err[-1]
        except (TypeError, IndexError):
            continue
        if hasattr(what, "rcode"):  # a reply with an error code: say which
            what = dns.rcode.to_text(what.rcode())
        parts.append(f"{where} answered {what}")
    return "all nameservers failed" + (f" ({'; '.join(str(p) for p in parts[:3])})" if parts else "")
