"""What only the PostgreSQL store has to get right: several nodes migrating and writing one
database at once, the database itself keeping consent append-only, and outages answered with
StoreError (then recovered from) rather than driver exceptions. The behaviour it shares with
SQLite is tested once for both, in tests/store/test_sqlite.py."""

from __future__ import annotations

import asyncio
import time

import asyncpg
import pytest

from proxy.store import GLOBAL, ConsentRecord, Query, StoreError, Suppression, open_store
from proxy.store.pg import PgStore
from proxy.store.pg_schema import STORE
from proxy.store.pgconn import PgPool
from tests.support.pgdb import cut_off, restore
from tests.store.test_sqlite import NORMALIZE

WEEK = 7 * 86400.0


def db_name(url: str) -> str:
    return url.rsplit("/", 1)[1]


async def test_nodes_starting_at_once_migrate_once(pg_url: str) -> None:
    nodes = [open_store(pg_url, NORMALIZE) for _ in range(6)]
    await asyncio.gather(*(n.open() for n in nodes))
    try:
        db = await asyncpg.connect(pg_url)
        try:
            assert await db.fetch("SELECT component, version FROM sendwarden_schema") == [("store", len(STORE))]
            await nodes[0].add_consent([ConsentRecord("a@example.org", "shop", 1.0, "form")], now=2.0)
            with pytest.raises(asyncpg.RaiseError, match="never overwritten"):
                await db.execute("UPDATE consent SET proof = 'forged'")
            with pytest.raises(asyncpg.RaiseError, match="never deleted"):
                await db.execute("DELETE FROM consent")
            with pytest.raises(asyncpg.RaiseError, match="never deleted"):
                await db.execute("TRUNCATE consent")
            await db.execute("UPDATE sendwarden_schema SET version = version + 1")
        finally:
            await db.close()
    finally:
        await asyncio.gather(*(n.close() for n in nodes))
    with pytest.raises(StoreError, match="newer"):
        await open_store(pg_url, NORMALIZE).open()


async def test_concurrent_writers_on_two_nodes(pg_url: str) -> None:
    a, b = open_store(pg_url, NORMALIZE), open_store(pg_url, NORMALIZE)
    await a.open()
    await b.open()
    try:
        # Sends counted from both nodes at once: none lost.
        await asyncio.gather(*(node.record_sends(["Reader@example.org"], "shop", "marketing", 1000.0 + i)
                               for i in range(50) for node in (a, b)))
        state = await b.lookup("reader@example.org", Query(windows=((GLOBAL, WEEK),)), 2000.0)
        assert state.sends == {(GLOBAL, WEEK): 100}
        # Consent for one address and scope from both nodes at once: one current record, the
        # newest; every other record kept as superseded history.
        records = [ConsentRecord("reader@example.org", "shop", 10.0 + i, f"form-{i}") for i in range(20)]
        added = await asyncio.gather(*(node.add_consent([r], now=100.0) for r, node in zip(records, [a, b] * 10, strict=True)))
        assert sum(added) == 20
        history = await a.consent_history("reader@example.org")
        assert len(history) == 20
        assert [c.source for c in history if c.superseded_by is None] == ["form-19"]
        # An unsubscribe through one node is seen by the other at once.
        assert await a.suppress([Suppression("reader@example.org", GLOBAL, "unsubscribe", "one-click", 5.0)]) == 1
        assert [s.reason for s in (await b.lookup("READER@example.org", Query(), 6.0)).suppressions] == ["unsubscribe"]
    finally:
        await a.close()
        await b.close()


