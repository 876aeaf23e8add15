"""The PostgreSQL schema, as numbered migrations per component, applied on open under an
advisory lock so that a fleet of relays started at once migrates the database exactly once.

The version of each component (the recipient store, the shared quarantine) is one row of
`sendwarden_schema`. Add a migration by appending to a component's list; never edit one that
has shipped. A database newer than this code is refused rather than misread.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from proxy.store.base import StoreError

if TYPE_CHECKING:
    import asyncpg

# pg_advisory_xact_lock key: "sendwarden" in ASCII, folded into a bigint. Any fixed number works,
# as long as every node uses the same one.
LOCK_KEY = 0x73656E6477617264

STORE: tuple[str, ...] = (
    # 1: the same tables and rules as the SQLite store (proxy/store/sqlite_schema.py).
    """
    CREATE TABLE suppression (
        address     text NOT NULL,
        scope_kind  text NOT NULL CHECK (scope_kind IN ('global', 'brand', 'list')),
        scope_value text NOT NULL DEFAULT '',
        reason      text NOT NULL CHECK (reason IN ('unsubscribe', 'complaint', 'manual', 'import')),
        source      text NOT NULL DEFAULT '',
        created     double precision NOT NULL,
        PRIMARY KEY (address, scope_kind, scope_value)
    );

    CREATE SEQUENCE consent_id;
    CREATE TABLE consent (
        id            bigint PRIMARY KEY,
        address       text NOT NULL,
        scope         text NOT NULL,
        status        text NOT NULL CHECK (status IN ('granted', 'withdrawn')),
        consented_at  double precision NOT NULL,
        source        text NOT NULL,
        proof         text NOT NULL DEFAULT '',
        recorded_at   double precision NOT NULL,
        superseded_by bigint
    );
    CREATE UNIQUE INDEX consent_current ON consent (address, scope) WHERE superseded_by IS NULL;
    CREATE INDEX consent_address ON consent (address, id);
    -- The audit trail: never deleted; the only change ever made is marking a record superseded, once.
    CREATE FUNCTION consent_guard() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP IN ('DELETE', 'TRUNCATE') THEN
            RAISE EXCEPTION 'consent records are never deleted';
        END IF;
        IF OLD.superseded_by IS NOT NULL OR NEW.superseded_by IS NULL
           OR (NEW.id, NEW.address, NEW.scope, NEW.status, NEW.consented_at, NEW.source, NEW.proof, NEW.recorded_at)
              IS DISTINCT FROM
              (OLD.id, OLD.address, OLD.scope, OLD.status, OLD.consented_at, OLD.source, OLD.proof, OLD.recorded_at) THEN
            RAISE EXCEPTION 'consent records are never overwritten, only superseded';
        END IF;
        RETURN NEW;
    END $$;
    CREATE TRIGGER consent_append_only BEFORE UPDATE OR DELETE ON consent
        FOR EACH ROW EXECUTE FUNCTION consent_guard();
    CREATE TRIGGER consent_no_truncate BEFORE TRUNCATE ON consent
        FOR EACH STATEMENT EXECUTE FUNCTION consent_guard();

    -- One row per recipient of every accepted marketing message: counting is an INSERT, so
    -- nodes never lose each other's counts.
    CREATE TABLE sends (
        address text NOT NULL,
        at      double precision NOT NULL,
        brand   text NOT NULL DEFAULT '',
        stream  text NOT NULL DEFAULT ''
    );
    CREATE INDEX sends_lookup ON sends (address, at) INCLUDE (brand, stream);
    CREATE INDEX sends_at ON sends (at);

    CREATE TABLE frequency_override (
        address     text NOT NULL,
        scope_kind  text NOT NULL CHECK (scope_kind IN ('global', 'brand', 'stream')),
        scope_value text NOT NULL DEFAULT '',
        max_count   integer NOT NULL CHECK (max_count >= 0),
        "window"    double precision NOT NULL CHECK ("window" > 0),
        source      text NOT NULL DEFAULT '',
        set_at      double precision NOT NULL,
        PRIMARY KEY (address, scope_kind, scope_value)
    );

    CREATE TABLE privacy_link (
        sender_domain text NOT NULL,
        url           text NOT NULL,
        first_sent    double precision NOT NULL,
        last_sent     double precision NOT NULL,
        messages      integer NOT NULL,
        PRIMARY KEY (sender_domain, url)
    );
    CREATE INDEX privacy_link_last ON privacy_link (last_sent);
    """,
    # 2: rate-limit token buckets shared by the fleet (proxy/smtp/ratelimit_pg.py); key is
    # limit, kind, traffic class and key joined by U+001F.
    """
    CREATE TABLE rate_bucket (
        key    text PRIMARY KEY,
        tokens double precision NOT NULL,
        stamp  double precision NOT NULL
    );
    """,
    # 3: dead privacy links and complaint-rate counts (as SQLite's migration 2): shared by the
    # fleet, counted by upsert-increment so that nodes never lose each other's counts.
    """
    CREATE TABLE privacy_link_dead (
        sender_domain text NOT NULL,
        url           text NOT NULL,
        since         double precision NOT NULL,
        checked_at    double precision NOT NULL,
        reason        text NOT NULL DEFAULT '',
        PRIMARY KEY (sender_domain, url)
    );

    CREATE TABLE sender_counts (
        sender_domain text NOT NULL,
        brand         text NOT NULL DEFAULT '',
        hour          bigint NOT NULL,
        delivered     bigint NOT NULL DEFAULT 0,
        complaints    bigint NOT NULL DEFAULT 0,
        PRIMARY KEY (sender_domain, brand, hour)
    );
    CREATE INDEX sender_counts_hour ON sender_counts (hour);
    """,
)

QUARANTINE: tuple[str, ...] = (
    # 1: the shared quarantine (proxy/quarantine/pg.py): the columns of the local index
    # (proxy/quarantine/schema.py, version 2), the bytes beside them, and the history.
    """
    CREATE TABLE quarantine_held (
        id text PRIMARY KEY,
        created double precision NOT NULL,
        status text NOT NULL DEFAULT 'held' CHECK (status IN ('held', 'releasing', 'released', 'deleted')),
        stream text NOT NULL,
        mail_from text NOT NULL,
        rcpts text NOT NULL,
        mail_dsn text NOT NULL,
        smtputf8 integer NOT NULL,
        client text NOT NULL,
        auth_user text,
        subject text NOT NULL,
        findings text NOT NULL,
        size integer NOT NULL,
        queue_id text NOT NULL,
        released_at double precision,
        released_by text,
        release_reason text,
        upstream_reply text,
        helo text NOT NULL DEFAULT '',
        proto text NOT NULL DEFAULT '',
        rcpt_count integer NOT NULL DEFAULT 0,
        claim_token text,
        claimed_at double precision,
        claimed_by text,
        deleted_at double precision,
        deleted_by text,
        delete_reason text
    );
    CREATE INDEX quarantine_held_created ON quarantine_held (created);
    CREATE INDEX quarantine_held_status ON quarantine_held (status, created);
    CREATE TABLE quarantine_message (
        id text PRIMARY KEY REFERENCES quarantine_held (id) ON DELETE CASCADE,
        raw bytea NOT NULL
    );
    CREATE TABLE quarantine_events (
        seq bigserial PRIMARY KEY,
        hold_id text NOT NULL,
        at double precision NOT NULL,
        event text NOT NULL,
        actor text NOT NULL,
        detail text NOT NULL DEFAULT ''
    );
    CREATE INDEX quarantine_events_hold ON quarantine_events (hold_id, seq);
    """,
)


async def migrate(db: "asyncpg.Connection", component: str, migrations: tuple[str, ...]) -> int:
    """Bring `component` to len(migrations) in one transaction under the advisory lock; return
    the version found. Every node runs this on start; all but the first find nothing to do."""
    async with db.transaction():
        await db.execute("SELECT pg_advisory_xact_lock($1)", LOCK_KEY)
        await db.execute("CREATE TABLE IF NOT EXISTS sendwarden_schema (component text PRIMARY KEY,"
                         " version integer NOT NULL, migrated_at timestamptz NOT NULL DEFAULT now())")
        found = await db.fetchval("SELECT version FROM sendwarden_schema WHERE component = $1", component) or 0
        latest = len(migrations)
        if found > latest:
            raise StoreError(f"the database has {component} schema version {found}, newer than this sendwarden knows"
                             f" ({latest}); upgrade sendwarden")
        for number in range(found + 1, latest + 1):
            await db.execute(migrations[number - 1])
        if found < latest:
            await db.execute("INSERT INTO sendwarden_schema (component, version) VALUES ($1, $2) ON CONFLICT (component)"
                             " DO UPDATE SET version = excluded.version, migrated_at = now()", component, latest)
    return int(found)
