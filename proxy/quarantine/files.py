"""The quarantine: held messages on disk, with an index in SQLite.

A `250 2.6.0` for a held message is only sent after `hold` returns, and `hold` returns only
once the message file is written, fsynced, renamed into place and its directory fsynced, and the
index row is committed (synchronous=FULL). The file comes first: an index row never points at a
missing file, and a file without a row (a crash between the two) is found by `audit()`.

Layout (directory 0700, files 0600; recipient addresses are personal data):
  DIR/index.sqlite3     one row per held message (schema: proxy/quarantine/schema.py)
  DIR/msg/ID.eml        the exact bytes as received (before sendwarden's own headers)
  DIR/lost+found/       files the start-up check found without an index row (see `repair`)
  DIR/.lock             every process using the quarantine holds a shared lock on it
IDs are opaque: 12 hex digits of milliseconds, then 12 random hex digits; sortable by age and
never a path.

The service user writes here and an admin (often root) reads, so nothing in the directory is
trusted to be what its name says: held files, the index and the lock file are opened without
following a link (O_NOFOLLOW, and the msg/ directory too, through its descriptor), and must be
regular files owned by the quarantine directory's owner; a held file must have one link. A
planted symlink or hard link (to /etc/shadow, say) is refused with a QuarantineError instead of
being printed by `show --raw` or mailed by `release`. SQLite opens the index by name, so for it
the same checks run just before it is opened (and on its -wal and -shm files).

A message's status moves  held → releasing → released  (or back to held when the upstream
refuses), and  held | released → deleted. Each move is one conditional UPDATE, so two reviewers
acting at once cannot both win: the release claim (releasing, with a token) is taken before
anything is sent, which is what makes a release happen exactly once.
"""

from __future__ import annotations

import asyncio
import errno
import fcntl
import json
import os
import re
import secrets
import sqlite3
import stat
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from proxy.quarantine.schema import SCHEMA_VERSION, SchemaError, migrate

ID_PATTERN = re.compile(r"^[0-9a-f]{24}$")
# 'missing': the start-up check found the row's file gone (see `repair`).
STATUSES = ("held", "releasing", "released", "deleted", "missing")
LOST_AND_FOUND = "lost+found"


class QuarantineError(Exception):
    """The quarantine cannot take or give a message (disk full, read-only, bad ID)."""


def new_id() -> str:
    return f"{int(time.time() * 1000):012x}{secrets.token_hex(6)}"


def valid_id(hold_id: str) -> bool:
    return bool(ID_PATTERN.match(hold_id))


def id_time(hold_id: str) -> float:
    """When a message with this (valid) ID was held, from the ID itself."""
    return int(hold_id[:12], 16) / 1000


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
    helo: str = ""
    proto: str = ""  # RFC 3848 protocol name of the session: ESMTP, ESMTPS, ...


@dataclass(frozen=True)
class Repair:
    """What the start-up check found and did (see `Quarantine.repair`)."""

    moved: list[str] = field(default_factory=list)  # files without a row, now in lost+found/
    missing: list[str] = field(default_factory=list)  # rows without a file (held ones now 'missing')
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


def _refuse_unless_own_file(fd: int, name: str, owner: int, single_link: bool = False) -> None:
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        raise QuarantineError(f"{name}: not a regular file; refusing to use it")
    if st.st_uid != owner:
        raise QuarantineError(f"{name}: owned by uid {st.st_uid}, not by the quarantine's owner (uid {owner}); refusing to use it")
    if single_link and st.st_nlink != 1:
        raise QuarantineError(f"{name}: has {st.st_nlink} links (a held file has one); refusing to use it")


