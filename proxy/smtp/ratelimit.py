"""Token-bucket rate limits, in process (one worker; the workers of one host share theirs in
proxy/smtp/ratelimit_host.py, a fleet in PostgreSQL, proxy/smtp/ratelimit_pg.py).

A limit names what it counts per (`client_ip`, `auth_user`, `sender_domain`,
`recipient_domain`), how many messages and/or recipients per window, and which traffic classes
it applies to. Traffic classes keep bounces and receipts from being starved by bulk mail: every
transaction is `bounce` (null sender), or its stream's name. A bucket is kept per limit, per
class and per key, so `gmail.com` recipients on the marketing stream never eat the budget of
transactional mail to gmail.com.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Iterable

MAX_BUCKETS = 100_000  # per limit; idle full buckets are dropped first


@dataclass(frozen=True, slots=True)
class Limit:
    name: str
    per: str  # client_ip | auth_user | sender_domain | recipient_domain
    messages: int = 0  # per window; 0: not counted
    recipients: int = 0
    window: float = 60.0
    classes: frozenset[str] = frozenset()  # empty: every class
    domains: frozenset[str] = frozenset()  # recipient_domain only: just these domains

    def applies(self, traffic_class: str) -> bool:
        return not self.classes or traffic_class in self.classes


# A "take" is one bucket a message or recipient draws from: (limit, kind, capacity, class, key).
Take = tuple[Limit, str, int, str, str]


class Bucket:
    __slots__ = ("tokens", "stamp")

    def __init__(self, capacity: float, now: float) -> None:
        self.tokens = capacity
        self.stamp = now


class RateLimiter:
    def __init__(self, limits: Iterable[Limit], clock: Callable[[], float] = time.monotonic) -> None:
        self.limits = tuple(limits)
        self.clock = clock
        self._buckets: dict[tuple[str, str, str, str], Bucket] = {}

    def _take(self, limit: Limit, kind: str, capacity: int, traffic_class: str, key: str, n: int = 1) -> bool:
        now = self.clock()
        bkey = (limit.name, kind, traffic_class, key)
        bucket = self._buckets.get(bkey)
        if bucket is None:
            if len(self._buckets) >= MAX_BUCKETS * max(1, len(self.limits)):
                self._evict(now)
            bucket = self._buckets[bkey] = Bucket(capacity, now)
        else:
            bucket.tokens = min(capacity, bucket.tokens + (now - bucket.stamp) * capacity / limit.window)
            bucket.stamp = now
        if bucket.tokens >= n:
            bucket.tokens -= n
            return True
        return False

    def _evict(self, now: float) -> None:
        # Drop buckets idle long enough to be full again: forgetting them is exact.
        longest = max((x.window for x in self.limits), default=60)
        for k in [k for k, b in self._buckets.items() if now - b.stamp > longest]:
            del self._buckets[k]

    def message_takes(self, traffic_class: str, keys: dict[str, str]) -> list[Take]:
        return [(limit, "msg", limit.messages, traffic_class, keys[limit.per]) for limit in self.limits
                if limit.messages and limit.per != "recipient_domain" and limit.applies(traffic_class) and keys.get(limit.per)]

    def recipient_takes(self, traffic_class: str, keys: dict[str, str], domain: str,
                        new_domain: bool) -> list[Take]:
        takes = []
        for limit in self.limits:
            if not limit.applies(traffic_class):
                continue
            if limit.per == "recipient_domain":
                if limit.domains and domain not in limit.domains:
                    continue
                if limit.recipients:
                    takes.append((limit, "rcpt", limit.recipients, traffic_class, domain))
                if new_domain and limit.messages:
                    takes.append((limit, "msg", limit.messages, traffic_class, domain))
            elif limit.recipients and keys.get(limit.per):
                takes.append((limit, "rcpt", limit.recipients, traffic_class, keys[limit.per]))
        return takes

    def _first_refused(self, takes: list[Take]) -> Limit | None:
        """Draw from each bucket in order; stop at (and return the limit of) the first empty one."""
        for limit, kind, capacity, traffic_class, key in takes:
            if not self._take(limit, kind, capacity, traffic_class, key):
                return limit
        return None

    def message(self, traffic_class: str, keys: dict[str, str]) -> Limit | None:
        """Count one message (at MAIL FROM); return the limit it breaks, if any."""
        return self._first_refused(self.message_takes(traffic_class, keys))

    def recipient(self, traffic_class: str, keys: dict[str, str], domain: str, new_domain: bool) -> Limit | None:
        """Count one recipient (at RCPT TO); `new_domain` when this transaction has not yet
        named a recipient in `domain` (a message to that domain is counted then)."""
        return self._first_refused(self.recipient_takes(traffic_class, keys, domain, new_domain))

    # The relay calls these; the fleet variant (proxy/smtp/ratelimit_pg.py) asks the database.

    async def check_message(self, traffic_class: str, keys: dict[str, str]) -> Limit | None:
        return self.message(traffic_class, keys)

    async def check_recipient(self, traffic_class: str, keys: dict[str, str], domain: str, new_domain: bool) -> Limit | None:
        return self.recipient(traffic_class, keys, domain, new_domain)
