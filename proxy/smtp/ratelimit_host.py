"""Rate-limit buckets and per-client connection counts shared by the worker processes of one
host (`workers` > 1), so that a client whose connections the kernel spreads over N workers gets
its limits once, not N times. The fleet variant (proxy/smtp/ratelimit_pg.py) shares buckets
between hosts through PostgreSQL; this one needs nothing but the state directory.

Why SQLite in WAL mode: it is the well-kept, already used (the store) way for processes to
share a small table with atomic read-modify-write, and a draw is one upsert in one write
transaction under SQLite's file lock. `synchronous = OFF`: nothing here needs to survive a
crash (the main process deletes the file at start), so a commit never waits for the disk and
touches only the page cache and the shared-memory WAL index. Measured on a loaded 2-core VM:
a draw 31-35 us alone, 50-90 us with two processes drawing without pause; a connection's
count and release together 50-130 us. That is 1-4 % of the ~3,400 us of judging and relaying
the 27 KB newsletter, and it runs on the event loop: a hop to a thread costs as much
(25-100 us) as the draw. (Rollback-journal modes measured slower: 45-310 us a draw.) Shared memory with a hand-made
hash table and lock would be faster still, but is code of our own to get right; this is not
where a message's time goes.

The clock is time.monotonic(): CLOCK_MONOTONIC is one clock for every process of the host.
When the file cannot be used (disk full, a lock held past the busy timeout), a worker falls
back to its own in-process buckets and counts (logged once a minute), as the fleet variant
does when PostgreSQL does not answer.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import structlog

from proxy.smtp.ratelimit import Limit, RateLimiter, Take

log = structlog.get_logger("sendwarden.ratelimit")

BUSY_TIMEOUT_MS = 200  # a draw holds the lock for microseconds; waiting longer means trouble

# ?1 bucket key, ?2 capacity, ?3 tokens wanted, ?4 window (seconds), ?5 now. A row comes back
# only when the draw succeeded; a refused draw changes nothing.
_DRAW = """
INSERT INTO bucket AS b (key, tokens, stamp) VALUES (?1, ?2 - ?3, ?5)
ON CONFLICT (key) DO UPDATE SET
    tokens = min(?2, b.tokens + (?5 - b.stamp) * ?2 / ?4) - ?3,
    stamp = ?5
WHERE min(?2, b.tokens + (?5 - b.stamp) * ?2 / ?4) >= ?3
RETURNING tokens
"""

# ?1 client address, ?2 worker, ?3 the most connections a client may hold on this host.
_CONNECT = """
INSERT INTO conn (ip, worker, n)
SELECT ?1, ?2, 1 WHERE (SELECT coalesce(sum(n), 0) FROM conn WHERE ip = ?1) < ?3
ON CONFLICT (ip, worker) DO UPDATE SET n = n + 1
"""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS bucket (key TEXT PRIMARY KEY, tokens REAL NOT NULL, stamp REAL NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS conn (ip TEXT NOT NULL, worker INTEGER NOT NULL, n INTEGER NOT NULL,
                                 PRIMARY KEY (ip, worker)) WITHOUT ROWID;
"""


def reset(path: Path) -> None:
    """Start from empty (the main process, before any worker opens it): buckets stamped by a
    previous boot's monotonic clock, or counts of connections long closed, would be wrong."""
    for suffix in ("", "-wal", "-shm"):
        try:
            os.unlink(f"{path}{suffix}")
        except FileNotFoundError:
            pass


class HostShare:
    """The shared file, as one worker sees it (`worker`: its index, 0 for the main process)."""

    def __init__(self, path: Path, worker: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.path = path
        self.worker = worker
        self.clock = clock
        path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(path, isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode = WAL")
        self.db.execute("PRAGMA synchronous = OFF")
        self.db.executescript(_SCHEMA)
        # A restarted worker's predecessor left its connections behind: they are closed.
        self.forget_worker(worker)
        self._warned = 0.0

    def warn(self, exc: Exception) -> None:
        if time.monotonic() - self._warned > 60:
            self._warned = time.monotonic()
            log.warning("host_share_unavailable", reason=str(exc), path=str(self.path))

    def draw(self, takes: list[Take]) -> Limit | None:
        """Draw one token from each bucket in order, in one transaction; stop at (and return
        the limit of) the first empty one. Raises sqlite3.Error when the file cannot be used."""
        now = self.clock()
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        try:
            for limit, kind, capacity, traffic_class, key in takes:
                bucket = f"{limit.name}\x1f{kind}\x1f{traffic_class}\x1f{key}"
                if db.execute(_DRAW, (bucket, capacity, 1, limit.window, now)).fetchone() is None:
                    return limit
            return None
        finally:
            db.execute("COMMIT")

    # The connection counts never raise: when the file cannot be used (logged), each worker's
    # own count, which the caller checks first, is what holds.

    def connect(self, ip: str, most: int) -> bool:
        """Count a new connection from `ip`, unless the host already has `most` from it (then
        False). One statement: its implicit transaction makes the count and the insert atomic."""
        return self._count(_CONNECT, (ip, self.worker, most)) != 0

    def disconnect(self, ip: str) -> None:
        # The row stays at 0 (a client usually comes back); prune() drops the rows at 0.
        self._count("UPDATE conn SET n = n - 1 WHERE ip = ? AND worker = ?", (ip, self.worker))

    def forget_worker(self, worker: int) -> None:
        """A worker died: its connections died with it (the main process calls this)."""
        self._count("DELETE FROM conn WHERE worker = ?", (worker,))

    def _count(self, sql: str, params: tuple[object, ...]) -> int:
        """Rows changed by `sql`; -1 when the file cannot be used."""
        try:
            return int(self.db.execute(sql, params).rowcount)
        except sqlite3.Error as exc:
            self.warn(exc)
            return -1

    def prune(self, older_than: float) -> int:
        """Forget buckets idle for longer than `older_than` seconds: they are full again."""
        self.db.execute("DELETE FROM conn WHERE n <= 0")
        return self.db.execute("DELETE FROM bucket WHERE stamp < ?", (self.clock() - older_than,)).rowcount

    def close(self) -> None:
        self.db.close()


class HostRateLimiter(RateLimiter):
    """RateLimiter whose buckets live in the host's shared file (in-process when it fails)."""

    def __init__(self, limits: Iterable[Limit], share: HostShare) -> None:
        super().__init__(limits)
        self.share = share

    def _first_refused(self, takes: list[Take]) -> Limit | None:
        if not takes:
            return None
        try:
            return self.share.draw(takes)
        except sqlite3.Error as exc:
            self.share.warn(exc)
            return super()._first_refused(takes)

    async def prune(self) -> int:
        longest = max((x.window for x in self.limits), default=60.0)
        try:
            return self.share.prune(longest)
        except sqlite3.Error as exc:
            self.share.warn(exc)
            return 0
