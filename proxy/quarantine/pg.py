"""The shared quarantine: index and message bytes in PostgreSQL, so that any node's CLI can list,
show, release and delete any node's held messages.

The same interface and the same state machine as the local quarantine (proxy/quarantine/files.py):
each status move is one conditional UPDATE, so a release claimed on one node cannot be claimed
on another, and a release happens exactly once across the fleet. The bytes are written in the
same transaction as the index row: a `250 2.6.0` is only sent once both are committed.

The quarantine interface is synchronous (the CLI, and the relay through threads); asyncpg is
not. So the pool lives on a private event loop in a thread of its own, and each call is handed
to it. Every failure comes out as QuarantineError.
"""

from __future__ import annotations

import asyncio
import json
import re
import secrets
import threading
import time
from concurrent.futures import Future
from pathlib import Path
from typing import Any, Awaitable, Coroutine, TypeVar

from proxy.quarantine.files import Held, Quarantine, QuarantineError, Repair, new_id, valid_id
from proxy.store.base import StoreError
from proxy.store.pg_schema import QUARANTINE, migrate
from proxy.store.pgconn import PgPool

T = TypeVar("T")
_PLACEHOLDER = re.compile(r"\?")


def numbered(sql: str, first: int = 1) -> str:
    """`?` placeholders (as the review filters write them) as PostgreSQL's $1, $2, ..."""
    counter = iter(range(first, first + sql.count("?")))
    return _PLACEHOLDER.sub(lambda _: f"${next(counter)}", sql)