def open_own_file(directory: Path, name: str, flags: int, owner: int, single_link: bool = False, mode: int = 0o600) -> int:
    """A descriptor of `directory/name`, opened without following a link in either part (a
    FIFO does not block: O_NONBLOCK, cleared once it is known to be a regular file), checked
    to be a regular file of `owner` (and with one link). Raises OSError or QuarantineError."""
    dfd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        fd = os.open(name, flags | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, mode, dir_fd=dfd)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise QuarantineError(f"{directory / name}: is a symbolic link; refusing to follow it") from None
        raise
    finally:
        os.close(dfd)
    try:
        _refuse_unless_own_file(fd, str(directory / name), owner, single_link)
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _check_by_name(path: Path, owner: int) -> None:
    """For files only SQLite opens (by name): the same checks, just before it does."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISLNK(st.st_mode):
        raise QuarantineError(f"{path}: is a symbolic link; refusing to follow it")
    if not stat.S_ISREG(st.st_mode):
        raise QuarantineError(f"{path}: not a regular file; refusing to use it")
    if st.st_uid != owner:
        raise QuarantineError(f"{path}: owned by uid {st.st_uid}, not by the quarantine's owner (uid {owner}); refusing to use it")


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Quarantine:
    dialect = "sqlite"  # of the WHERE clauses `search` takes (proxy/transaction/release.py Filters)

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.msg_dir = directory / "msg"
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None
        self._lock_fd: int | None = None

    def open(self) -> None:
        """Create the directory and index if needed (0700/0600), migrate it. Idempotent."""
        old = os.umask(0o077)
        try:
            self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
            self.msg_dir.mkdir(exist_ok=True, mode=0o700)
            if os.path.islink(self.msg_dir):
                raise QuarantineError(f"{self.msg_dir}: is a symbolic link; refusing to follow it")
            owner = self.owner
            for name in ("index.sqlite3", "index.sqlite3-wal", "index.sqlite3-shm"):
                _check_by_name(self.directory / name, owner)
            db = sqlite3.connect(self.directory / "index.sqlite3", check_same_thread=False, isolation_level=None)
            if self._lock_fd is None:
                self._lock_fd = open_own_file(self.directory, ".lock", os.O_RDWR | os.O_CREAT, owner)
                fcntl.flock(self._lock_fd, fcntl.LOCK_SH)
            db.execute("PRAGMA busy_timeout=5000")
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            migrate(db)
        except (OSError, sqlite3.Error, SchemaError) as exc:
            raise QuarantineError(f"cannot open the quarantine in {self.directory}: {exc}") from exc
        finally:
            os.umask(old)
        db.row_factory = sqlite3.Row
        self._db = db

    @property
    def owner(self) -> int:
        """Who the quarantine's files must belong to: the owner of its directory."""
        return os.stat(self.directory).st_uid

    @property
    def is_open(self) -> bool:
        return self._db is not None

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

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, taken at once (BEGIN IMMEDIATE) so that its reads see the
        state it changes."""
        with self._lock:
            db = self.db
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise

    def path_of(self, hold_id: str) -> Path:
        if not valid_id(hold_id):
            raise QuarantineError(f"not a quarantine id: {hold_id!r} (expected 24 hex digits, as `quarantine list` shows)")
        return self.msg_dir / f"{hold_id}.eml"

    # -- the relay's side -------------------------------------------------------------------------

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
                    " auth_user, subject, findings, size, queue_id, helo, proto, rcpt_count)"
                    " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                    (
                        hold_id, time.time(), held.stream, held.mail_from, json.dumps(held.rcpts),
                        json.dumps(held.mail_dsn), int(held.smtputf8), held.client, held.auth_user,
                        held.subject, json.dumps(held.findings), len(raw), held.queue_id,
                        held.helo, held.proto, len(held.rcpts),
                    ),
                )
        except Exception as exc:  # whatever stops the row (disk full, bad text), the file goes too
            _discard(final)
            raise QuarantineError(f"cannot index the held message: {exc}") from exc
        return hold_id

    async def hold(self, raw: bytes, held: Held) -> str:
        return await asyncio.to_thread(self.hold_sync, raw, held)

    # -- reading ----------------------------------------------------------------------------------

    def get(self, hold_id: str) -> sqlite3.Row | None:
        self.path_of(hold_id)  # validates
        with self._lock:
            return self.db.execute("SELECT * FROM held WHERE id = ?", (hold_id,)).fetchone()  # type: ignore[no-any-return]

    def raw(self, hold_id: str) -> bytes:
        name = self.path_of(hold_id).name
        try:
            fd = open_own_file(self.msg_dir, name, os.O_RDONLY, self.owner, single_link=True)
            with os.fdopen(fd, "rb") as fh:
                return fh.read()
        except FileNotFoundError:
            raise QuarantineError(f"{hold_id}: the stored message file is missing") from None
        except OSError as exc:
            raise QuarantineError(f"{hold_id}: cannot read the stored message: {exc.strerror or exc}") from None

    def count(self, status: str = "held") -> int:
        with self._lock:
            return int(self.db.execute("SELECT count(*) FROM held WHERE status = ?", (status,)).fetchone()[0])

    def search(self, where: str, params: list[Any], limit: int, offset: int) -> tuple[list[sqlite3.Row], int]:
        """Rows matching a WHERE clause built by the review code (values as parameters only),
        newest first, one page of them, and the total."""
        with self._lock:
            total = int(self.db.execute(f"SELECT count(*) FROM held WHERE {where}", params).fetchone()[0])
            rows = self.db.execute(
                f"SELECT * FROM held WHERE {where} ORDER BY created DESC, id DESC LIMIT ? OFFSET ?", [*params, limit, offset]
            ).fetchall()
        return rows, total

    def history(self, hold_id: str) -> list[sqlite3.Row]:
        with self._lock:
            return self.db.execute("SELECT * FROM events WHERE hold_id = ? ORDER BY seq", (hold_id,)).fetchall()

    def note(self, hold_id: str, event: str, actor: str, detail: str = "") -> None:
        """Add to a message's history (reveals, failed releases)."""
        with self._write() as db:
            _event(db, hold_id, event, actor, detail)

    def audit(self) -> tuple[list[str], list[str]]:
        """Compare index and files: (files without a row, rows that need a file but have none)."""
        files = {p.stem for p in self.msg_dir.glob("*.eml") if valid_id(p.stem)}
        with self._lock:
            rows = {r[0] for r in self.db.execute("SELECT id FROM held WHERE status NOT IN ('deleted', 'missing')")}
        return sorted(files - rows), sorted(rows - files)

    def repair(self) -> Repair:
        """Bring index and files back in step after a crash; run at start-up, before listening.

        - A file without a row is a hold that a crash cut short between the file and its row.
          Its client was not told 250 (the reply waits for the row), so it will send the message
          again; and its envelope lives only in the row, so it cannot be re-indexed. It is moved
          to lost+found/ for people to look at (re-indexing it would duplicate the retry).
        - A row without a file is a message that was acknowledged and then lost (the file is
          synced before the row is written, so only outside interference does this). A held
          one is marked 'missing', so that nobody tries to release it; all are reported.
        - Temporary files of interrupted writes are removed: they were never acknowledged.

        A second process with this quarantine open (another worker, a review command) may be
        between the file and the row of a hold right now: unless the exclusive lock can be had,
        nothing is touched.
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
            partial = list(self.msg_dir.glob(".*.tmp"))
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
            for hold_id in missing:
                with self._write() as db:
                    if db.execute("UPDATE held SET status='missing' WHERE id=? AND status='held'", (hold_id,)).rowcount:
                        _event(db, hold_id, "missing", "start-up check", "the stored message file was gone")
            return Repair(orphans, missing, len(partial))
        finally:
            fcntl.flock(self._lock_fd, fcntl.LOCK_SH)

    # -- state transitions ------------------------------------------------------------------------

    def claim(self, hold_id: str, actor: str, stale_before: float | None = None) -> str | None:
        """held → releasing. Returns the claim token, or None when the message is not held (and
        not a claim older than `stale_before`, when given). Taken before anything is sent."""
        token = secrets.token_hex(8)
        sql = "UPDATE held SET status='releasing', claim_token=?, claimed_at=?, claimed_by=? WHERE id=? AND (status='held'"
        params: list[Any] = [token, time.time(), actor, hold_id]
        if stale_before is not None:
            sql += " OR (status='releasing' AND claimed_at < ?)"
            params.append(stale_before)
        with self._write() as db:
            if db.execute(sql + ")", params).rowcount != 1:
                return None
            _event(db, hold_id, "claimed", actor)
        return token

    def settle(self, hold_id: str, token: str, actor: str, reason: str, reply: str) -> bool:
        """releasing → released, for the holder of the claim: the upstream has the message."""
        with self._write() as db:
            done = db.execute(
                "UPDATE held SET status='released', released_at=?, released_by=?, release_reason=?, upstream_reply=?,"
                " claim_token=NULL WHERE id=? AND status='releasing' AND claim_token=?",
                (time.time(), actor, reason, reply, hold_id, token),
            ).rowcount == 1
            if done:
                _event(db, hold_id, "released", actor, f"{reason} | upstream: {reply}" if reason else f"upstream: {reply}")
        return done

    def give_back(self, hold_id: str, token: str, actor: str, why: str) -> bool:
        """releasing → held: the release failed (upstream refusal, recheck), the message stays."""
        with self._write() as db:
            done = db.execute(
                "UPDATE held SET status='held', claim_token=NULL, claimed_at=NULL, claimed_by=NULL, upstream_reply=?"
                " WHERE id=? AND status='releasing' AND claim_token=?",
                (why, hold_id, token),
            ).rowcount == 1
            if done:
                _event(db, hold_id, "release_failed", actor, why)
        return done

    def delete(self, hold_id: str, actor: str, reason: str) -> str | None:
        """held | released → deleted: the bytes are removed and the recipients' addresses with
        them; the row stays (who deleted it, when, why) until purged. Returns the status the
        message had, or None when there is no such message."""
        path = self.path_of(hold_id)
        with self._write() as db:
            row = db.execute("SELECT status FROM held WHERE id = ?", (hold_id,)).fetchone()
            if row is None:
                return None
            if row[0] in ("held", "released"):
                db.execute(
                    "UPDATE held SET status='deleted', deleted_at=?, deleted_by=?, delete_reason=?, rcpts='[]'"
                    " WHERE id=?", (time.time(), actor, reason, hold_id),
                )
                _event(db, hold_id, "deleted", actor, reason)
        if row[0] in ("held", "released", "deleted"):
            path.unlink(missing_ok=True)
        return str(row[0])

    def purge(self, before: float, dry_run: bool = False) -> tuple[list[sqlite3.Row], list[str]]:
        """Remove, for good, every message held before `before` (whatever its status, except a
        release in flight), and stray files (crash leftovers) as old. Returns (rows, files)."""
        with self._lock:
            rows = self.db.execute(
                "SELECT * FROM held WHERE created < ? AND status != 'releasing' ORDER BY created", (before,)
            ).fetchall()
            known = {r[0] for r in self.db.execute("SELECT id FROM held")}
        # A file without a row may be a hold in progress: strays must also be an hour old.
        stray_before = min(before, time.time() - 3600)
        strays = [p for p in self.msg_dir.glob("*.eml") if valid_id(p.stem) and p.stem not in known and id_time(p.stem) < stray_before]
        strays += [p for p in self.msg_dir.glob(".*.tmp") if _mtime(p) < stray_before]
        if dry_run:
            return rows, sorted(p.name for p in strays)
        removed: list[sqlite3.Row] = []
        for row in rows:
            with self._write() as db:
                if db.execute("DELETE FROM held WHERE id=? AND status != 'releasing'", (row["id"],)).rowcount != 1:
                    continue  # a release claimed it meanwhile
                db.execute("DELETE FROM events WHERE hold_id=?", (row["id"],))
            self.msg_dir.joinpath(f"{row['id']}.eml").unlink(missing_ok=True)
            removed.append(row)
        for p in strays:
            p.unlink(missing_ok=True)
        return removed, sorted(p.name for p in strays)


def for_config(config: Any) -> Quarantine:
    """The quarantine a service configuration names: shared in PostgreSQL, or local."""
    if config.quarantine_url:
        from proxy.quarantine.pg import PgQuarantine

        return PgQuarantine(config.quarantine_url, config.quarantine_dir)
    return Quarantine(config.quarantine_dir)


def _event(db: sqlite3.Connection, hold_id: str, event: str, actor: str, detail: str = "") -> None:
    db.execute("INSERT INTO events (hold_id, at, event, actor, detail) VALUES (?,?,?,?,?)",
               (hold_id, time.time(), event, actor, detail[:2000]))


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return float("inf")


__all__ = ["LOST_AND_FOUND", "Held", "Quarantine", "QuarantineError", "Repair", "SCHEMA_VERSION", "STATUSES", "for_config",
           "id_time", "new_id", "valid_id"]
