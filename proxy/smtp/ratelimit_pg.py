"""Rate-limit buckets shared by a fleet: the same token buckets as proxy/smtp/ratelimit.py, kept in
PostgreSQL so that a client spreading its connections over N relays gets its limit once, not N
times.

Each draw is one atomic upsert: the bucket is refilled for the time since its last draw and
drawn from in the same statement, under the row lock, with the database server's clock, so
nodes whose clocks differ still agree. When the database does not answer, a node falls back to
its own in-process buckets (logged) rather than refusing all mail: the limits then hold per
node until it is back.
"""

from __future__ import annotations

import time
from typing import Iterable

import structlog

from proxy.smtp.ratelimit import Limit, RateLimiter, Take
from proxy.store.base import StoreError
from proxy.store.pgconn import PgPool

log = structlog.get_logger("sendwarden.ratelimit")

# $1 bucket key, $2 capacity, $3 tokens wanted, $4 window (seconds). A row comes back only when
# the draw succeeded; a refused draw changes nothing (the refill is recomputed next time).
_DRAW = """
INSERT INTO rate_bucket AS b (key, tokens, stamp)
VALUES ($1, $2::float8 - $3, extract(epoch FROM clock_timestamp()))
ON CONFLICT (key) DO UPDATE SET
    tokens = least($2::float8, b.tokens + (extract(epoch FROM clock_timestamp()) - b.stamp) * $2 / $4) - $3,
    stamp = extract(epoch FROM clock_timestamp())
WHERE least($2::float8, b.tokens + (extract(epoch FROM clock_timestamp()) - b.stamp) * $2 / $4) >= $3
RETURNING tokens
"""


class SharedRateLimiter(RateLimiter):
    def __init__(self, limits: Iterable[Limit], pool: PgPool) -> None:
        super().__init__(limits)
        self.pool = pool
        self._warned = 0.0

    async def _shared(self, takes: list[Take]) -> Limit | None:
        if not takes:
            return None
        try:
            async with self.pool.connection() as db:
                for limit, kind, capacity, traffic_class, key in takes:
                    bucket = "\x1f".join((limit.name, kind, traffic_class, key))
                    if await db.fetchval(_DRAW, bucket, capacity, 1, limit.window) is None:
                        return limit
            return None
        except StoreError as exc:
            if time.monotonic() - self._warned > 60:
                self._warned = time.monotonic()
                log.warning("rate_limits_local", reason=str(exc))
            return self._first_refused(takes)

    async def check_message(self, traffic_class: str, keys: dict[str, str]) -> Limit | None:
        return await self._shared(self.message_takes(traffic_class, keys))

    async def check_recipient(self, traffic_class: str, keys: dict[str, str], domain: str, new_domain: bool) -> Limit | None:
        return await self._shared(self.recipient_takes(traffic_class, keys, domain, new_domain))

    async def prune(self) -> int:
        """Forget buckets idle for longer than the longest window: they are full again."""
        longest = max((x.window for x in self.limits), default=60.0)
        async with self.pool.connection() as db:
            status = await db.execute("DELETE FROM rate_bucket WHERE stamp < extract(epoch FROM clock_timestamp()) - $1", longest)
        return int(status.rsplit(" ", 1)[-1])
