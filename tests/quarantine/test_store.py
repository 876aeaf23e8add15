"""The quarantine store itself: permissions, schema migration, exactly-once claims, stuck
releases."""

from __future__ import annotations

import json
import sqlite3
import stat
import threading
import time
from pathlib import Path

import pytest

from proxy.quarantine.files import Held, Quarantine, QuarantineError
from proxy.quarantine.schema import SCHEMA_VERSION
from tests.support.quarantine_env import PLAIN, make_env

HELD = Held(stream="marketing", mail_from="news@shop.example.com", rcpts=[{"address": "r@example.org", "dsn": {}}],
            mail_dsn={}, smtputf8=False, client="127.0.0.1", auth_user=None, subject="Big sale",
            findings=[{"rule": "unsubscribe.header_missing", "action": "quarantine", "detail": "no List-Unsubscribe header"}],
            queue_id="ABC", helo="app.example.com", proto="ESMTPS")


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


async def test_relay_and_cli_keep_the_quarantine_private(tmp_path, start_relay, sink, cli_env) -> None:
    env = await make_env(tmp_path, start_relay, sink, cli_env)
    hold_id = await env.send("news@shop.example.com", ["reader@example.org"], PLAIN)
    r = await env.cli("quarantine", "release", hold_id)
    assert r.code == 0
    q = env.qdir
    assert mode(q) == 0o700 and mode(q / "msg") == 0o700
    files = [q / "index.sqlite3", q / "index.sqlite3-wal", q / "index.sqlite3-shm", q / "msg" / f"{hold_id}.eml"]
    for f in files:
        assert f.exists() and mode(f) == 0o600, (f, oct(mode(f)))


def test_a_v1_index_is_migrated(tmp_path: Path) -> None:
    qdir = tmp_path / "q"
    (qdir / "msg").mkdir(parents=True)
    db = sqlite3.connect(qdir / "index.sqlite3")
    from proxy.quarantine.schema import _V1

    db.executescript(_V1)
    db.execute(
        "INSERT INTO held (id, created, stream, mail_from, rcpts, mail_dsn, smtputf8, client, auth_user, subject,"
        " findings, size, queue_id) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
        ("0" * 24, time.time(), "marketing", "a@b.example", json.dumps([{"address": "x@y.example", "dsn": {}}] * 2),
         "{}", 0, "127.0.0.1", None, "s", "[]", 10, "Q1"),
    )
    db.execute("PRAGMA user_version=1")
    db.commit()
    db.close()
    q = Quarantine(qdir)
    q.open()
    row = q.get("0" * 24)
    assert row is not None and row["rcpt_count"] == 2 and row["helo"] == "" and row["claim_token"] is None
    assert q.db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert q.claim("0" * 24, "ops") is not None
    q.close()
    q.open()  # opening again changes nothing
    q.close()


def test_a_newer_index_is_refused(tmp_path: Path) -> None:
    q = Quarantine(tmp_path / "q")
    q.open()
    q.db.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    q.close()
    with pytest.raises(QuarantineError, match="schema version"):
        Quarantine(tmp_path / "q").open()


def test_one_claim_wins_among_many(tmp_path: Path) -> None:
    q = Quarantine(tmp_path / "q")
    q.open()
    hold_id = q.hold_sync(b"Subject: x\r\n\r\nbody\r\n", HELD)
    stores = [Quarantine(tmp_path / "q") for _ in range(8)]  # separate connections, as separate processes
    for s in stores:
        s.open()
    tokens: list[str | None] = []
    barrier = threading.Barrier(len(stores))

    def take(s: Quarantine) -> None:
        barrier.wait()
        tokens.append(s.claim(hold_id, "op"))

    threads = [threading.Thread(target=take, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    won = [t for t in tokens if t]
    assert len(won) == 1
    assert not q.settle(hold_id, "not-the-token", "op", "", "250 ok")  # only the holder settles
    assert q.settle(hold_id, won[0], "op", "why", "250 ok")
    assert q.get(hold_id)["status"] == "released"  # type: ignore[index]
    assert q.claim(hold_id, "op") is None
    for s in [q, *stores]:
        s.close()


def test_ids_never_become_paths(tmp_path: Path) -> None:
    q = Quarantine(tmp_path / "q")
    q.open()
    (tmp_path / "secret.eml").write_bytes(b"secret")
    for bad in ("../secret", "../../secret", "/etc/passwd", "0" * 23 + ".", "A" * 24):
        with pytest.raises(QuarantineError, match="not a quarantine id"):
            q.raw(bad)
        with pytest.raises(QuarantineError):
            q.get(bad)
        with pytest.raises(QuarantineError):
            q.delete(bad, "op", "")
    assert (tmp_path / "secret.eml").exists()


async def test_a_stuck_release_is_reported_and_can_be_retried(tmp_path, start_relay, sink, cli_env) -> None:
    env = await make_env(tmp_path, start_relay, sink, cli_env)
    hold_id = await env.send("news@shop.example.com", ["reader@example.org"], PLAIN)
    with env.db() as db:  # a release that started an hour ago and died before it finished
        db.execute("UPDATE held SET status='releasing', claim_token='dead', claimed_at=?, claimed_by='mallory' WHERE id=?",
                   (time.time() - 3600, hold_id))
    r = await env.cli("quarantine", "release", hold_id)
    assert r.code == 13 and "STUCK" in r.err and "mallory" in r.err and "--retry-stale" in r.err
    assert sink.received == []
    d = await env.cli("quarantine", "delete", hold_id)
    assert d.code == 13 and "being released" in d.err
    p = await env.cli("quarantine", "purge", "--older-than", "1s")
    assert hold_id not in p.out  # a release in flight is never purged
    ok = await env.cli("quarantine", "release", hold_id, "--retry-stale")
    assert ok.code == 0 and len(sink.received) == 1 and env.status(hold_id) == "released"


def test_purge_removes_old_stray_files_only(tmp_path: Path) -> None:
    q = Quarantine(tmp_path / "q")
    q.open()
    old_stray = q.msg_dir / ("%012x" % int((time.time() - 40 * 86400) * 1000) + "0" * 12 + ".eml")
    new_stray = q.msg_dir / ("%012x" % int(time.time() * 1000) + "1" * 12 + ".eml")
    old_stray.write_bytes(b"x")
    new_stray.write_bytes(b"x")
    rows, files = q.purge(time.time() - 30 * 86400, dry_run=True)
    assert rows == [] and files == [old_stray.name] and old_stray.exists()
    q.purge(time.time() - 30 * 86400)
    assert not old_stray.exists() and new_stray.exists()
