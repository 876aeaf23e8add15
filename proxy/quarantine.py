"""The quarantine: held messages on disk, with an index in SQLite.

A `250 2.6.0` for a held message is only sent after `hold` returns, and `hold` returns only
once the message file is written, fsynced, renamed into place and its directory fsynced, and the
index row is committed (synchronous=FULL). The file comes first: an index row never points at a
missing file, and a file without a row (a crash between the two) is found by `audit()`.

Layout (directory 0700, files 0600; recipient addresses are personal data):
  DIR/index.sqlite3     one row per held message
  DIR/msg/ID.eml        the exact bytes as received (before sendwarden's own headers)
  DIR/lost+found/       files the start-up check found without an index row (see `repair`)
  DIR/.lock             every process using the quarantine holds a shared lock on it
IDs are opaque: 12 hex digits of milliseconds, then 12 random hex digits; sortable by age and
never a path.
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import re
import secrets
import sqlite3
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

SCHEMA_VERSION = 1
ID_PATTERN = re.compile(r"^[0-9a-f]{24}$")
LOST_AND_FOUND = "lost+found"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS held (
    id TEXT PRIMARY KEY,
    created REAL NOT NULL,
    status TEXT NOT NULL DEFAULT 'held',
    stream TEXT NOT NULL,
    mail_from TEXT NOT NULL,
    rcpts TEXT NOT NULL,          -- JSON: [{"address": ..., "dsn": {...}}]
    mail_dsn TEXT NOT NULL,       -- JSON
    smtputf8 INTEGER NOT NULL,
    client TEXT NOT NULL,
    auth_user TEXT,
    subject TEXT NOT NULL,
    findings TEXT NOT NULL,       -- JSON: [{"rule", "action", "detail"}]
    size INTEGER NOT NULL,
    queue_id TEXT NOT NULL,
    released_at REAL,
    released_by TEXT,
    release_reason TEXT,
    upstream_reply TEXT
);
CREATE INDEX IF NOT EXISTS held_created ON held (created);
CREATE INDEX IF NOT EXISTS held_status ON held (status, created);
"""


class QuarantineError(Exception):
    """The quarantine cannot take or give a message (disk full, read-only, bad ID)."""


def new_id() -> str:
    return f"{int(time.time() * 1000):012x}{secrets.token_hex(6)}"


def valid_id(hold_id: str) -> bool:
    return bool(ID_PATTERN.match(hold_id))


@dataclass(frozen=True)
class Held:
    """What the quarantine keeps about one message besides its bytes."""

    stream: str
    mail_from: str
    rcpts: list[dict[str, Any]]
    mail_dsn: dict[str, str]
    smtputf8: bool
    client: str
    auth_user: str | None
    subject: str
    findings: list[dict[str, str]]
    queue_id: str


@dataclass(frozen=True)
class Repair:
    """What the start-up check found and did (see `Quarantine.repair`)."""

    moved: list[str] = field(default_factory=list)  # files without a row, now in lost+found/
    missing: list[str] = field(default_factory=list)  # rows without a file, now status 'missing'
    partial: int = 0  # temporary files of interrupted writes, removed
    skipped: bool = False  # another process had the quarantine open: nothing checked

    def __bool__(self) -> bool:
        return bool(self.moved or self.missing or self.partial or self.skipped)


