"""The shared store: PostgreSQL, for a fleet of relays behind one load balancer.

Same semantics as the SQLite store (proxy/store/sqlite.py), kept by the database itself where
it matters across nodes: consent is append-only (a trigger), a new consent record and the
superseding of the current one happen under a transaction-scoped advisory lock on the address
and scope, and sends are counted by INSERT (one row per recipient), so two nodes never lose each
other's counts. Every failure comes out as StoreError (proxy/store/pgconn.py).
"""

from __future__ import annotations

from typing import AsyncIterator, Sequence

from proxy.store.address import AddressNormalizer
from proxy.store.base import (
    HOUR, SENDER_COUNTS_KEPT, ConsentRecord, DeadLink, FrequencyOverride, PrivacyLink, Query, RecipientState,
    RecipientStore, Scope, SenderCount, Suppression, CONSENT_COLS, SUPPRESSION_COLS, consent_row, count_sends,
    suppression_row,
)
from proxy.store.pg_schema import STORE, migrate
from proxy.store.pgconn import PgPool

# The per-RCPT question in one statement: $1 address, $2 suppressions wanted, $3 consent wanted,
# $4 overrides wanted, $5 now, $6 the longest policy window (0: none). Sends are fetched back to
# the longest window, the recipient's own overrides included.
_LOOKUP = """
SELECT
  (SELECT array_agg(row(scope_kind, scope_value, reason, source, created)) FROM suppression
    WHERE address = $1 AND $2) AS sups,
  (SELECT array_agg(row(id, address, scope, status, consented_at, source, proof, recorded_at, superseded_by)) FROM consent
    WHERE address = $1 AND superseded_by IS NULL AND $3) AS consent,
  (SELECT array_agg(row(scope_kind, scope_value, max_count, "window", source, set_at)) FROM frequency_override
    WHERE address = $1 AND $4) AS overrides,
  (SELECT array_agg(row(at, brand, stream)) FROM sends
    WHERE address = $1 AND ($6 > 0 OR $4)
      AND at > $5 - greatest($6::float8, coalesce((SELECT max("window") FROM frequency_override
                                                   WHERE address = $1 AND $4), 0))) AS sends
"""
_TABLES = ("suppression", "consent", "sends", "frequency_override", "privacy_link")


def _count(status: str) -> int:
    """Rows affected, from a command tag such as 'INSERT 0 3' or 'DELETE 2'."""
    return int(status.rsplit(" ", 1)[-1])


