"""Probe recorded privacy-policy URLs: does each still answer, as the AUP demands for 30 days
after the send date?

A URL is alive when it ends, after following redirects, in a 2xx. It is probed with HEAD first
(cheap), then with GET when HEAD does not end in a 2xx: many servers refuse HEAD (405, 501) or
answer it wrongly, and a false "dead" costs an operator's time. It is dead on a non-2xx final
status, a connection error, a timeout, or too many redirects. Probes run concurrently, bounded
by `concurrency`, each bounded by `timeout`; the response body is never read.

The store of recorded URLs selects what to probe; `due` helps it pick the records whose window
is still open. The result keeps the record, so a report can name its senders and messages.

The prober must not become a way into the network it runs in (a sender's "privacy link" to
http://10.0.0.5/admin or to a name that resolves to 127.0.0.1): every host is resolved through
sendwarden's own resolver inside aiohttp's connector, and only global addresses are connected
to; literal addresses are checked before the request; redirects are followed one at a time,
each hop checked the same way. Loopback, private, link-local, shared, reserved, multicast and
documentation addresses are refused unless `allow_networks` lists them (the tests' own servers
run on loopback and say so). aiohttp does the HTTP; only the address policy is ours.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import time
from dataclasses import dataclass, field
from typing import Any, Iterable, Protocol, Sequence, TypeVar

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from yarl import URL

from proxy import __version__
from proxy.dns import DnsFailure, Resolver
from proxy.message.urls import ip_host

WINDOW_DAYS = 30


class Probed(Protocol):
    """What the prober needs of a record: its URL (the rest travels along untouched)."""

    @property
    def url(self) -> str: ...


@dataclass(frozen=True)
class LinkRecord:
    """One recorded privacy URL and where it was used."""

    url: str
    senders: tuple[str, ...] = ()
    message_ids: tuple[str, ...] = ()
    first_sent: float = 0.0
    last_sent: float = 0.0


R = TypeVar("R", bound=Probed)


@dataclass(frozen=True)
class ProbeResult:
    record: Probed
    alive: bool
    status: int | None  # the final HTTP status, None when no response came
    final_url: str
    method: str  # the method of the deciding probe: HEAD or GET
    error: str = ""  # why it is dead, for people
    elapsed: float = 0.0
    redirects: tuple[str, ...] = field(default=())

    @property
    def url(self) -> str:
        return self.record.url

    @property
    def checked(self) -> bool:
        """False when our own DNS failed: the link is neither dead nor alive, and keeps its mark."""
        return not self.error.startswith("not checked:")


IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
REDIRECTS = frozenset({301, 302, 303, 307, 308})


class Forbidden(OSError):
    """A host that resolves only to addresses the prober may not connect to."""


class Unchecked(OSError):
    """Our own DNS could not answer: nothing is known about the link (neither dead nor alive)."""


@dataclass(frozen=True)
class AddressGuard:
    """Which addresses the prober may connect to: global ones, and those in `allowed`."""

    allowed: tuple[IPNetwork, ...] = ()

    @classmethod
    def of(cls, networks: Iterable[str]) -> "AddressGuard":
        return cls(tuple(ipaddress.ip_network(n, strict=False) for n in networks))

    def problem(self, address: str) -> str:
        """Why `address` may not be probed, or ""."""
        try:
            ip = ipaddress.ip_address(address.split("%", 1)[0])
        except ValueError:
            return f"{address!r} is not an IP address"
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        if any(ip in net for net in self.allowed):
            return ""
        if ip.is_global and not ip.is_multicast:
            return ""
        return f"{ip} is not a global address (loopback, private, link-local or reserved)"


class GuardedResolver(AbstractResolver):
    """aiohttp's resolver: names through sendwarden's resolver, non-global addresses dropped, so
    that the address checked is the address connected to (no second lookup to race)."""

    def __init__(self, resolver: Resolver, guard: AddressGuard) -> None:
        self.resolver = resolver
        self.guard = guard

    async def resolve(self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        try:
            found = await self.resolver.addresses(host)
        except DnsFailure as exc:
            raise Unchecked(f"not checked: DNS lookup failed: {exc}") from None
        if not found:
            raise OSError(f"{host} has no A or AAAA records")
        allowed = [a for a in found if not self.guard.problem(a)]
        if not allowed:
            raise Forbidden(f"refused: {host} resolves to {', '.join(found[:3])}: {self.guard.problem(found[0])}")
        return [ResolveResult(hostname=host, host=a, port=port, family=socket.AF_INET6 if ":" in a else socket.AF_INET,
                              proto=0, flags=socket.AI_NUMERICHOST) for a in allowed]

    async def close(self) -> None:
        return None


def _literal_problem(url: URL, guard: AddressGuard) -> str:
    """A URL whose host is an address literal is checked here (aiohttp resolves no literal),
    in every form a browser reads as one (0x7f000001, 2130706433, 127.1)."""
    host = (url.raw_host or "").strip("[]")
    address = ip_host(host)
    if address is None:
        return ""
    why = guard.problem(address)
    return f"refused: {why}" if why else ""


def due(records: Iterable[LinkRecord], now: float | None = None, days: int = WINDOW_DAYS) -> list[LinkRecord]:
    """The records whose 30-day window (from their last send) is still open."""
    now = time.time() if now is None else now
    return [r for r in records if r.last_sent + days * 86400 >= now]


async def probe_links(records: Sequence[R], *, concurrency: int = 8, timeout: float = 10.0, max_redirects: int = 5,
                      user_agent: str = f"sendwarden-linkcheck/{__version__}", resolver: Resolver | None = None,
                      allow_networks: Iterable[str] = ()) -> list[ProbeResult]:
    """Probe every record's URL; results in the order of `records`. Only global addresses are
    connected to, plus those in `allow_networks`; names resolve through `resolver` (default:
    one on the system's nameservers)."""
    guard = AddressGuard.of(allow_networks)
    limit = asyncio.Semaphore(max(1, concurrency))
    connector = aiohttp.TCPConnector(limit=max(1, concurrency), force_close=True,
                                     resolver=GuardedResolver(resolver or Resolver(timeout=min(timeout, 5.0)), guard))
    client_timeout = aiohttp.ClientTimeout(total=timeout)
    async with aiohttp.ClientSession(connector=connector, timeout=client_timeout,
                                     headers={"User-Agent": user_agent}) as session:

        async def one(record: R) -> ProbeResult:
            async with limit:
                return await _probe(session, record, max_redirects, guard)

        return list(await asyncio.gather(*(one(r) for r in records)))


async def _probe(session: aiohttp.ClientSession, record: Probed, max_redirects: int, guard: AddressGuard) -> ProbeResult:
    url = record.url.strip()
    started = time.monotonic()
    if not (url.lower().startswith("http://") or url.lower().startswith("https://")):
        return ProbeResult(record, False, None, url, "", "not an http(s) URL")
    head = await _request(session, "HEAD", url, max_redirects, guard)
    if head[0] is not None and 200 <= head[0] < 300:
        return _result(record, True, head, "HEAD", started)
    if head[0] is None and (head[3] in ("timeout", "too many redirects") or head[3].startswith(("refused:", "not checked:"))):
        return _result(record, False, head, "HEAD", started)
    get = await _request(session, "GET", url, max_redirects, guard)
    alive = get[0] is not None and 200 <= get[0] < 300
    return _result(record, alive, get, "GET", started)


_Answer = tuple[int | None, str, tuple[str, ...], str]  # status, final URL, redirect chain, error


async def _request(session: aiohttp.ClientSession, method: str, url: str, max_redirects: int, guard: AddressGuard) -> _Answer:
    """One probe, following redirects one hop at a time: each hop's address is checked."""
    chain: list[str] = []
    current = url
    try:
        target = URL(url)
        for _ in range(max_redirects + 1):
            if target.scheme not in ("http", "https"):
                return None, str(target), tuple(chain), "redirected to a non-http(s) URL"
            problem = _literal_problem(target, guard)
            if problem:
                return None, str(target), tuple(chain), problem
            current = str(target)
            async with session.request(method, target, allow_redirects=False) as resp:
                location = resp.headers.get("Location")
                if resp.status in REDIRECTS and location:
                    chain.append(str(resp.url))
                    target = resp.url.join(URL(location))
                    continue
                error = "" if 200 <= resp.status < 300 else f"HTTP {resp.status} {resp.reason or ''}".strip()
                return resp.status, str(resp.url), tuple(chain), error
        return None, chain[-1] if chain else url, tuple(chain), "too many redirects"
    except asyncio.TimeoutError:
        return None, current, tuple(chain), "timeout"
    except aiohttp.ClientConnectorError as exc:
        cause: Any = exc.os_error
        if isinstance(cause, (Forbidden, Unchecked)):
            return None, current, tuple(chain), str(cause)
        return None, current, tuple(chain), str(exc) or type(exc).__name__
    except aiohttp.ClientError as exc:
        return None, current, tuple(chain), str(exc) or type(exc).__name__
    except ValueError as exc:  # an URL aiohttp/yarl cannot even parse
        return None, current, tuple(chain), f"bad URL: {exc}"


def _result(record: Probed, alive: bool, answer: _Answer, method: str, started: float) -> ProbeResult:
    status, final, chain, error = answer
    return ProbeResult(record, alive, status, final, method, "" if alive else error,
                       round(time.monotonic() - started, 3), chain)


__all__ = ["AddressGuard", "Forbidden", "Unchecked", "LinkRecord", "ProbeResult", "Probed", "WINDOW_DAYS", "due", "probe_links"]