def _discard(path: Path) -> None:
    """Remove what a failed hold left, if the filesystem lets us: on a read-only or broken one
    it cannot, and the original error is the one to report."""
    try:
        path.unlink(missing_ok=True)
    except OSError:
        pass


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Quarantine:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.msg_dir = directory / "msg"
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None
        self._lock_fd: int | None = None

    def open(self) -> None:
        """Create the directory and index if needed (0700/0600). Idempotent."""
        old = os.umask(0o077)
        try:
            self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
            self.msg_dir.mkdir(exist_ok=True, mode=0o700)
            db = sqlite3.connect(self.directory / "index.sqlite3", check_same_thread=False, isolation_level=None)
            if self._lock_fd is None:
                self._lock_fd = os.open(self.directory / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
                fcntl.flock(self._lock_fd, fcntl.LOCK_SH)
        finally:
            os.umask(old)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.execute("PRAGMA busy_timeout=5000")
        db.executescript(_SCHEMA)
        db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        db.row_factory = sqlite3.Row
        self._db = db

    @property
    def db(self) -> sqlite3.Connection:
        if self._db is None:
            self.open()
        assert self._db is not None
        return self._db

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # releases the lock
            self._lock_fd = None

    def path_of(self, hold_id: str) -> Path:
        if not valid_id(hold_id):
            raise QuarantineError(f"not a quarantine id: {hold_id!r}")
        return self.msg_dir / f"{hold_id}.eml"

    def hold_sync(self, raw: bytes, held: Held) -> str:
        """Store one message durably; return its ID. Raises QuarantineError on any failure."""
        hold_id = new_id()
        final = self.path_of(hold_id)
        tmp = self.msg_dir / f".{hold_id}.tmp"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(raw)
                fh.flush()
                os.fsync(fh.fileno())
            os.rename(tmp, final)
            _fsync_dir(self.msg_dir)
        except OSError as exc:
            _discard(tmp)
            raise QuarantineError(f"cannot write the held message: {exc.strerror or exc}") from exc
        try:
            with self._lock:
                self.db.execute(
                    "INSERT INTO held (id, created, stream, mail_from, rcpts, mail_dsn, smtputf8, client,"
                    " auth_user, subject, findings, size, queue_id) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                    (
                        hold_id, time.time(), held.stream, held.mail_from, json.dumps(held.rcpts),
                        json.dumps(held.mail_dsn), int(held.smtputf8), held.client, held.auth_user,
                        held.subject, json.dumps(held.findings), len(raw), held.queue_id,
                    ),
                )
        except Exception as exc:  # whatever stops the row (disk full, bad text), the file goes too
            _discard(final)
            raise QuarantineError(f"cannot index the held message: {exc}") from exc
        return hold_id

    async def hold(self, raw: bytes, held: Held) -> str:
        return await asyncio.to_thread(self.hold_sync, raw, held)

    def get(self, hold_id: str) -> sqlite3.Row | None:
        self.path_of(hold_id)  # validates
        with self._lock:
            return self.db.execute("SELECT * FROM held WHERE id = ?", (hold_id,)).fetchone()

    def raw(self, hold_id: str) -> bytes:
        return self.path_of(hold_id).read_bytes()

    def rows(self, status: str | None = None) -> Iterable[sqlite3.Row]:
        with self._lock:
            if status:
                return self.db.execute("SELECT * FROM held WHERE status = ? ORDER BY created DESC", (status,)).fetchall()
            return self.db.execute("SELECT * FROM held ORDER BY created DESC").fetchall()

    def count(self, status: str = "held") -> int:
        with self._lock:
            return int(self.db.execute("SELECT count(*) FROM held WHERE status = ?", (status,)).fetchone()[0])

    def audit(self) -> tuple[list[str], list[str]]:
        """Compare index and files: (files without a row, held rows without a file)."""
        files = {p.stem for p in self.msg_dir.glob("*.eml") if valid_id(p.stem)}
        with self._lock:
            rows = {r[0] for r in self.db.execute("SELECT id FROM held WHERE status = 'held'")}
        return sorted(files - rows), sorted(rows - files)

    def repair(self) -> Repair:
        """Bring index and files back in step after a crash; run at start-up, before listening.

        - A file without a row is a hold that a crash cut short between the file and its row.
          Its client was not told 250 (the reply waits for the row), so it will send the message
          again; and its envelope lives only in the row, so it cannot be re-indexed. It is moved
          to lost+found/ for people to look at (re-indexing it would duplicate the retry).
        - A row without a file is a message that was acknowledged and then lost (the file is
          synced before the row is written, so only outside interference does this). The row is
          marked 'missing', so that nobody tries to release it, and reported.
        - Temporary files of interrupted writes are removed: they were never acknowledged.

        A second process with this quarantine open (another worker) may be between the file and
        the row of a hold right now: unless the exclusive lock can be had, nothing is touched.
        """
        if self._db is None:
            self.open()  # which takes the shared lock
        assert self._lock_fd is not None
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fcntl.flock(self._lock_fd, fcntl.LOCK_SH)
            return Repair(skipped=True)
        try:
            orphans, missing = self.audit()
            partial = [p for p in self.msg_dir.glob(".*.tmp")]
            for path in partial:
                path.unlink(missing_ok=True)
            if orphans:
                lost = self.directory / LOST_AND_FOUND
                lost.mkdir(exist_ok=True, mode=0o700)
                for hold_id in orphans:
                    os.rename(self.path_of(hold_id), lost / f"{hold_id}.eml")
                _fsync_dir(lost)
            if orphans or partial:
                _fsync_dir(self.msg_dir)
            if missing:
                with self._lock:
                    self.db.executemany("UPDATE held SET status = 'missing' WHERE id = ?", [(m,) for m in missing])
            return Repair(orphans, missing, len(partial))
        finally:
            fcntl.flock(self._lock_fd, fcntl.LOCK_SH)
