"""The quarantine under faults: a 250 2.6.0 only ever means the message is on disk and indexed;
when the disk is full or read-only the client is told 4xx; after a crash the start-up check
brings index and files back in step and says what it did."""

from __future__ import annotations

import os
import resource
import subprocess
from pathlib import Path
from typing import Callable, Iterator

import pytest
from structlog.testing import capture_logs

from proxy.quarantine.files import Held, Quarantine, QuarantineError, Repair, new_id
from proxy.replies import Replies
from tests.reliability.conftest import record
from tests.reliability.harness import POLICY, Ledger, reconcile, send_all
from tests.support.smtpclient import line_start

# How a final reply begins ("250 2.6.0"): held for review; the quarantine (or the store) could
# not take it, so the client keeps it; relayed.
HELD, UNAVAILABLE, RELAYED = (line_start(r).rstrip() for r in (Replies.quarantined(""), Replies.store_unavailable(""),
                                                               Replies.relayed("", "")))


def held(**changes: object) -> Held:
    base = dict(stream="transactional", mail_from="news@shop.example.com",
                rcpts=[{"address": "a@example.org", "dsn": {}}], mail_dsn={}, smtputf8=False,
                client="127.0.0.1", auth_user=None, subject="hello", findings=[], queue_id="ABCDEF0123")
    base.update(changes)
    return Held(**base)  # type: ignore[arg-type]


def test_a_row_that_cannot_be_written_takes_its_file_with_it(tmp_path) -> None:
    """Regression: only sqlite3 errors removed the file; any other failure to index (here text
    that is not UTF-8) left a file without a row behind."""
    q = Quarantine(tmp_path / "q")
    q.open()
    with pytest.raises(QuarantineError):
        q.hold_sync(b"Subject: x\r\n\r\nbody\r\n", held(subject="bad \udcff text"))
    assert list(q.msg_dir.iterdir()) == []
    assert q.audit() == ([], [])
    q.close()


def crash_leftovers(q: Quarantine) -> tuple[str, str, str]:
    """Leave what crashes (and meddling) leave: a file whose row was never written, a row whose
    file is gone, and a temporary file of a write cut short. Returns (orphan, missing, kept)."""
    kept = q.hold_sync(b"Subject: kept\r\n\r\nbody\r\n", held(subject="kept"))
    gone = q.hold_sync(b"Subject: gone\r\n\r\nbody\r\n", held(subject="gone"))
    q.path_of(gone).unlink()
    orphan = new_id()
    q.path_of(orphan).write_bytes(b"Subject: orphan\r\n\r\nbody\r\n")
    (q.msg_dir / f".{new_id()}.tmp").write_bytes(b"Subject: half")
    return orphan, gone, kept


async def test_start_up_repairs_an_out_of_step_quarantine(start_relay, sink, tmp_path) -> None:
    q = Quarantine(tmp_path / "var" / "quarantine")
    q.open()
    orphan, gone, kept = crash_leftovers(q)
    assert q.audit() == ([orphan], [gone])
    q.close()

    with capture_logs() as logs:
        relay = await start_relay(policy=POLICY)
    [event] = [e for e in logs if e["event"] == "quarantine_out_of_step"]
    assert event["log_level"] == "error"  # an acknowledged message is gone: people must know
    assert event["files_without_index"] == [orphan] and event["index_without_file"] == [gone]
    assert event["partial_removed"] == 1 and event["moved_to"] == "lost+found"

    qdir = tmp_path / "var" / "quarantine"
    assert (qdir / "lost+found" / f"{orphan}.eml").read_bytes() == b"Subject: orphan\r\n\r\nbody\r\n"
    assert sorted(p.name for p in (qdir / "msg").iterdir()) == [f"{kept}.eml"]
    assert relay.quarantine.get(gone)["status"] == "missing"
    assert relay.quarantine.get(kept)["status"] == "held"
    assert relay.quarantine.audit() == ([], [])
    # And it holds new messages as before.
    ledger = Ledger()
    after = ledger.new("quarantine")
    await send_all(relay.port, ledger, [after], workers=1, tries=1)
    assert after.final.startswith(HELD) and relay.quarantine.count() == 2


async def test_a_clean_quarantine_starts_without_a_word(start_relay) -> None:
    with capture_logs() as logs:
        await start_relay(policy=POLICY)
    assert not [e for e in logs if e["event"] == "quarantine_out_of_step"]


async def test_a_second_worker_starting_leaves_the_check_to_the_first(start_relay, tmp_path) -> None:
    """With workers = N, the first process to open the quarantine checks it; the others find
    it open, skip the check, and say so quietly (no false out-of-step alarm per worker)."""
    first = Quarantine(tmp_path / "var" / "quarantine")
    first.open()
    with capture_logs() as logs:
        await start_relay(policy=POLICY)
    events = [e["event"] for e in logs]
    assert "quarantine_check_skipped" in events and "quarantine_out_of_step" not in events
    first.close()


def test_repair_keeps_its_hands_off_while_another_process_has_the_quarantine_open(tmp_path) -> None:
    """A second worker may be between a file and its row right now: that file is no orphan."""
    busy = Quarantine(tmp_path / "q")
    busy.open()
    orphan, gone, _ = crash_leftovers(busy)
    starting = Quarantine(tmp_path / "q")
    assert starting.repair() == Repair(skipped=True)
    assert starting.audit() == ([orphan], [gone])  # untouched
    busy.close()
    assert starting.repair() == Repair([orphan], [gone], 1)
    assert starting.audit() == ([], [])
    starting.close()


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), capture_output=True, text=True, timeout=60)