class PgStore(RecipientStore):
    def __init__(self, url: str, normalize: AddressNormalizer, pool: PgPool | None = None) -> None:
        super().__init__(normalize)
        self.pool = pool or PgPool(url)

    def __repr__(self) -> str:
        return repr(self.pool)

    async def open(self) -> None:
        await self.pool.open()
        try:
            async with self.pool.connection() as db:
                await migrate(db, "store", STORE)
        except BaseException:
            await self.pool.close()
            raise

    async def close(self) -> None:
        await self.pool.close()

    # -- the relay's questions --------------------------------------------------------------------

    async def lookup(self, address: str, query: Query, now: float) -> RecipientState:
        """One round trip: the parts the query does not ask for are switched off by parameter."""
        key = self.normalize(address)
        longest = max((w for _, w in query.windows), default=0.0)
        async with self.pool.connection() as db:
            row = await db.fetchrow(_LOOKUP, key, bool(query.scopes), query.consent_scope is not None,
                                    query.overrides, now, longest)
        wanted = set(query.scopes)
        sups = tuple(s for s in (suppression_row((key, *r)) for r in row["sups"] or ()) if s.scope in wanted)
        consent: ConsentRecord | None = None
        scopes: tuple[str, ...] = ()
        if query.consent_scope is not None:
            current = [consent_row(r) for r in row["consent"] or ()]
            consent = next((c for c in current if c.scope == query.consent_scope), None)
            scopes = tuple(sorted(c.scope for c in current if c.status == "granted"))
        overrides = tuple(FrequencyOverride(key, Scope(r[0], r[1]), r[2], r[3], r[4], r[5]) for r in row["overrides"] or ())
        windows = list(query.windows) + [(o.scope, o.window) for o in overrides]
        sends = count_sends(row["sends"] or (), windows, now) if windows else {}
        return RecipientState(key, sups, consent, scopes, overrides, sends)

    async def suppressions_for(self, addresses: Sequence[str], scopes: Sequence[Scope]) -> dict[str, list[Suppression]]:
        keys = {a: self.normalize(a) for a in addresses}
        wanted = set(scopes)
        async with self.pool.connection() as db:
            rows = await db.fetch(f"SELECT {SUPPRESSION_COLS} FROM suppression WHERE address = any($1::text[])",
                                  list(set(keys.values())))
        by_key: dict[str, list[Suppression]] = {}
        for s in map(suppression_row, rows):
            if s.scope in wanted:
                by_key.setdefault(s.address, []).append(s)
        return {given: by_key[key] for given, key in keys.items() if key in by_key}

    async def record_sends(self, addresses: Sequence[str], brand: str, stream: str, at: float) -> None:
        keys = [self.normalize(a) for a in addresses]
        if not keys:
            return
        async with self.pool.connection() as db:
            await db.execute("INSERT INTO sends (address, at, brand, stream) SELECT a, $2, $3, $4 FROM unnest($1::text[]) AS a",
                             keys, at, brand, stream)

    async def record_privacy_links(self, sender_domain: str, urls: Sequence[str], at: float) -> None:
        unique = list(dict.fromkeys(urls))
        if not unique:
            return
        async with self.pool.connection() as db:
            await db.execute(
                "INSERT INTO privacy_link (sender_domain, url, first_sent, last_sent, messages)"
                " SELECT $1, u, $3, $3, 1 FROM unnest($2::text[]) AS u"
                " ON CONFLICT (sender_domain, url) DO UPDATE SET messages = privacy_link.messages + 1,"
                " first_sent = least(privacy_link.first_sent, excluded.first_sent),"
                " last_sent = greatest(privacy_link.last_sent, excluded.last_sent)",
                sender_domain.lower(), unique, at,
            )

    async def count_delivered(self, sender_domain: str, brand: str, count: int, at: float) -> None:
        if count <= 0:
            return
        async with self.pool.connection() as db:
            await db.execute("INSERT INTO sender_counts (sender_domain, brand, hour, delivered) VALUES ($1, $2, $3, $4)"
                             " ON CONFLICT (sender_domain, brand, hour) DO UPDATE SET"
                             " delivered = sender_counts.delivered + excluded.delivered",
                             sender_domain.lower(), brand, int(at // HOUR), count)

    async def record_complaint(self, sender_domain: str, at: float) -> str:
        hour = int(at // HOUR)
        async with self.pool.connection() as db:
            brand = await db.fetchval(
                "WITH b AS (SELECT coalesce((SELECT brand FROM sender_counts WHERE sender_domain = $1 AND hour > $2 - 168"
                " GROUP BY brand ORDER BY sum(delivered) DESC, brand LIMIT 1), '') AS brand)"
                " INSERT INTO sender_counts (sender_domain, brand, hour, complaints) SELECT $1, b.brand, $2, 1 FROM b"
                " ON CONFLICT (sender_domain, brand, hour) DO UPDATE SET complaints = sender_counts.complaints + 1"
                " RETURNING brand", sender_domain.lower(), hour)
        return str(brand or "")

    async def sender_counts(self, since: float) -> list[SenderCount]:
        async with self.pool.connection() as db:
            rows = await db.fetch("SELECT sender_domain, brand, sum(delivered), sum(complaints) FROM sender_counts"
                                  " WHERE hour >= $1 GROUP BY sender_domain, brand ORDER BY sender_domain, brand",
                                  int(since // HOUR))
        return [SenderCount(r[0], r[1], int(r[2]), int(r[3])) for r in rows]

    async def mark_privacy_links(self, dead: Sequence[DeadLink], alive: Sequence[tuple[str, str]], at: float) -> None:
        async with self.pool.connection() as db, db.transaction():
            if dead:
                await db.executemany(
                    "INSERT INTO privacy_link_dead (sender_domain, url, since, checked_at, reason) VALUES ($1, $2, $3, $4, $5)"
                    " ON CONFLICT (sender_domain, url) DO UPDATE SET checked_at = excluded.checked_at, reason = excluded.reason",
                    [(d.sender_domain.lower(), d.url, d.since, d.checked_at, d.reason) for d in dead])
            if alive:
                await db.executemany("DELETE FROM privacy_link_dead WHERE sender_domain = $1 AND url = $2",
                                     [(domain.lower(), url) for domain, url in alive])

    async def dead_privacy_links(self) -> list[DeadLink]:
        async with self.pool.connection() as db:
            rows = await db.fetch("SELECT sender_domain, url, since, checked_at, reason FROM privacy_link_dead"
                                  " ORDER BY sender_domain, url")
        return [DeadLink(r[1], r[0], r[2], r[3], r[4]) for r in rows]

    async def privacy_links_within(self, now: float, days: int = 30) -> list[PrivacyLink]:
        async with self.pool.connection() as db:
            rows = await db.fetch("SELECT url, sender_domain, first_sent, last_sent, messages FROM privacy_link"
                                  " WHERE last_sent >= $1 ORDER BY sender_domain, url", now - days * 86400)
        return [PrivacyLink(*r) for r in rows]

    # -- suppressions -----------------------------------------------------------------------------

    async def suppress(self, entries: Sequence[Suppression]) -> int:
        if not entries:
            return 0
        cols = list(zip(*[(self.normalize(e.address), e.scope.kind, e.scope.value, e.reason, e.source, e.created)
                          for e in entries], strict=True))
        async with self.pool.connection() as db:
            status = await db.execute(
                f"INSERT INTO suppression ({SUPPRESSION_COLS}) SELECT * FROM unnest($1::text[], $2::text[],"
                " $3::text[], $4::text[], $5::text[], $6::float8[]) ON CONFLICT DO NOTHING", *map(list, cols))
        return _count(status)

    async def unsuppress(self, address: str, scope: Scope | None = None) -> int:
        return await self._delete_scoped("suppression", address, scope)

    async def _delete_scoped(self, table: str, address: str, scope: Scope | None) -> int:
        where, params = "address = $1", [self.normalize(address)]
        if scope is not None:
            where += " AND scope_kind = $2 AND scope_value = $3"
            params += [scope.kind, scope.value]
        async with self.pool.connection() as db:
            return _count(await db.execute(f"DELETE FROM {table} WHERE {where}", *params))

    async def suppressions(self, address: str) -> list[Suppression]:
        async with self.pool.connection() as db:
            rows = await db.fetch(f"SELECT {SUPPRESSION_COLS} FROM suppression WHERE address = $1"
                                  " ORDER BY scope_kind, scope_value", self.normalize(address))
        return [suppression_row(r) for r in rows]

    async def iter_suppressions(self, batch: int = 5000, scope: Scope | None = None,
                                reason: str | None = None) -> AsyncIterator[list[Suppression]]:
        where, params = "", []
        if scope is not None:
            where += " AND scope_kind = $5 AND scope_value = $6"
            params += [scope.kind, scope.value]
        if reason is not None:
            where += f" AND reason = ${5 + len(params)}"
            params.append(reason)
        last: tuple[str, str, str] = ("", "", "")
        while True:
            async with self.pool.connection() as db:
                rows = await db.fetch(
                    f"SELECT {SUPPRESSION_COLS} FROM suppression WHERE (address, scope_kind, scope_value) > ($1, $2, $3)"
                    f"{where} ORDER BY address, scope_kind, scope_value LIMIT $4", *last, batch, *params)
            if not rows:
                return
            yield [suppression_row(r) for r in rows]
            last = (rows[-1][0], rows[-1][1], rows[-1][2])

    # -- consent ----------------------------------------------------------------------------------

    async def add_consent(self, records: Sequence[ConsentRecord], now: float) -> int:
        rows = [(self.normalize(r.address), r) for r in records]
        added = 0
        async with self.pool.connection() as db, db.transaction():
            # Another node adding consent for the same address and scope waits here; sorted,
            # so that two batches cannot deadlock.
            for key, scope in sorted({(key, r.scope) for key, r in rows}):
                await db.execute("SELECT pg_advisory_xact_lock(hashtext($1), hashtext($2))", key, scope)
            for key, r in rows:
                if await db.fetchval("SELECT 1 FROM consent WHERE address = $1 AND scope = $2 AND status = $3 AND"
                                     " consented_at = $4 AND source = $5 AND proof = $6 LIMIT 1",
                                     key, r.scope, r.status, r.consented_at, r.source, r.proof):
                    continue  # the same record again: an import run twice
                cur = await db.fetchrow(f"SELECT {CONSENT_COLS} FROM consent WHERE address = $1 AND scope = $2"
                                        " AND superseded_by IS NULL", key, r.scope)
                current = consent_row(cur) if cur else None
                new_id = await db.fetchval("SELECT nextval('consent_id')")
                superseded_by = None
                if current and r.consented_at < current.consented_at:
                    superseded_by = current.id  # an older record: history, not the current state
                elif current:
                    await db.execute("UPDATE consent SET superseded_by = $1 WHERE id = $2", new_id, current.id)
                await db.execute(f"INSERT INTO consent ({CONSENT_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                                 new_id, key, r.scope, r.status, r.consented_at, r.source, r.proof,
                                 r.recorded_at or now, superseded_by)
                added += 1
        return added

    async def consent_history(self, address: str) -> list[ConsentRecord]:
        async with self.pool.connection() as db:
            rows = await db.fetch(f"SELECT {CONSENT_COLS} FROM consent WHERE address = $1 ORDER BY id", self.normalize(address))
        return [consent_row(r) for r in rows]

    async def iter_consent(self, batch: int = 5000, history: bool = False) -> AsyncIterator[list[ConsentRecord]]:
        cond = "" if history else " AND superseded_by IS NULL"
        last = 0
        while True:
            async with self.pool.connection() as db:
                rows = await db.fetch(f"SELECT {CONSENT_COLS} FROM consent WHERE id > $1{cond} ORDER BY id LIMIT $2", last, batch)
            if not rows:
                return
            yield [consent_row(r) for r in rows]
            last = rows[-1][0]

    # -- frequency --------------------------------------------------------------------------------

    async def set_frequency_override(self, override: FrequencyOverride) -> None:
        o = override
        async with self.pool.connection() as db:
            await db.execute(
                'INSERT INTO frequency_override (address, scope_kind, scope_value, max_count, "window", source, set_at)'
                " VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (address, scope_kind, scope_value) DO UPDATE SET"
                ' max_count = excluded.max_count, "window" = excluded."window", source = excluded.source,'
                " set_at = excluded.set_at",
                self.normalize(o.address), o.scope.kind, o.scope.value, o.max_count, o.window, o.source, o.set_at,
            )

    async def clear_frequency_override(self, address: str, scope: Scope | None = None) -> int:
        return await self._delete_scoped("frequency_override", address, scope)

    async def prune(self, now: float, keep_sends: float) -> int:
        async with self.pool.connection() as db:
            await db.execute("DELETE FROM sender_counts WHERE hour < $1", int((now - SENDER_COUNTS_KEPT) // HOUR))
            return _count(await db.execute("DELETE FROM sends WHERE at < $1", now - keep_sends))

    async def counts(self) -> dict[str, int]:
        async with self.pool.connection() as db:
            row = await db.fetchrow("SELECT " + ", ".join(f"(SELECT count(*) FROM {t})" for t in _TABLES))
        return dict(zip(_TABLES, map(int, row), strict=True))