class PgQuarantine(Quarantine):
    dialect = "postgresql"

    def __init__(self, url: str, directory: Path, timeout: float = 30.0) -> None:
        super().__init__(directory)  # the directory is not used; kept for messages and audit
        self.url = url
        self.timeout = timeout
        self._pool: PgPool | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def __repr__(self) -> str:
        return f"quarantine in {self._pool or self.url}"

    # -- the private loop -------------------------------------------------------------------------

    def _submit(self, coro: Coroutine[Any, Any, T]) -> "Future[T]":
        if self._loop is None:
            coro.close()
            raise QuarantineError("the shared quarantine is not open")
        return asyncio.run_coroutine_threadsafe(self._guard(coro), self._loop)

    async def _guard(self, coro: Awaitable[T]) -> T:
        try:
            return await coro
        except StoreError as exc:
            raise QuarantineError(f"shared quarantine: {exc}") from exc

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        return self._submit(coro).result(self.timeout)

    def open(self) -> None:
        if self._loop is not None:
            return
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="quarantine-pg", daemon=True)
        self._thread.start()
        self._pool = PgPool(self.url, max_size=4)
        try:
            self._call(self._open())
        except BaseException:
            self.close()
            raise

    async def _open(self) -> None:
        assert self._pool is not None
        await self._pool.open()
        async with self._pool.connection() as db:
            await migrate(db, "quarantine", QUARANTINE)

    @property
    def is_open(self) -> bool:
        return self._loop is not None

    @property
    def db(self) -> Any:
        raise QuarantineError("the shared quarantine has no SQLite index")

    def close(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is None:
            return
        if self._pool is not None:
            asyncio.run_coroutine_threadsafe(self._pool.close(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        if thread is not None:
            thread.join(10)
        loop.close()
        self._loop = self._thread = None

    def path_of(self, hold_id: str) -> Path:
        if not valid_id(hold_id):
            raise QuarantineError(f"not a quarantine id: {hold_id!r} (expected 24 hex digits, as `quarantine list` shows)")
        return Path(f"postgresql:quarantine_message/{hold_id}")

    # -- the relay's side -------------------------------------------------------------------------

    def hold_sync(self, raw: bytes, held: Held) -> str:
        return self._call(self._hold(raw, held))

    async def hold(self, raw: bytes, held: Held) -> str:
        return await asyncio.wrap_future(self._submit(self._hold(raw, held)))

    async def _hold(self, raw: bytes, held: Held) -> str:
        assert self._pool is not None
        hold_id = new_id()
        async with self._pool.connection() as db, db.transaction():
            await db.execute(
                "INSERT INTO quarantine_held (id, created, stream, mail_from, rcpts, mail_dsn, smtputf8, client,"
                " auth_user, subject, findings, size, queue_id, helo, proto, rcpt_count)"
                " VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16)",
                hold_id, time.time(), held.stream, held.mail_from, json.dumps(held.rcpts), json.dumps(held.mail_dsn),
                int(held.smtputf8), held.client, held.auth_user, held.subject, json.dumps(held.findings), len(raw),
                held.queue_id, held.helo, held.proto, len(held.rcpts),
            )
            await db.execute("INSERT INTO quarantine_message (id, raw) VALUES ($1, $2)", hold_id, raw)
        return hold_id

    # -- reading ----------------------------------------------------------------------------------

    async def _fetch(self, sql: str, *args: Any) -> list[Any]:
        assert self._pool is not None
        async with self._pool.connection() as db:
            return list(await db.fetch(sql, *args))

    def get(self, hold_id: str) -> Any:
        self.path_of(hold_id)
        rows = self._call(self._fetch("SELECT * FROM quarantine_held WHERE id = $1", hold_id))
        return rows[0] if rows else None

    def raw(self, hold_id: str) -> bytes:
        self.path_of(hold_id)
        rows = self._call(self._fetch("SELECT raw FROM quarantine_message WHERE id = $1", hold_id))
        if not rows:
            raise QuarantineError(f"{hold_id}: the stored message is missing")
        return bytes(rows[0][0])

    def count(self, status: str = "held") -> int:
        return int(self._call(self._fetch("SELECT count(*) FROM quarantine_held WHERE status = $1", status))[0][0])

    def search(self, where: str, params: list[Any], limit: int, offset: int) -> tuple[list[Any], int]:
        where = numbered(where)
        n = len(params)

        async def run() -> tuple[list[Any], int]:
            assert self._pool is not None
            async with self._pool.connection() as db:
                total = await db.fetchval(f"SELECT count(*) FROM quarantine_held AS held WHERE {where}", *params)
                rows = await db.fetch(f"SELECT * FROM quarantine_held AS held WHERE {where}"
                                      f" ORDER BY created DESC, id DESC LIMIT ${n + 1} OFFSET ${n + 2}", *params, limit, offset)
            return list(rows), int(total)

        return self._call(run())

    def history(self, hold_id: str) -> list[Any]:
        return self._call(self._fetch("SELECT * FROM quarantine_events WHERE hold_id = $1 ORDER BY seq", hold_id))

    def note(self, hold_id: str, event: str, actor: str, detail: str = "") -> None:
        self._call(self._write([], hold_id, event, actor, detail))

    def audit(self) -> tuple[list[str], list[str]]:
        """Rows without bytes (none can arise: both are written in one transaction)."""
        rows = self._call(self._fetch(
            "SELECT h.id FROM quarantine_held h LEFT JOIN quarantine_message m USING (id)"
            " WHERE h.status != 'deleted' AND m.id IS NULL ORDER BY h.id"))
        return [], [r[0] for r in rows]

    def repair(self) -> Repair:
        """The start-up check: nothing to bring back in step here (bytes and row go in one
        transaction, no local files); rows without bytes, which cannot arise, are reported."""
        return Repair(missing=self.audit()[1])

    # -- state transitions ------------------------------------------------------------------------

    async def _write(self, statements: list[tuple[str, list[Any]]], hold_id: str, event: str, actor: str,  # type: ignore[override]
                     detail: str = "", need_first: bool = False) -> bool:
        """Run statements in one transaction; note the event when the first changed a row (or
        always, when `need_first` is False). Returns whether the first changed a row."""
        assert self._pool is not None
        async with self._pool.connection() as db, db.transaction():
            changed = True
            for number, (sql, args) in enumerate(statements):
                status = await db.execute(sql, *args)
                if number == 0 and need_first:
                    changed = int(status.rsplit(" ", 1)[-1]) == 1
                    if not changed:
                        return False
            await db.execute("INSERT INTO quarantine_events (hold_id, at, event, actor, detail) VALUES ($1,$2,$3,$4,$5)",
                             hold_id, time.time(), event, actor, detail[:2000])
        return changed

    def claim(self, hold_id: str, actor: str, stale_before: float | None = None) -> str | None:
        token = secrets.token_hex(8)
        sql = ("UPDATE quarantine_held SET status='releasing', claim_token=$1, claimed_at=$2, claimed_by=$3"
               " WHERE id=$4 AND (status='held'")
        args: list[Any] = [token, time.time(), actor, hold_id]
        if stale_before is not None:
            sql += " OR (status='releasing' AND claimed_at < $5)"
            args.append(stale_before)
        done = self._call(self._write([(sql + ")", args)], hold_id, "claimed", actor, need_first=True))
        return token if done else None

    def settle(self, hold_id: str, token: str, actor: str, reason: str, reply: str) -> bool:
        detail = f"{reason} | upstream: {reply}" if reason else f"upstream: {reply}"
        return self._call(self._write([(
            "UPDATE quarantine_held SET status='released', released_at=$1, released_by=$2, release_reason=$3,"
            " upstream_reply=$4, claim_token=NULL WHERE id=$5 AND status='releasing' AND claim_token=$6",
            [time.time(), actor, reason, reply, hold_id, token])], hold_id, "released", actor, detail, need_first=True))

    def give_back(self, hold_id: str, token: str, actor: str, why: str) -> bool:
        return self._call(self._write([(
            "UPDATE quarantine_held SET status='held', claim_token=NULL, claimed_at=NULL, claimed_by=NULL,"
            " upstream_reply=$1 WHERE id=$2 AND status='releasing' AND claim_token=$3",
            [why, hold_id, token])], hold_id, "release_failed", actor, why, need_first=True))

    def delete(self, hold_id: str, actor: str, reason: str) -> str | None:
        self.path_of(hold_id)

        async def run() -> str | None:
            assert self._pool is not None
            async with self._pool.connection() as db, db.transaction():
                status = await db.fetchval("SELECT status FROM quarantine_held WHERE id = $1 FOR UPDATE", hold_id)
                if status in ("held", "released"):
                    await db.execute("UPDATE quarantine_held SET status='deleted', deleted_at=$1, deleted_by=$2,"
                                     " delete_reason=$3, rcpts='[]' WHERE id=$4", time.time(), actor, reason, hold_id)
                    await db.execute("INSERT INTO quarantine_events (hold_id, at, event, actor, detail)"
                                     " VALUES ($1,$2,'deleted',$3,$4)", hold_id, time.time(), actor, reason[:2000])
                if status in ("held", "released", "deleted"):
                    await db.execute("DELETE FROM quarantine_message WHERE id = $1", hold_id)
            return status  # type: ignore[no-any-return]

        return self._call(run())

    def purge(self, before: float, dry_run: bool = False) -> tuple[list[Any], list[str]]:
        rows = self._call(self._fetch("SELECT * FROM quarantine_held WHERE created < $1 AND status != 'releasing'"
                                      " ORDER BY created", before))
        if dry_run:
            return rows, []

        async def remove(hold_id: str) -> bool:
            assert self._pool is not None
            async with self._pool.connection() as db, db.transaction():
                status = await db.execute("DELETE FROM quarantine_held WHERE id=$1 AND status != 'releasing'", hold_id)
                if status != "DELETE 1":
                    return False  # a release claimed it meanwhile
                await db.execute("DELETE FROM quarantine_events WHERE hold_id=$1", hold_id)
                await db.execute("DELETE FROM quarantine_message WHERE id=$1", hold_id)
            return True

        return [r for r in rows if self._call(remove(r["id"]))], []


__all__ = ["PgQuarantine", "numbered"]
