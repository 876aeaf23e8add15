"""Probe recorded privacy-policy URLs: does each still answer, as the AUP demands for 30 days
after the send date?

A URL is alive when it ends, after following redirects, in a 2xx. It is probed with HEAD first
(cheap), then with GET when HEAD does not end in a 2xx: many servers refuse HEAD (405, 501) or
answer it wrongly, and a false "dead" costs an operator's time. It is dead on a non-2xx final
status, a connection error, a timeout, or too many redirects. Probes run concurrently, bounded
by `concurrency`, each bounded by `timeout`; the response body is never read.

The store of recorded URLs selects what to probe; `due` helps it pick the records whose window
is still open. The result keeps the record, so a report can name its senders and messages.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Iterable, Protocol, Sequence, TypeVar

import aiohttp

from proxy import __version__

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


def due(records: Iterable[LinkRecord], now: float | None = None, days: int = WINDOW_DAYS) -> list[LinkRecord]:
    """The records whose 30-day window (from their last send) is still open."""
    now = time.time() if now is None else now
    return [r for r in records if r.last_sent + days * 86400 >= now]


async def probe_links(records: Sequence[R], *, concurrency: int = 8, timeout: float = 10.0, max_redirects: int = 5,
                      user_agent: str = f"sendwarden-linkcheck/{__version__}") -> list[ProbeResult]:
    """Probe every record's URL; results in the order of `records`."""
    limit = asyncio.Semaphore(max(1, concurrency))
    connector = aiohttp.TCPConnector(limit=max(1, concurrency), force_close=True)
    client_timeout = aiohttp.ClientTimeout(total=timeout)
    async with aiohttp.ClientSession(connector=connector, timeout=client_timeout,
                                     headers={"User-Agent": user_agent}) as session:

        async def one(record: R) -> ProbeResult:
            async with limit:
                return await _probe(session, record, max_redirects)

        return list(await asyncio.gather(*(one(r) for r in records)))


async def _probe(session: aiohttp.ClientSession, record: Probed, max_redirects: int) -> ProbeResult:
    url = record.url.strip()
    started = time.monotonic()
    if not (url.lower().startswith("http://") or url.lower().startswith("https://")):
        return ProbeResult(record, False, None, url, "", "not an http(s) URL")
    head = await _request(session, "HEAD", url, max_redirects)
    if head[0] is not None and 200 <= head[0] < 300:
        return _result(record, True, head, "HEAD", started)
    if head[0] is None and head[3] in ("timeout", "too many redirects"):
        return _result(record, False, head, "HEAD", started)
    get = await _request(session, "GET", url, max_redirects)
    alive = get[0] is not None and 200 <= get[0] < 300
    return _result(record, alive, get, "GET", started)


_Answer = tuple[int | None, str, tuple[str, ...], str]  # status, final URL, redirect chain, error


async def _request(session: aiohttp.ClientSession, method: str, url: str, max_redirects: int) -> _Answer:
    try:
        async with session.request(method, url, allow_redirects=True, max_redirects=max_redirects) as resp:
            chain = tuple(str(h.url) for h in resp.history)
            error = "" if 200 <= resp.status < 300 else f"HTTP {resp.status} {resp.reason or ''}".strip()
            return resp.status, str(resp.url), chain, error
    except aiohttp.TooManyRedirects as exc:
        chain = tuple(str(h.url) for h in exc.history)
        return None, chain[-1] if chain else url, chain, "too many redirects"
    except asyncio.TimeoutError:
        return None, url, (), "timeout"
    except aiohttp.ClientError as exc:
        return None, url, (), str(exc) or type(exc).__name__
    except ValueError as exc:  # an URL aiohttp/yarl cannot even parse
        return None, url, (), f"bad URL: {exc}"


def _result(record: Probed, alive: bool, answer: _Answer, method: str, started: float) -> ProbeResult:
    status, final, chain, error = answer
    return ProbeResult(record, alive, status, final, method, "" if alive else error,
                       round(time.monotonic() - started, 3), chain)


__all__ = ["LinkRecord", "ProbeResult", "Probed", "WINDOW_DAYS", "due", "probe_links"]
