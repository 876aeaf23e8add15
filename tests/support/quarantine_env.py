"""Shared set-up for the quarantine review tests: a policy that holds messages, a config file
the CLI reads (the same state directory and upstream as the in-process relay), messages sent
through the real relay with aiosmtplib, and the CLI run as a subprocess without blocking the
test's event loop (which serves the sink)."""

from __future__ import annotations

import asyncio
import json
import re
import sqlite3
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiosmtplib

from tests.conftest import ROOT, SENDWARDEN

HOLDING_POLICY = """
[policy]
default_action = "quarantine"
[streams.transactional]
kind = "transactional"
senders = ["@receipts.example.com"]
[streams.marketing]
kind = "marketing"
[actions]
"unsubscribe.*" = "quarantine"
"subject.*" = "quarantine"
"sender.*" = "reject"
"""

LENIENT_POLICY = """
[policy]
default_action = "relay"
[actions]
"*" = "relay"
"""

COMPLIANT = (ROOT / "examples" / "compliant.eml").read_bytes().replace(b"\n", b"\r\n")
PLAIN = (ROOT / "examples" / "plain.eml").read_bytes().replace(b"\n", b"\r\n")
HTML_NO_SUBJECT = (
    b"From: Billing <billing@receipts.example.com>\r\n"
    b"To: alice@example.net, bob@example.net\r\n"
    b"Subject: \r\n"
    b"Date: Sun, 29 Nov 2026 09:00:00 +0000\r\n"
    b"Message-ID: <receipt-42@receipts.example.com>\r\n"
    b"MIME-Version: 1.0\r\n"
    b"Content-Type: multipart/mixed; boundary=zz\r\n\r\n"
    b"--zz\r\nContent-Type: text/html; charset=utf-8\r\n\r\n"
    b"<html><head><style>p{color:red}</style></head><body><h1>Your receipt</h1>"
    b"<p>Dear alice@example.net, thanks.</p><ul><li>One item</li></ul>"
    b"<p><a href=\"https://receipts.example.com/r?to=alice%40example.net\">View online</a></p>"
    b"<script>evil()</script></body></html>\r\n"
    b"--zz\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment; filename=receipt.pdf\r\n"
    b"Content-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQKJcfsj6IKMSAwIG9iago=\r\n"
    b"--zz--\r\n"
)


def config_toml(tmp_path: Path, upstream: str, policy: Path, extra: str = "", store: str = "") -> str:
    top = f'store = "{store}"' if store else ""
    return f"""{top}
hostname = "relay.test"
state_dir = "{tmp_path / 'var'}"
policy = "{policy}"
[[listeners]]
name = "default"
address = "127.0.0.1:0"
[recipients]
verify_domains = false
[upstream]
url = "{upstream}"
pool_size = 2
[timeouts]
upstream_connect = 3
upstream_command = 3
upstream_data = 5
policy = 3
shutdown = 5
[tls]
dev_cert = false
{extra}
"""


@dataclass
class Run:
    code: int
    out: str
    err: str

    def events(self) -> list[dict[str, Any]]:
        """The structlog JSON lines the command wrote to stderr."""
        return [json.loads(line) for line in self.err.splitlines() if line.startswith("{")]


class QEnv:
    """The relay, its CLI config and ways to look at the quarantine's storage: the local
    directory (SQLite index, one file per message) or, with `store`, the shared PostgreSQL one."""

    def __init__(self, tmp_path: Path, relay: Any, sink: Any, env: dict[str, str], config: Path, store: str = "") -> None:
        self.tmp_path = tmp_path
        self.relay = relay
        self.sink = sink
        self.env = env
        self.config = config
        self.store = store
        self.qdir = tmp_path / "var" / "quarantine"

    def sql(self, statement: str, *args: Any) -> list[Any]:
        """One statement on the index (SQLite `?` placeholders, table names of the local index)."""
        if not self.store:
            with self.db() as db:
                return db.execute(statement, args).fetchall()
        from proxy.quarantine.pg import numbered
        from tests.support.pgdb import admin_sync

        for local, shared in (("FROM held", "FROM quarantine_held"), ("UPDATE held", "UPDATE quarantine_held"),
                              ("FROM events", "FROM quarantine_events")):
            statement = statement.replace(local, shared)
        rows = admin_sync(numbered(statement), *args, database=self.store.rsplit("/", 1)[1])
        return [tuple(r) for r in rows]

    def stored(self, hold_id: str) -> bytes | None:
        """The held message's bytes as stored, or None when they are gone."""
        if not self.store:
            path = self.qdir / "msg" / f"{hold_id}.eml"
            return path.read_bytes() if path.exists() else None
        rows = self.sql("SELECT raw FROM quarantine_message WHERE id = ?", hold_id)
        return bytes(rows[0][0]) if rows else None

    def stored_count(self) -> int:
        if not self.store:
            return len(list((self.qdir / "msg").iterdir()))
        return int(self.sql("SELECT count(*) FROM quarantine_message")[0][0])

    async def send(self, sender: str, rcpts: list[str], data: bytes, **options: Any) -> str:
        """Send through the relay; return the quarantine ID from the 250 2.6.0 reply."""
        client = aiosmtplib.SMTP(hostname="127.0.0.1", port=self.relay.port, start_tls=False)
        await client.connect()
        try:
            errors, text = await client.sendmail(sender, rcpts, data, **options)
        finally:
            await client.quit()
        assert errors == {}
        m = re.search(r"held for review id=([0-9a-f]{24})", text)
        assert m, text
        return m.group(1)

    async def cli(self, *args: str, config: Path | None = None, timeout: float = 60, stdin: bytes | None = None) -> Run:
        """`sendwarden ARGS --config FILE` as a subprocess; the loop keeps serving the sink."""
        proc = await asyncio.create_subprocess_exec(
            *SENDWARDEN, *args, "--config", str(config or self.config), env=self.env, cwd=self.tmp_path,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        )
        out, err = await asyncio.wait_for(proc.communicate(stdin), timeout)
        run = Run(proc.returncode or 0, out.decode("utf-8", "replace"), err.decode("utf-8", "replace"))
        assert "Traceback" not in run.err, run.err
        return run

    def db(self) -> sqlite3.Connection:
        return sqlite3.connect(self.qdir / "index.sqlite3")

    def status(self, hold_id: str) -> str:
        return self.sql("SELECT status FROM held WHERE id = ?", hold_id)[0][0]


async def make_env(tmp_path: Path, start_relay: Any, sink: Any, cli_env: dict[str, str], extra: str = "",
                   relay_extra: dict[str, Any] | None = None, store: str = "") -> QEnv:
    """The relay and the CLI's config; with `store` (a postgresql:// URL) both use the shared
    quarantine in that database."""
    policy = tmp_path / "holding.toml"
    policy.write_text(HOLDING_POLICY, encoding="utf-8")
    config = tmp_path / "sendwarden.toml"
    config.write_text(config_toml(tmp_path, sink.url, policy, extra, store), encoding="utf-8")
    if store:
        relay_extra = {**(relay_extra or {}), "store": store}
    relay = await start_relay(relay_extra, policy=policy)
    return QEnv(tmp_path, relay, sink, cli_env, config, store)


PY = sys.executable
