"""The quarantine under faults: a 250 2.6.0 only ever means the message is on disk and indexed;
when the disk is full or read-only the client is told 4xx; after a crash the start-up check
brings index and files back in step and says what it did."""

from __future__ import annotations

import pytest

from proxy.quarantine import Held, Quarantine, QuarantineError


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
