"""The embedded store: one SQLite file in WAL mode, used off the event loop.

Threads of its own (proxy/store/thread.py), each with its own connection: one writer (SQLite
allows one writer at a time anyway, and one thread keeps writes in order), one reader, so that
RCPT lookups are not queued behind a write, and one checkpointer. SQLite's automatic checkpoint
runs inside the commit that fills the WAL past 1,000 pages and fsyncs the database there: a
stall of up to ~4 ms of the relay's bookkeeping (the reply to the client waits for it) every
~200 messages. The writer's is turned off; the checkpointer copies the WAL back every second
when there were writes (PASSIVE: it takes no lock the writer or the readers wait on). WAL lets
the reader, the writer and other processes (the CLI importing a list) work at once.

synchronous=FULL: an unsubscribe that was confirmed survives a power cut. The relay's own
bookkeeping after each message (send counts, privacy links) commits with synchronous=NORMAL
instead: no fsync on the relay path (in WAL mode such a commit survives a crash of the
process, and the next FULL commit or checkpoint makes it durable; a power cut can lose the
last moments' counts, never a suppression).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
from functools import lru_cache, partial
from pathlib import Path
from typing import Any, AsyncIterator, Callable, Sequence, TypeVar

import structlog

from proxy.store.address import AddressNormalizer
from proxy.store.base import (
    HOUR, SENDER_COUNTS_KEPT, ConsentRecord, DeadLink, FrequencyOverride, PrivacyLink, Query, RecipientState, RecipientStore, Scope,
    SenderCount, StoreError, Suppression, CONSENT_COLS, SUPPRESSION_COLS, consent_row, count_sends, suppression_row,
)
from proxy.store.sqlite_schema import migrate
from proxy.store.thread import DbThread

T = TypeVar("T")
log = structlog.get_logger("sendwarden.store")


class _Connection(sqlite3.Connection):
    """A connection that remembers its `synchronous` setting, so that a run of bookkeeping
    writes does not switch it to NORMAL and back to FULL around every commit."""

    synchronous = "FULL"


def connect(path: Path, *, readonly: bool = False, busy_timeout: float = 5.0) -> sqlite3.Connection:
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=busy_timeout, factory=_Connection)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    if readonly:
        db.execute("PRAGMA query_only=1")
    return db


def _synchronous(db: sqlite3.Connection, level: str) -> None:
    """Set PRAGMA synchronous on `db` unless it is set so already. A connection that does not
    remember its setting (not made by `connect`) is set every time."""
    if getattr(db, "synchronous", None) != level:
        db.execute(f"PRAGMA synchronous={level}")
        if isinstance(db, _Connection):
            db.synchronous = level


class _Transaction:
    """`with _Transaction(db):` → BEGIN IMMEDIATE … COMMIT, or ROLLBACK on any error.
    `durable=False`: commit without waiting for the disk (bookkeeping on the relay path).

    The connection stays at the level of its last transaction: each durable transaction
    sets FULL before it begins (its commit then also makes the bookkeeping before it
    durable), each bookkeeping one NORMAL, so the relay's run of bookkeeping commits costs
    no PRAGMA at all (two statements, and two hand-overs of the GIL, fewer per message)."""

    def __init__(self, db: sqlite3.Connection, durable: bool = True) -> None:
        self.db = db
        self.durable = durable

    def __enter__(self) -> sqlite3.Connection:
        _synchronous(self.db, "FULL" if self.durable else "NORMAL")
        self.db.execute("BEGIN IMMEDIATE")
        return self.db

    def __exit__(self, kind: Any, *_: Any) -> None:
        self.db.execute("COMMIT" if kind is None else "ROLLBACK")


_COUNT_DELIVERED = ("INSERT INTO sender_counts (sender_domain, brand, hour, delivered) VALUES (?, ?, ?, ?)"
                    " ON CONFLICT (sender_domain, brand, hour) DO UPDATE SET delivered = delivered + excluded.delivered")


@lru_cache(maxsize=8)
def _lookup_sql(consent: bool, overrides: bool, sends: bool) -> str:
    """The one statement of a recipient lookup: a kind column, then the row padded to ten."""
    parts = [f"SELECT 0, {SUPPRESSION_COLS}, NULL, NULL, NULL FROM suppression WHERE address = :k"]
    if consent:
        parts.append(f"SELECT 1, {CONSENT_COLS} FROM consent WHERE address = :k AND superseded_by IS NULL")
    if overrides:
        parts.append("SELECT 2, scope_kind, scope_value, max_count, window, source, set_at, NULL, NULL, NULL"
                     " FROM frequency_override WHERE address = :k")
    if sends:
        parts.append("SELECT 3, at, brand, stream, NULL, NULL, NULL, NULL, NULL, NULL FROM sends WHERE address = :k AND at > :since")
    return " UNION ALL ".join(parts)


class SqliteStore(RecipientStore):
    def __init__(self, path: Path, normalize: AddressNormalizer, busy_timeout: float = 5.0,
                 checkpoint_every: float = 1.0) -> None:
        super().__init__(normalize)
        self.path = path
        self.busy_timeout = busy_timeout
        self.checkpoint_every = checkpoint_every
        self.checkpoints = 0  # checkpoints run (for tests and curious operators)
        self._threads: dict[str, DbThread] = {}
        self._dbs: dict[str, sqlite3.Connection] = {}
        self._writes = 0  # write jobs since the last checkpoint
        self._checkpointer: asyncio.Task[None] | None = None

    def __repr__(self) -> str:
        return f"sqlite:{self.path}"

    # -- threads ----------------------------------------------------------------------------------

    async def _run(self, role: str, fn: Callable[..., T], *args: Any) -> T:
        thread = self._threads.get(role)
        if thread is None:
            raise StoreError("the store is not open")

        def call() -> T:
            try:
                return fn(self._dbs[role], *args)
            except sqlite3.Error as exc:
                raise StoreError(f"{self}: {exc}") from exc

        if role == "write":
            self._writes += 1
        return await thread.call(call)

    async def _checkpoint_loop(self) -> None:
        """Copy the WAL back into the database now and then, off the writer's path."""
        while True:
            await asyncio.sleep(self.checkpoint_every)
            if not self._writes:
                continue
            self._writes = 0
            try:
                await self._run("checkpoint", lambda db: db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone())
                self.checkpoints += 1
            except StoreError as exc:  # busy (another process checkpoints) or I/O: the next round tries again
                log.warning("store_checkpoint_failed", error=str(exc))

    async def open(self) -> None:
        if self._threads:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            # Recipient addresses are personal data: the file for its owner only, whatever the
            # umask (SQLite would make it 0644, and gives its journal files the file's mode).
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
            try:
                os.fchmod(fd, 0o600)
            finally:
                os.close(fd)
        except OSError as exc:
            raise StoreError(f"{self}: cannot create {self.path}: {exc.strerror or exc}") from exc
        for role in ("write", "read", "checkpoint"):
            # One connection per role, opened and used only on its own thread.
            thread = self._threads[role] = DbThread(f"store-{role}")
            try:
                self._dbs[role] = await thread.call(partial(connect, self.path, readonly=role == "read", busy_timeout=self.busy_timeout))
            except sqlite3.Error as exc:
                await self.close()
                raise StoreError(f"{self}: {exc}") from exc
            if role == "write":
                try:
                    await self._run("write", migrate)
                    await self._run("write", lambda db: db.execute("PRAGMA wal_autocheckpoint=0"))
                except StoreError:
                    await self.close()
                    raise
        self._checkpointer = asyncio.create_task(self._checkpoint_loop(), name="store-checkpoint")

    async def close(self) -> None:
        if self._checkpointer is not None:
            self._checkpointer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._checkpointer
            self._checkpointer = None
        for role, thread in list(self._threads.items()):
            db = self._dbs.pop(role, None)
            if db is not None:
                await thread.call(db.close)
            thread.stop()
        self._threads.clear()

    # -- the relay's questions --------------------------------------------------------------------

    async def lookup(self, address: str, query: Query, now: float) -> RecipientState:
        return await self._run("read", self.lookup_sync, self.normalize(address), query, now)

    def lookup_sync(self, db: sqlite3.Connection, key: str, query: Query, now: float) -> RecipientState:
        """The per-RCPT lookup on a connection: a few primary-key/index probes, no scans, sent
        as ONE statement (UNION ALL of the probes the query needs): each statement costs a
        round through the sqlite3 module, which was half of the lookup."""
        since = now - max(w for _, w in query.windows) if query.windows else now
        rows = db.execute(_lookup_sql(query.consent_scope is not None, query.overrides, bool(query.windows)),
                          {"k": key, "since": since}).fetchall()
        wanted = set(query.scopes)
        sups: list[Suppression] = []
        current: list[ConsentRecord] = []
        overrides: list[FrequencyOverride] = []
        history: list[tuple[Any, ...]] = []
        for r in rows:
            kind = r[0]
            if kind == 0:
                s = suppression_row(r[1:7])
                if s.scope in wanted:
                    sups.append(s)
            elif kind == 1:
                current.append(consent_row(r[1:10]))
            elif kind == 2:
                overrides.append(FrequencyOverride(key, Scope(r[1], r[2]), r[3], r[4], r[5], r[6]))
            else:
                history.append(r[1:4])
        consent = next((c for c in current if c.scope == query.consent_scope), None)
        scopes = tuple(sorted(c.scope for c in current if c.status == "granted"))
        windows = list(query.windows) + [(o.scope, o.window) for o in overrides]
        sends: dict[tuple[Scope, float], int] = {}
        if windows:
            longest = now - max(w for _, w in windows)
            if longest < since:  # an override looks further back than the policy's windows
                history = db.execute("SELECT at, brand, stream FROM sends WHERE address = ? AND at > ?", (key, longest)).fetchall()
            sends = count_sends(history, windows, now)
        return RecipientState(key, tuple(sups), consent, scopes, tuple(overrides), sends)

    async def suppressions_for(self, addresses: Sequence[str], scopes: Sequence[Scope]) -> dict[str, list[Suppression]]:
        keys = {a: self.normalize(a) for a in addresses}
        wanted = set(scopes)

        def read(db: sqlite3.Connection) -> dict[str, list[Suppression]]:
            out: dict[str, list[Suppression]] = {}
            for given, key in keys.items():
                rows = db.execute(f"SELECT {SUPPRESSION_COLS} FROM suppression WHERE address = ?", (key,))
                found = [s for s in map(suppression_row, rows) if s.scope in wanted]
                if found:
                    out[given] = found
            return out

        return await self._run("read", read)

    async def record_sends(self, addresses: Sequence[str], brand: str, stream: str, at: float) -> None:
        await self.record_delivery(at, addresses, brand, stream)

    async def record_privacy_links(self, sender_domain: str, urls: Sequence[str], at: float) -> None:
        await self.record_delivery(at, sender_domain=sender_domain, urls=urls)

    async def record_delivery(self, at: float, addresses: Sequence[str] = (), brand: str = "", stream: str = "",
                              sender_domain: str = "", urls: Sequence[str] = (), delivered: int = 0) -> None:
        """Send counts, privacy links and the delivered count of one message: one hop to the
        writer thread, one transaction, no fsync (see the module docstring)."""
        sends = [(self.normalize(a), at, brand, stream) for a in addresses]
        links = [(sender_domain.lower(), url, at, at) for url in dict.fromkeys(urls)]
        if not sends and not links and not delivered:
            return

        def write(db: sqlite3.Connection) -> None:
            with _Transaction(db, durable=False):
                if delivered:
                    db.execute(_COUNT_DELIVERED, (sender_domain.lower(), brand, int(at // HOUR), delivered))
                if sends:
                    db.executemany("INSERT INTO sends (address, at, brand, stream) VALUES (?, ?, ?, ?)", sends)
                if links:
                    db.executemany(
                        "INSERT INTO privacy_link (sender_domain, url, first_sent, last_sent, messages) VALUES (?, ?, ?, ?, 1)"
                        " ON CONFLICT (sender_domain, url) DO UPDATE SET messages = messages + 1,"
                        " first_sent = min(first_sent, excluded.first_sent), last_sent = max(last_sent, excluded.last_sent)",
                        links,
                    )

        await self._run("write", write)

    async def count_delivered(self, sender_domain: str, brand: str, count: int, at: float) -> None:
        await self.record_delivery(at, brand=brand, sender_domain=sender_domain, delivered=count)

    async def record_complaint(self, sender_domain: str, at: float) -> str:
        domain = sender_domain.lower()

        def write(db: sqlite3.Connection) -> str:
            with _Transaction(db):
                row = db.execute("SELECT brand FROM sender_counts WHERE sender_domain = ? AND hour > ? GROUP BY brand"
                                 " ORDER BY sum(delivered) DESC, brand LIMIT 1", (domain, int(at // HOUR) - 7 * 24)).fetchone()
                brand = row[0] if row else ""
                db.execute("INSERT INTO sender_counts (sender_domain, brand, hour, complaints) VALUES (?, ?, ?, 1)"
                           " ON CONFLICT (sender_domain, brand, hour) DO UPDATE SET complaints = complaints + 1",
                           (domain, brand, int(at // HOUR)))
                return str(brand)

        return await self._run("write", write)

    async def sender_counts(self, since: float) -> list[SenderCount]:
        def read(db: sqlite3.Connection) -> list[SenderCount]:
            rows = db.execute("SELECT sender_domain, brand, sum(delivered), sum(complaints) FROM sender_counts"
                              " WHERE hour >= ? GROUP BY sender_domain, brand ORDER BY sender_domain, brand",
                              (int(since // HOUR),))
            return [SenderCount(r[0], r[1], int(r[2]), int(r[3])) for r in rows]

        return await self._run("read", read)

    async def mark_privacy_links(self, dead: Sequence[DeadLink], alive: Sequence[tuple[str, str]], at: float) -> None:
        marks = [(d.sender_domain.lower(), d.url, d.since, d.checked_at, d.reason) for d in dead]
        clear = [(domain.lower(), url) for domain, url in alive]

        def write(db: sqlite3.Connection) -> None:
            with _Transaction(db):
                db.executemany("INSERT INTO privacy_link_dead (sender_domain, url, since, checked_at, reason)"
                               " VALUES (?, ?, ?, ?, ?) ON CONFLICT (sender_domain, url) DO UPDATE SET"
                               " checked_at = excluded.checked_at, reason = excluded.reason", marks)
                db.executemany("DELETE FROM privacy_link_dead WHERE sender_domain = ? AND url = ?", clear)

        await self._run("write", write)

    async def dead_privacy_links(self) -> list[DeadLink]:
        return await self._run("read", lambda db: [DeadLink(r[1], r[0], r[2], r[3], r[4]) for r in db.execute(
            "SELECT sender_domain, url, since, checked_at, reason FROM privacy_link_dead ORDER BY sender_domain, url")])

    async def privacy_links_within(self, now: float, days: int = 30) -> list[PrivacyLink]:
        def read(db: sqlite3.Connection) -> list[PrivacyLink]:
            rows = db.execute("SELECT url, sender_domain, first_sent, last_sent, messages FROM privacy_link"
                              " WHERE last_sent >= ? ORDER BY sender_domain, url", (now - days * 86400,))
            return [PrivacyLink(*r) for r in rows]

        return await self._run("read", read)

    # -- suppressions -----------------------------------------------------------------------------

    async def suppress(self, entries: Sequence[Suppression]) -> int:
        rows = [(self.normalize(e.address), e.scope.kind, e.scope.value, e.reason, e.source, e.created) for e in entries]

        def write(db: sqlite3.Connection) -> int:
            with _Transaction(db):
                before = db.total_changes
                db.executemany(f"INSERT INTO suppression ({SUPPRESSION_COLS}) VALUES (?, ?, ?, ?, ?, ?)"
                               " ON CONFLICT DO NOTHING", rows)
                return db.total_changes - before

        return await self._run("write", write)

    async def unsuppress(self, address: str, scope: Scope | None = None) -> int:
        return await self._delete_scoped("suppression", address, scope)

    async def _delete_scoped(self, table: str, address: str, scope: Scope | None) -> int:
        """Delete an address's rows in `table`, in one scope or all."""
        key = self.normalize(address)
        where, params = "address = ?", [key]
        if scope is not None:
            where += " AND scope_kind = ? AND scope_value = ?"
            params += [scope.kind, scope.value]

        def write(db: sqlite3.Connection) -> int:
            with _Transaction(db):
                return db.execute(f"DELETE FROM {table} WHERE {where}", params).rowcount

        return await self._run("write", write)

    async def suppressions(self, address: str) -> list[Suppression]:
        key = self.normalize(address)
        return await self._run("read", lambda db: [suppression_row(r) for r in db.execute(
            f"SELECT {SUPPRESSION_COLS} FROM suppression WHERE address = ? ORDER BY scope_kind, scope_value", (key,))])

    async def iter_suppressions(self, batch: int = 5000, scope: Scope | None = None,
                                reason: str | None = None) -> AsyncIterator[list[Suppression]]:
        where, params = [], []
        if scope is not None:
            where.append("scope_kind = ? AND scope_value = ?")
            params += [scope.kind, scope.value]
        if reason is not None:
            where.append("reason = ?")
            params.append(reason)
        cond = "".join(f" AND {w}" for w in where)
        last: tuple[str, str, str] = ("", "", "")
        while True:
            rows = await self._run("read", lambda db, after=last: db.execute(
                f"SELECT {SUPPRESSION_COLS} FROM suppression WHERE (address, scope_kind, scope_value) > (?, ?, ?){cond}"
                " ORDER BY address, scope_kind, scope_value LIMIT ?", (*after, *params, batch)).fetchall())
            if not rows:
                return
            yield [suppression_row(r) for r in rows]
            last = (rows[-1][0], rows[-1][1], rows[-1][2])

    # -- consent ----------------------------------------------------------------------------------

    async def add_consent(self, records: Sequence[ConsentRecord], now: float) -> int:
        rows = [(self.normalize(r.address), r) for r in records]

        def write(db: sqlite3.Connection) -> int:
            added = 0
            with _Transaction(db):
                next_id = int(db.execute("SELECT coalesce(max(id), 0) + 1 FROM consent").fetchone()[0])
                for key, r in rows:
                    if db.execute("SELECT 1 FROM consent WHERE address = ? AND scope = ? AND status = ? AND consented_at = ?"
                                  " AND source = ? AND proof = ? LIMIT 1",
                                  (key, r.scope, r.status, r.consented_at, r.source, r.proof)).fetchone():
                        continue  # the same record again: an import run twice
                    cur = db.execute(f"SELECT {CONSENT_COLS} FROM consent WHERE address = ? AND scope = ?"
                                     " AND superseded_by IS NULL", (key, r.scope)).fetchone()
                    current = consent_row(cur) if cur else None
                    superseded_by = None
                    if current and r.consented_at < current.consented_at:
                        superseded_by = current.id  # an older record: history, not the current state
                    elif current:
                        db.execute("UPDATE consent SET superseded_by = ? WHERE id = ?", (next_id, current.id))
                    db.execute(f"INSERT INTO consent ({CONSENT_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                               (next_id, key, r.scope, r.status, r.consented_at, r.source, r.proof,
                                r.recorded_at or now, superseded_by))
                    next_id += 1
                    added += 1
            return added

        return await self._run("write", write)

    async def consent_history(self, address: str) -> list[ConsentRecord]:
        key = self.normalize(address)
        return await self._run("read", lambda db: [consent_row(r) for r in db.execute(
            f"SELECT {CONSENT_COLS} FROM consent WHERE address = ? ORDER BY id", (key,))])

    async def iter_consent(self, batch: int = 5000, history: bool = False) -> AsyncIterator[list[ConsentRecord]]:
        cond = "" if history else " AND superseded_by IS NULL"
        last = 0
        while True:
            rows = await self._run("read", lambda db, after=last: db.execute(
                f"SELECT {CONSENT_COLS} FROM consent WHERE id > ?{cond} ORDER BY id LIMIT ?", (after, batch)).fetchall())
            if not rows:
                return
            yield [consent_row(r) for r in rows]
            last = rows[-1][0]

    # -- frequency --------------------------------------------------------------------------------

    async def set_frequency_override(self, override: FrequencyOverride) -> None:
        o = override
        row = (self.normalize(o.address), o.scope.kind, o.scope.value, o.max_count, o.window, o.source, o.set_at)

        def write(db: sqlite3.Connection) -> None:
            with _Transaction(db):
                db.execute("INSERT OR REPLACE INTO frequency_override (address, scope_kind, scope_value, max_count,"
                           " window, source, set_at) VALUES (?, ?, ?, ?, ?, ?, ?)", row)

        await self._run("write", write)

    async def clear_frequency_override(self, address: str, scope: Scope | None = None) -> int:
        return await self._delete_scoped("frequency_override", address, scope)

    async def prune(self, now: float, keep_sends: float) -> int:
        def write(db: sqlite3.Connection) -> int:
            with _Transaction(db):
                db.execute("DELETE FROM sender_counts WHERE hour < ?", (int((now - SENDER_COUNTS_KEPT) // HOUR),))
                return db.execute("DELETE FROM sends WHERE at < ?", (now - keep_sends,)).rowcount

        return await self._run("write", write)

    async def counts(self) -> dict[str, int]:
        def read(db: sqlite3.Connection) -> dict[str, int]:
            tables = ("suppression", "consent", "sends", "frequency_override", "privacy_link")
            return {t: int(db.execute(f"SELECT count(*) FROM {t}").fetchone()[0]) for t in tables}

        return await self._run("read", read)
