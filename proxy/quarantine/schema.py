"""The quarantine index's schema and its migrations, keyed on SQLite's `PRAGMA user_version`.

Version 1 is the relay's first store. Each later version is a list of statements applied in one
`BEGIN IMMEDIATE` transaction, so that the relay and a reviewer's command opening the same index
at the same time migrate it once. An index newer than this code is refused rather than guessed at.
"""

from __future__ import annotations

import sqlite3

SCHEMA_VERSION = 2

_V1 = """
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

# Version 2: what a release needs to write the trace header of the original hop (helo, protocol),
# the release claim (status 'releasing' with a token), deletion, a recipient count that outlives
# the addresses, and a history of what people did to each message.
_V2 = [
    "ALTER TABLE held ADD COLUMN helo TEXT NOT NULL DEFAULT ''",
    "ALTER TABLE held ADD COLUMN proto TEXT NOT NULL DEFAULT ''",
    "ALTER TABLE held ADD COLUMN rcpt_count INTEGER NOT NULL DEFAULT 0",
    "UPDATE held SET rcpt_count = json_array_length(rcpts)",
    "ALTER TABLE held ADD COLUMN claim_token TEXT",
    "ALTER TABLE held ADD COLUMN claimed_at REAL",
    "ALTER TABLE held ADD COLUMN claimed_by TEXT",
    "ALTER TABLE held ADD COLUMN deleted_at REAL",
    "ALTER TABLE held ADD COLUMN deleted_by TEXT",
    "ALTER TABLE held ADD COLUMN delete_reason TEXT",
    """CREATE TABLE events (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        hold_id TEXT NOT NULL,
        at REAL NOT NULL,
        event TEXT NOT NULL,
        actor TEXT NOT NULL,
        detail TEXT NOT NULL DEFAULT ''
    )""",
    "CREATE INDEX events_hold ON events (hold_id, seq)",
]

MIGRATIONS: dict[int, list[str]] = {2: _V2}


class SchemaError(Exception):
    """The index cannot be brought to this code's schema."""


def migrate(db: sqlite3.Connection) -> None:
    """Create the index, or bring an older one up to SCHEMA_VERSION. Safe to race."""
    db.executescript(_V1)
    if int(db.execute("PRAGMA user_version").fetchone()[0]) == SCHEMA_VERSION:
        return
    db.execute("BEGIN IMMEDIATE")
    try:
        version = int(db.execute("PRAGMA user_version").fetchone()[0])
        if version > SCHEMA_VERSION:
            raise SchemaError(f"the quarantine index has schema version {version}; this sendwarden knows up to {SCHEMA_VERSION}")
        for target in range(max(version, 1) + 1, SCHEMA_VERSION + 1):
            for statement in MIGRATIONS[target]:
                db.execute(statement)
        db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise
