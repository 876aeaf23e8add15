"""Verdicts end to end: reject with rule IDs, quarantine on disk before 250, monitor relays with
a tag, streams pick the rules."""

from __future__ import annotations

import json
import os
import stat

import structlog

from proxy.quarantine.files import Quarantine
from proxy.replies import Replies
from tests.conftest import ROOT
from tests.support.smtpclient import enhanced, send_one

PLAIN = (ROOT / "examples" / "plain.eml").read_bytes().replace(b"\n", b"\r\n")
QUARANTINE_UNSUBSCRIBE = '[actions]\n"unsubscribe.*" = "quarantine"\n'
REFUSED, HELD, RELAYED = Replies.policy_reject([], ""), Replies.quarantined(""), Replies.relayed("", "")


async def test_rejected_message_names_its_rules(start_relay, sink) -> None:
    relay = await start_relay()
    code, text = await send_one(relay.port, PLAIN)
    assert (code, enhanced(text)) == (REFUSED.code, REFUSED.enhanced) and "[unsubscribe.header_missing]" in text
    assert sink.received == []


async def test_quarantined_message_is_on_disk_when_250_arrives(start_relay, sink) -> None:
    relay = await start_relay(policy=QUARANTINE_UNSUBSCRIBE)
    code, text = await send_one(relay.port, PLAIN)
    assert (code, enhanced(text)) == (HELD.code, HELD.enhanced)
    hold_id = text.rsplit("id=", 1)[1].split()[0]
    q = Quarantine(relay.config.quarantine_dir)
    assert q.raw(hold_id) == PLAIN
    row = q.get(hold_id)
    assert row["status"] == "held" and json.loads(row["rcpts"])[0]["address"] == "reader@example.org"
    assert [f["rule"] for f in json.loads(row["findings"])] == ["unsubscribe.header_missing"]
    assert sink.received == []
    # Personal data: the directory and the files are for the service user only.
    assert stat.S_IMODE(os.stat(relay.config.quarantine_dir).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(q.path_of(hold_id)).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(relay.config.quarantine_dir / "index.sqlite3").st_mode) == 0o600
    q.close()


async def test_quarantine_on_a_read_only_disk_answers_451(start_relay, sink) -> None:
    relay = await start_relay(policy=QUARANTINE_UNSUBSCRIBE)
    msg_dir = relay.config.quarantine_dir / "msg"
    msg_dir.chmod(0o500)
    try:
        if os.access(msg_dir, os.W_OK):  # root ignores permissions: make the write fail another way
            msg_dir.chmod(0o700)
            os.rename(msg_dir, str(msg_dir) + ".moved")
            msg_dir.write_bytes(b"not a directory")
        code, text = await send_one(relay.port, PLAIN)
    finally:
        if msg_dir.is_file():
            msg_dir.unlink()
            os.rename(str(msg_dir) + ".moved", msg_dir)
        msg_dir.chmod(0o700)
    unavailable = Replies.store_unavailable("")
    assert (code, enhanced(text)) == (unavailable.code, unavailable.enhanced)


async def test_monitor_mode_relays_with_a_findings_header(start_relay, sink) -> None:
    relay = await start_relay(monitor=True)
    with structlog.testing.capture_logs() as logs:
        code, _ = await send_one(relay.port, PLAIN)
    assert code == RELAYED.code
    [got] = sink.received
    head = got.data.split(b"\r\n\r\n")[0]
    assert b"X-Sendwarden-Findings: monitor would reject; unsubscribe.header_missing" in head
    [record] = [e for e in logs if e["event"] == "message"]
    assert record["action"] == "relay" and record["verdict"] == "reject" and record["monitor"] is True
    assert record["rules"] == ["unsubscribe.header_missing"]


async def test_transactional_stream_skips_marketing_rules(start_relay, sink) -> None:
    policy = '[streams.transactional]\nkind = "transactional"\nsenders = ["@receipts.shop.example.com"]\n'
    relay = await start_relay(policy=policy)
    code, text = await send_one(relay.port, PLAIN, sender="order-42@receipts.shop.example.com")
    assert (code, enhanced(text)) == (RELAYED.code, RELAYED.enhanced) and "relayed" in text
    # The same message on the (default) marketing stream lacks its unsubscribe headers; this
    # policy names no actions, so its default action (quarantine) applies.
    code, text = await send_one(relay.port, PLAIN)
    assert (code, enhanced(text)) == (HELD.code, HELD.enhanced)


async def test_audit_line_hashes_addresses(start_relay, sink) -> None:
    relay = await start_relay()
    with structlog.testing.capture_logs() as logs:
        await send_one(relay.port, PLAIN)
    [record] = [e for e in logs if e["event"] == "message"]
    assert record["rcpts"][0].startswith("h:") and "reader" not in json.dumps(record)
    assert record["sender"].startswith("h:")
    for key in ("queue_id", "client", "stream", "action", "rules", "reply", "total_ms", "policy_ms"):
        assert key in record


async def test_audit_line_in_clear_when_configured(start_relay, sink) -> None:
    relay = await start_relay({"audit": {"addresses": "clear"}})
    with structlog.testing.capture_logs() as logs:
        await send_one(relay.port, PLAIN)
    [record] = [e for e in logs if e["event"] == "message"]
    assert record["rcpts"] == ["reader@example.org"]
