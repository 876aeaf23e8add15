"""Rate-limit buckets shared through PostgreSQL: two nodes draw from one bucket, it refills
with the window, and a node whose database is away falls back to its own buckets."""

from __future__ import annotations

import asyncio

from proxy.smtp.ratelimit import Limit
from proxy.smtp.ratelimit_pg import SharedRateLimiter
from proxy.store import open_store
from proxy.store.pg import PgStore
from tests.support.pgdb import cut_off, restore
from tests.store.test_sqlite import NORMALIZE

PER_SENDER = Limit("per-sender", "sender_domain", messages=3, window=6.0)
PER_DOMAIN = Limit("gmail", "recipient_domain", recipients=2, window=3600.0, domains=frozenset({"gmail.com"}))
KEYS = {"sender_domain": "shop.example.com", "client_ip": "192.0.2.1"}


async def test_two_nodes_share_one_bucket_and_it_refills(pg_url: str) -> None:
    stores = [open_store(pg_url, NORMALIZE) for _ in range(2)]
    for s in stores:
        await s.open()
    try:
        a, b = (SharedRateLimiter([PER_SENDER, PER_DOMAIN], s.pool) for s in stores if isinstance(s, PgStore))
        # Drawn concurrently from both nodes: exactly the capacity gets through.
        results = await asyncio.gather(*(node.check_message("marketing", KEYS) for node in (a, b, a, b, a, b)))
        assert sum(r is None for r in results) == 3 and {r.name for r in results if r} == {"per-sender"}
        # Another sender domain has its own bucket; another class too.
        assert await a.check_message("marketing", {"sender_domain": "other.example.com"}) is None
        assert await b.check_message("transactional", KEYS) is None
        # Recipient-domain limits: only the named domain counts, across nodes.
        assert await a.check_recipient("marketing", KEYS, "gmail.com", True) is None
        assert await b.check_recipient("marketing", KEYS, "gmail.com", False) is None
        refused = await a.check_recipient("marketing", KEYS, "gmail.com", False)
        assert refused is not None and refused.name == "gmail"
        assert await b.check_recipient("marketing", KEYS, "example.org", False) is None
        # 3 per 6 s refills one message in 2 s (with the database's clock, whichever node draws).
        await asyncio.sleep(2.2)
        assert await b.check_message("marketing", KEYS) is None
        assert await a.check_message("marketing", KEYS) is not None
        # Buckets idle past the longest window are full again: forgetting them is exact.
        short = SharedRateLimiter([Limit("short", "client_ip", messages=1, window=0.1)], a.pool)
        assert await short.check_message("marketing", KEYS) is None
        await asyncio.sleep(0.3)
        assert await short.prune() >= 1
    finally:
        for s in stores:
            await s.close()


async def test_without_the_database_a_node_limits_on_its_own(pg_url: str) -> None:
    store = open_store(pg_url, NORMALIZE)
    await store.open()
    assert isinstance(store, PgStore)
    node = SharedRateLimiter([Limit("per-sender", "sender_domain", messages=2, window=3600.0)], store.pool)
    name = pg_url.rsplit("/", 1)[1]
    try:
        cut_off(name)
        try:
            assert await node.check_message("marketing", KEYS) is None
            assert await node.check_message("marketing", KEYS) is None
            assert (await node.check_message("marketing", KEYS)).name == "per-sender"  # local buckets still limit
        finally:
            restore(name)
    finally:
        await store.close()
