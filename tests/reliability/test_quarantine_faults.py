"""The quarantine under faults: a 250 2.6.0 only ever means the message is on disk and indexed;
when the disk is full or read-only the client is told 4xx; after a crash the start-up check
brings index and files back in step and says what it did."""

from __future__ import annotations

import aiosmtplib
import pytest
from structlog.testing import capture_logs

from proxy.quarantine import Held, Quarantine, QuarantineError, Repair, new_id
from tests.reliability.harness import POLICY, SENDER, make_message


async def send_one(port: int, data: bytes) -> tuple[int, str]:
    client = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, start_tls=False, timeout=20)
    await client.connect()
    try:
        _, text = await client.sendmail(SENDER, ["reader@example.org"], data)
        return 250, text
    except aiosmtplib.SMTPResponseException as exc:
        return exc.code, exc.message
    finally:
        client.close()


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
    code, _ = await send_one(relay.port, make_message("<after@repair.test>", "quarantine"))
    assert code == 250 and relay.quarantine.count() == 2


async def test_a_clean_quarantine_starts_without_a_word(start_relay) -> None:
    with capture_logs() as logs:
        await start_relay(policy=POLICY)
    assert not [e for e in logs if e["event"] == "quarantine_out_of_step"]


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
