"""The SQLite schema, as numbered migrations applied in order on open (PRAGMA user_version).

Add a migration by appending to MIGRATIONS; never edit one that has shipped. A database with a
newer version than this code knows is refused rather than misread.
"""

from __future__ import annotations

import sqlite3

from proxy.store.base import StoreError

MIGRATIONS: tuple[str, ...] = (
    # 1: suppression, consent (append-only), sends, overrides, privacy-link ledger.
    """
    CREATE TABLE suppression (
        address     TEXT NOT NULL,        -- normalised (proxy.store.address)
        scope_kind  TEXT NOT NULL CHECK (scope_kind IN ('global', 'brand', 'list')),
        scope_value TEXT NOT NULL DEFAULT '',
        reason      TEXT NOT NULL CHECK (reason IN ('unsubscribe', 'complaint', 'manual', 'import')),
        source      TEXT NOT NULL DEFAULT '',
        created     REAL NOT NULL,
        PRIMARY KEY (address, scope_kind, scope_value)
    ) WITHOUT ROWID;

    CREATE TABLE consent (
        id            INTEGER PRIMARY KEY,
        address       TEXT NOT NULL,
        scope         TEXT NOT NULL,
        status        TEXT NOT NULL CHECK (status IN ('granted', 'withdrawn')),
        consented_at  REAL NOT NULL,
        source        TEXT NOT NULL,
        proof         TEXT NOT NULL DEFAULT '',
        recorded_at   REAL NOT NULL,
        superseded_by INTEGER
    );
    -- At most one current record per address and scope; the relay reads only these.
    CREATE UNIQUE INDEX consent_current ON consent (address, scope) WHERE superseded_by IS NULL;
    CREATE INDEX consent_address ON consent (address, id);
    -- The audit trail: records are never deleted, and the only change ever made to one is
    -- marking it superseded, once.
    CREATE TRIGGER consent_never_deleted BEFORE DELETE ON consent
    BEGIN SELECT RAISE(ABORT, 'consent records are never deleted'); END;
    CREATE TRIGGER consent_only_superseded BEFORE UPDATE ON consent
    WHEN OLD.superseded_by IS NOT NULL OR NEW.superseded_by IS NULL
      OR NEW.id IS NOT OLD.id OR NEW.address IS NOT OLD.address OR NEW.scope IS NOT OLD.scope
      OR NEW.status IS NOT OLD.status OR NEW.consented_at IS NOT OLD.consented_at
      OR NEW.source IS NOT OLD.source OR NEW.proof IS NOT OLD.proof OR NEW.recorded_at IS NOT OLD.recorded_at
    BEGIN SELECT RAISE(ABORT, 'consent records are never overwritten, only superseded'); END;

    -- One row per recipient of every accepted marketing message, for frequency caps.
    CREATE TABLE sends (
        address TEXT NOT NULL,
        at      REAL NOT NULL,
        brand   TEXT NOT NULL DEFAULT '',
        stream  TEXT NOT NULL DEFAULT ''
    );
    CREATE INDEX sends_lookup ON sends (address, at, brand, stream);
    CREATE INDEX sends_at ON sends (at);

    CREATE TABLE frequency_override (
        address     TEXT NOT NULL,
        scope_kind  TEXT NOT NULL CHECK (scope_kind IN ('global', 'brand', 'stream')),
        scope_value TEXT NOT NULL DEFAULT '',
        max_count   INTEGER NOT NULL CHECK (max_count >= 0),
        window      REAL NOT NULL CHECK (window > 0),
        source      TEXT NOT NULL DEFAULT '',
        set_at      REAL NOT NULL,
        PRIMARY KEY (address, scope_kind, scope_value)
    ) WITHOUT ROWID;

    CREATE TABLE privacy_link (
        sender_domain TEXT NOT NULL,
        url           TEXT NOT NULL,
        first_sent    REAL NOT NULL,
        last_sent     REAL NOT NULL,
        messages      INTEGER NOT NULL,
        PRIMARY KEY (sender_domain, url)
    ) WITHOUT ROWID;
    CREATE INDEX privacy_link_last ON privacy_link (last_sent);
    """,
    # 2: dead privacy links found by `links check`; delivered and complaint counts per sender
    # domain, brand and hour (the complaint-rate guard).
    """
    CREATE TABLE privacy_link_dead (
        sender_domain TEXT NOT NULL,
        url           TEXT NOT NULL,      -- normalised (proxy/message/urls.normalise_url)
        since         REAL NOT NULL,
        checked_at    REAL NOT NULL,
        reason        TEXT NOT NULL DEFAULT '',
        PRIMARY KEY (sender_domain, url)
    ) WITHOUT ROWID;

    CREATE TABLE sender_counts (
        sender_domain TEXT NOT NULL,
        brand         TEXT NOT NULL DEFAULT '',
        hour          INTEGER NOT NULL,   -- unix time // 3600
        delivered     INTEGER NOT NULL DEFAULT 0,
        complaints    INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (sender_domain, brand, hour)
    ) WITHOUT ROWID;
    CREATE INDEX sender_counts_hour ON sender_counts (hour);
    """,
)
SCHEMA_VERSION = len(MIGRATIONS)


def migrate(db: sqlite3.Connection) -> int:
    """Bring the schema to SCHEMA_VERSION in one transaction; return the version found."""
    db.execute("BEGIN IMMEDIATE")
    try:
        found = int(db.execute("PRAGMA user_version").fetchone()[0])
        if found > SCHEMA_VERSION:
            raise StoreError(f"the store has schema version {found}, newer than this sendwarden knows ({SCHEMA_VERSION}); upgrade sendwarden")
        for number in range(found + 1, SCHEMA_VERSION + 1):
            for statement in _statements(MIGRATIONS[number - 1]):
                db.execute(statement)
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise
    return found


def _statements(script: str) -> list[str]:
    """Split a script into statements (executescript would commit our transaction)."""
    out, buf = [], ""
    for line in script.splitlines(keepends=True):
        if line.strip().startswith("--"):
            continue
        buf += line
        if sqlite3.complete_statement(buf):
            out.append(buf.strip())
            buf = ""
    if buf.strip():
        out.append(buf.strip())
    return out