@pytest.fixture
def small_fs(tmp_path) -> Iterator[Path]:
    """A real, small filesystem: an 8 MB ext4 image mounted through a loop device."""
    image, mnt = tmp_path / "fs.img", tmp_path / "mnt"
    mnt.mkdir()
    with open(image, "wb") as fh:
        fh.truncate(8 * 1024 * 1024)
    made = run("mkfs.ext4", "-q", "-F", "-m", "0", str(image))
    assert made.returncode == 0, made.stderr
    mounted = run("mount", "-o", "loop", str(image), str(mnt))
    if mounted.returncode != 0:
        pytest.skip(f"mounting a filesystem image is not permitted here: {mounted.stderr.strip()}")
    try:
        yield mnt
    finally:
        run("umount", str(mnt))


def fill(fs: Path, leave: int) -> Path:
    """Take all free space but `leave` bytes."""
    st = os.statvfs(fs)
    filler = fs / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        os.posix_fallocate(fd, 0, st.f_bfree * st.f_frsize - leave)
    finally:
        os.close(fd)
    return filler


async def test_quarantine_disk_full_answers_4xx_never_250(small_fs, start_relay, sink, tmp_path) -> None:
    """The quarantine on a filesystem that fills up: holds succeed while there is room, then
    every hold is answered 451 4.3.0 (the client keeps the message and retries); nothing that
    was answered 250 is missing; relaying is not affected; with room again, holds resume."""
    qdir = small_fs / "quarantine"
    relay = await start_relay({"quarantine": {"directory": str(qdir)}}, policy=POLICY)
    filler = fill(small_fs, leave=600_000)
    ledger = Ledger()
    held_ = [ledger.new("quarantine", size=100_000) for _ in range(12)]
    relayed = [ledger.new("relay", size=100_000) for _ in range(6)]
    await send_all(relay.port, ledger, held_ + relayed, workers=1, tries=1)
    first = [s.final[:9] for s in held_]
    assert HELD in first and UNAVAILABLE in first, first
    assert first.index(UNAVAILABLE) > 0 and all(s.final.startswith(RELAYED) for s in relayed)
    assert [p for p in (qdir / "msg").iterdir() if p.name.startswith(".")] == []  # no half-written files
    assert relay.quarantine.audit() == ([], [])

    filler.unlink()
    await send_all(relay.port, ledger, [s for s in held_ if not s.accepted], workers=1, tries=1)
    r = reconcile(ledger, sink, qdir)
    record("quarantine disk full (8 MB ext4 image, loop mount)", messages=r.messages, attempts=r.attempts,
           faults=first.count(UNAVAILABLE), accepted=r.accepted, held=r.held, lost=len(r.lost),
           duplicates=r.duplicate_copies)
    assert r.violations() == {}
    assert r.held == len(held_) and r.relayed == len(relayed)


@pytest.fixture
def read_only(tmp_path) -> Iterator[Callable[[Path], None]]:
    """Make a directory read-only for real: a read-only bind mount of it onto itself (EROFS for
    every new file, root included), undone at the end."""
    mounted: list[Path] = []

    def make(path: Path) -> None:
        done = run("mount", "--bind", str(path), str(path))
        if done.returncode != 0:
            pytest.skip(f"bind mounts are not permitted here: {done.stderr.strip()}")
        mounted.append(path)
        ro = run("mount", "-o", "remount,bind,ro", str(path))
        assert ro.returncode == 0, ro.stderr

    yield make
    for path in reversed(mounted):
        run("umount", str(path))


async def test_quarantine_read_only_answers_4xx_never_250(read_only, start_relay, sink, tmp_path) -> None:
    qdir = tmp_path / "var" / "quarantine"
    relay = await start_relay(policy=POLICY)
    ledger = Ledger()
    before = ledger.new("quarantine")
    await send_all(relay.port, ledger, [before], workers=1, tries=1)
    assert before.final.startswith(HELD)

    read_only(qdir)
    during = [ledger.new("quarantine") for _ in range(5)] + [ledger.new("relay")]
    await send_all(relay.port, ledger, during, workers=1, tries=1)
    assert [s.final[:9] for s in during] == [UNAVAILABLE] * 5 + [RELAYED]
    assert "Read-only file system" in during[0].final

    run("umount", str(qdir))
    await send_all(relay.port, ledger, during[:5], workers=1, tries=1)
    r = reconcile(ledger, sink, qdir)
    record("quarantine read-only (read-only bind mount)", messages=r.messages, attempts=r.attempts, faults=5,
           accepted=r.accepted, lost=len(r.lost), duplicates=r.duplicate_copies)
    assert r.violations() == {} and r.held == 6


async def test_quarantine_file_size_limit_answers_4xx(serve, sink, tmp_path) -> None:
    """Without mounting anything (so also where that is not permitted): the relay process runs
    under RLIMIT_FSIZE, so writing a held message larger than 1 MB fails with EFBIG, as a full
    disk fails a write. 451 4.3.0 for that one, smaller ones are held."""

    def limit_file_size() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (1024 * 1024, 1024 * 1024))

    relay = await serve(sink.url, None, POLICY, preexec=limit_file_size)
    ledger = Ledger()
    msgs = [ledger.new("quarantine", size=n) for n in (10_000, 2_000_000, 500_000, 3_000_000, 20_000)]
    await send_all(relay.port, ledger, msgs, workers=1, tries=1)
    assert [s.final[:9] for s in msgs] == [HELD, UNAVAILABLE, HELD, UNAVAILABLE, HELD]
    assert "File too large" in msgs[1].final
    assert await relay.stop() == 0
    r = reconcile(ledger, sink, tmp_path / "var" / "quarantine")
    record("quarantine write limit (RLIMIT_FSIZE on the serve process)", messages=r.messages, faults=2,
           accepted=r.accepted, lost=len(r.lost))
    assert r.violations() == {} and r.held == 3