async def test_unreachable_database_is_a_store_error_then_recovers(pg_url: str) -> None:
    store = open_store(pg_url, NORMALIZE)
    assert isinstance(store, PgStore)
    await store.open()
    try:
        await store.suppress([Suppression("a@example.org", GLOBAL, "manual", "cli", 1.0)])
        cut_off(db_name(pg_url))
        try:
            for _ in range(3):
                with pytest.raises(StoreError) as caught:
                    await store.lookup("a@example.org", Query(), time.time())
                assert "postgres" in str(caught.value)
            assert store.pool.failures >= 1
        finally:
            restore(db_name(pg_url))
        # Back within the (capped, 2 s) backoff: no restart, no error left behind.
        deadline = time.monotonic() + 5
        while True:
            try:
                state = await store.lookup("a@example.org", Query(), time.time())
                break
            except StoreError:
                assert time.monotonic() < deadline, "the store did not reconnect"
                await asyncio.sleep(0.1)
        assert [s.source for s in state.suppressions] == ["cli"]
    finally:
        await store.close()


async def test_bad_or_unreachable_urls_are_store_errors() -> None:
    for url in ("postgresql://postgres@127.0.0.1:1/nothing", "postgresql://postgres@127.0.0.1:5432/sendwarden_no_such_db",
                "postgresql://postgres@127.0.0.1:notaport/x"):
        with pytest.raises(StoreError):
            await open_store(url, NORMALIZE).open()
    assert "***" in repr(open_store("postgresql://sw:secret@db.example:5432/sw", NORMALIZE))
    assert "secret" not in repr(open_store("postgresql://sw:secret@db.example:5432/sw", NORMALIZE))


async def test_complaint_counts_from_two_nodes_add_up(pg_url: str) -> None:
    nodes = [open_store(pg_url, NORMALIZE) for _ in range(2)]
    await asyncio.gather(*(n.open() for n in nodes))
    try:
        now = time.time()
        await asyncio.gather(*(nodes[i % 2].count_delivered("Shop.Example.com", "shop", 3, now) for i in range(40)),
                             *(nodes[i % 2].record_complaint("shop.example.com", now) for i in range(10)))
        [row] = await nodes[0].sender_counts(now - WEEK)
        assert (row.sender_domain, row.delivered, row.complaints) == ("shop.example.com", 120, 10)
        # A complaint counts against the brand the domain delivered most for.
        await nodes[1].count_delivered("shop.example.com", "outlet", 500, now - 3600)
        assert await nodes[0].record_complaint("shop.example.com", now) == "outlet"
        assert await nodes[0].record_complaint("nobody.example", now) == ""
        # Hours past the 30 days kept are pruned.
        await nodes[0].count_delivered("shop.example.com", "shop", 5, now - 40 * 86400)
        await nodes[0].prune(now, 400 * 86400)
        assert sum(c.delivered for c in await nodes[1].sender_counts(0)) == 620
    finally:
        await asyncio.gather(*(n.close() for n in nodes))


async def test_a_row_type_altered_by_another_node_is_a_store_error(pg_url: str) -> None:
    """asyncpg's own errors (InternalClientError) come out as StoreError, answered 451 4.3.0
    like any store failure, and start no backoff. Provoked for real: a composite type that
    another connection alters after this pool's connection cached its codec (the driver's
    OutdatedSchemaCacheError, as a fleet node's migration would cause)."""
    pool = PgPool(pg_url, max_size=1)
    await pool.open()
    other = await asyncpg.connect(pg_url)
    try:
        await other.execute("CREATE TYPE pair AS (a integer, b integer);"
                            "CREATE TABLE drift (p pair); INSERT INTO drift VALUES (ROW(1, 2))")

        async def read() -> list[object]:
            async with pool.connection() as db:
                return [tuple(r["p"]) for r in await db.fetch("SELECT p FROM drift")]

        assert await read() == [(1, 2)]
        await other.execute("ALTER TYPE pair ADD ATTRIBUTE c integer")
        with pytest.raises(StoreError, match="OutdatedSchemaCacheError"):
            await read()
        assert pool.failures == 0
        assert await read() == [(1, 2, None)]  # the driver reloaded its types: the next call works
    finally:
        await other.close()
        await pool.close()
