"""Recipient state enforced at RCPT time through the real relay: a refused recipient gets its
own reply while the others in the same transaction go through to the real sink."""

from __future__ import annotations

import asyncio
import time

import aiosmtplib
import pytest

from proxy.replies import Replies
from proxy.store import GLOBAL, ConsentRecord, Scope, Suppression
from tests.support.recipient_helpers import COMPLIANT, SENDER, policy, send
from tests.support.smtpclient import RawClient, enhanced

DAY = 86400.0
# A recipient refused or deferred at RCPT by the policy; a store that cannot answer; a relayed message.
REFUSED, DEFERRED = Replies.recipient_refused("", ""), Replies.recipient_deferred("", "")
UNAVAILABLE, RELAYED = Replies.store_unavailable(""), Replies.relayed("", "")



@pytest.fixture(params=["sqlite", "postgresql"])
def start_relay(request: pytest.FixtureRequest, start_relay):
    """The conftest relay, with its recipient store in SQLite (the default) or PostgreSQL."""
    if request.param == "sqlite":
        return start_relay
    url = request.getfixturevalue("pg_url")

    async def start(extra=None, *args, **kwargs):
        return await start_relay({**(extra or {}), "store": url}, *args, **kwargs)

    start.pg_url = url  # type: ignore[attr-defined]
    return start


async def consent(relay, *addresses: str, scope: str = "shop") -> None:
    await relay.store.add_consent([ConsentRecord(a, scope, time.time() - DAY, "signup-form", f"form-{a}") for a in addresses], time.time())


async def test_refused_recipients_get_their_own_reply_and_the_rest_go_through(start_relay, sink) -> None:
    relay = await start_relay(policy=policy())
    await consent(relay, "ok1@example.org", "ok2@example.org", "suppressed@example.org", "capped@example.org")
    await consent(relay, "elsewhere@example.org", scope="partner")
    await relay.store.suppress([Suppression("suppressed@example.org", GLOBAL, "unsubscribe", "one-click", time.time() - DAY)])
    await relay.store.record_sends(["capped@example.org"] * 2, "shop", "marketing", time.time() - DAY)

    rcpts = ["ok1@example.org", "Suppressed+Tag@Example.ORG", "nobody@example.org", "elsewhere@example.org",
             "capped@example.org", "ok2@example.org"]
    errors, text = await send(relay, rcpts)
    assert enhanced(text) == RELAYED.enhanced and "relayed" in text
    assert set(errors) == {"Suppressed+Tag@Example.ORG", "nobody@example.org", "elsewhere@example.org", "capped@example.org"}
    code, msg = errors["Suppressed+Tag@Example.ORG"]
    assert (code, enhanced(msg)) == (REFUSED.code, REFUSED.enhanced) and "[optout.suppressed]" in msg and "unsubscribe" in msg
    code, msg = errors["nobody@example.org"]
    assert code == REFUSED.code and "[consent.missing]" in msg
    code, msg = errors["elsewhere@example.org"]
    assert code == REFUSED.code and "[consent.wrong_scope]" in msg and "partner" in msg
    code, msg = errors["capped@example.org"]
    assert (code, enhanced(msg)) == (DEFERRED.code, DEFERRED.enhanced) and "[frequency.exceeded]" in msg
    [got] = sink.received
    assert [r for r, _ in got.rcpts] == ["ok1@example.org", "ok2@example.org"]
    # The relayed newsletter's privacy link is in the ledger for its 30-day duty.
    [link] = await relay.store.privacy_links_within(time.time())
    assert (link.url, link.sender_domain, link.messages) == ("https://shop.example.com/privacy", "shop.example.com", 1)
    # Counted once the upstream accepted: a third message to ok1 hits the cap of 2 per 7 days.
    await send(relay, ["ok1@example.org"])
    with pytest.raises(aiosmtplib.SMTPRecipientsRefused) as refused:
        await send(relay, ["ok1@example.org"])
    [err] = refused.value.recipients
    assert err.code == DEFERRED.code and "frequency.exceeded" in err.message
    assert len(sink.received) == 2


async def test_nothing_is_counted_when_the_upstream_refuses(start_relay, sink) -> None:
    relay = await start_relay(policy=policy())
    await consent(relay, "ok@example.org")
    sink.behaviour.data_end = "554 5.7.0 upstream says no"  # the upstream's own reply: a literal
    for _ in range(3):
        with pytest.raises(aiosmtplib.SMTPDataError):
            await send(relay, ["ok@example.org"])
    assert (await relay.store.counts())["sends"] == 0


async def test_a_recipients_own_preference_replaces_the_policy_cap(start_relay, sink) -> None:
    from proxy.store import FrequencyOverride

    relay = await start_relay(policy=policy(frequency='reply = "permanent"'))
    await consent(relay, "prefers-less@example.org")
    await relay.store.set_frequency_override(FrequencyOverride("prefers-less@example.org", Scope("brand", "shop"), 1, 30 * DAY, "prefs", time.time()))
    await send(relay, ["prefers-less@example.org"])
    with pytest.raises(aiosmtplib.SMTPRecipientsRefused) as refused:
        await send(relay, ["prefers-less@example.org"])
    [err] = refused.value.recipients
    assert err.code == REFUSED.code and "recipient's preference" in err.message


async def test_store_unavailable_is_a_temporary_failure(start_relay, sink) -> None:
    relay = await start_relay(policy=policy())
    await relay.store.close()
    client = await RawClient.connect(relay.port)
    await client.reply()
    await client.cmd("EHLO app.test")
    assert (await client.cmd(f"MAIL FROM:<{SENDER}>")).startswith(str(Replies.sender_ok()))
    reply = await client.cmd("RCPT TO:<reader@example.org>")
    assert reply.startswith(str(Replies.store_unavailable("")).rstrip(": "))
    await client.close()
    await relay.store.open()


async def test_a_slow_store_is_bounded_by_the_policy_timeout(start_relay, sink, monkeypatch) -> None:
    relay = await start_relay({"timeouts": {"policy": 0.3}}, policy=policy())
    real = relay.store.lookup

    async def slow(*args, **kwargs):  # the real store, behind a stall we control
        await asyncio.sleep(30)
        return await real(*args, **kwargs)

    monkeypatch.setattr(relay.store, "lookup", slow)
    client = await RawClient.connect(relay.port)
    await client.reply()
    await client.cmd("EHLO app.test")
    await client.cmd(f"MAIL FROM:<{SENDER}>")
    started = time.monotonic()
    assert (await client.cmd("RCPT TO:<reader@example.org>")).startswith(f"{UNAVAILABLE.code} {UNAVAILABLE.enhanced}")
    assert time.monotonic() - started < 15  # the 0.3 s budget answered, not the 30 s stall
    await client.close()


async def test_transactional_streams_skip_recipient_state(start_relay, sink) -> None:
    relay = await start_relay(policy=policy())
    await relay.store.suppress([Suppression("reader@example.org", GLOBAL, "unsubscribe", "x", 1.0)])
    errors, _ = await send(relay, ["reader@example.org"], sender="billing@receipts.example.com")
    assert errors == {} and len(sink.received) == 1


async def test_monitor_mode_accepts_and_tags(start_relay, sink) -> None:
    relay = await start_relay(policy=policy(), monitor=True)
    await consent(relay, "reader@example.org")
    await relay.store.suppress([Suppression("reader@example.org", GLOBAL, "complaint", "arf", 1.0)])
    errors, _ = await send(relay, ["reader@example.org"])
    assert errors == {}
    [got] = sink.received
    assert b"X-Sendwarden-Findings: monitor would reject; optout.suppressed" in got.data


async def test_quarantine_action_accepts_the_recipient_and_holds_the_message(start_relay, sink) -> None:
    relay = await start_relay(policy=policy(actions='[streams.marketing.actions]\n"optout.suppressed" = "quarantine"'))
    await consent(relay, "reader@example.org")
    await relay.store.suppress([Suppression("reader@example.org", GLOBAL, "manual", "ops", 1.0)])
    errors, text = await send(relay, ["reader@example.org"])
    assert errors == {} and text.startswith("2.6.0") and sink.received == []
    [held] = relay.quarantine.search("1=1", [], 1000, 0)[0]
    assert "optout.suppressed" in held["findings"]


async def test_suppression_revealed_only_after_data_holds_the_whole_message(start_relay, sink) -> None:
    relay = await start_relay(policy=policy())
    await relay.store.suppress([
        Suppression("reader@example.org", GLOBAL, "unsubscribe", "x", 1.0),
        Suppression("fan@example.org", Scope("brand", "outlet"), "unsubscribe", "x", 1.0),
        Suppression("lister@example.org", Scope("list", "deals.shop.example.com"), "unsubscribe", "x", 1.0),
    ])
    # A transactional stream whose message is bulk mail after all.
    bulk = b"Precedence: bulk\r\n" + COMPLIANT
    errors, text = await send(relay, ["reader@example.org", "other@example.org"], bulk, sender="billing@receipts.example.com")
    assert errors == {} and text.startswith("2.6.0")
    # A marketing message whose brand header names a brand the recipient left.
    await consent(relay, "fan@example.org", "lister@example.org")
    errors, text = await send(relay, ["fan@example.org"], b"X-Brand: outlet\r\n" + COMPLIANT)
    assert text.startswith("2.6.0")
    errors, text = await send(relay, ["lister@example.org"], b"List-Id: Deals <deals.shop.example.com>\r\n" + COMPLIANT)
    assert text.startswith("2.6.0")
    assert sink.received == []
    findings = [row["findings"] for row in relay.quarantine.search("1=1", [], 1000, 0)[0]]
    assert len(findings) == 3 and all("optout.suppressed_after_data" in f for f in findings)
    # Without the marker the receipt goes through.
    errors, text = await send(relay, ["reader@example.org"], COMPLIANT, sender="billing@receipts.example.com")
    assert text.startswith("2.0.0") and len(sink.received) == 1


@pytest.mark.parametrize("start_relay", ["postgresql"], indirect=True)
async def test_a_database_outage_is_451_then_mail_flows_again(start_relay, sink) -> None:
    """PostgreSQL unreachable mid-session: RCPT gets 451 4.3.0 (nothing accepted unchecked),
    and once it is back the same relay (no restart) checks and relays again."""
    from tests.support.pgdb import cut_off, restore

    name = start_relay.pg_url.rsplit("/", 1)[1]
    relay = await start_relay(policy=policy())
    await consent(relay, "reader@example.org")
    cut_off(name)
    try:
        client = await RawClient.connect(relay.port)
        await client.reply()
        await client.cmd("EHLO app.test")
        assert (await client.cmd(f"MAIL FROM:<{SENDER}>")).startswith(str(Replies.sender_ok()))
        for _ in range(3):
            assert (await client.cmd("RCPT TO:<reader@example.org>")).startswith(f"{UNAVAILABLE.code} {UNAVAILABLE.enhanced}")
        await client.close()
    finally:
        restore(name)
    deadline = time.monotonic() + 6
    while True:
        try:
            errors, text = await send(relay, ["reader@example.org"])
            break
        except aiosmtplib.SMTPRecipientsRefused as exc:
            assert exc.recipients[0].code == UNAVAILABLE.code and time.monotonic() < deadline
            await asyncio.sleep(0.2)
    assert errors == {} and text.startswith("2.0.0") and len(sink.received) == 1
    assert (await relay.store.counts())["sends"] == 1


@pytest.mark.parametrize("start_relay", ["postgresql"], indirect=True)
async def test_a_message_delivered_during_an_outage_is_still_counted(start_relay, sink) -> None:
    """The database goes away after RCPT, while the upstream takes the message: its frequency
    count is kept and written once the database is back, so the cap still holds."""
    from tests.support.pgdb import cut_off, restore

    name = start_relay.pg_url.rsplit("/", 1)[1]
    relay = await start_relay(policy=policy())
    await consent(relay, "reader@example.org")
    sink.behaviour.data_delay = 1.0
    sending = asyncio.create_task(send(relay, ["reader@example.org"]))
    try:
        while not any(c.startswith("DATA") for c in sink.commands):
            await asyncio.sleep(0.02)
        cut_off(name)
        errors, text = await sending
        assert errors == {} and text.startswith("2.0.0")
        assert len(relay.pending_writes) >= 1
    finally:
        restore(name)
    deadline = time.monotonic() + 10
    while (counts := await _counts_when_reachable(relay)) is None or counts["sends"] < 1:
        assert time.monotonic() < deadline, "the deferred count was not written"
        await asyncio.sleep(0.2)
    assert len(relay.pending_writes) == 0 and counts["sends"] == 1


async def _counts_when_reachable(relay) -> dict | None:
    from proxy.store import StoreError

    try:
        return await relay.store.counts()
    except StoreError:
        return None


@pytest.mark.parametrize("start_relay", ["postgresql"], indirect=True)
async def test_an_outage_relays_transactional_mail_with_a_tag_when_the_policy_says_so(start_relay, sink) -> None:
    """Frequency caps on receipts too, and `lookup.failed = relay` for that stream only: with the
    database away, receipts go out tagged while marketing still gets 451 4.3.0."""
    from tests.support.pgdb import cut_off, restore

    name = start_relay.pg_url.rsplit("/", 1)[1]
    text = policy(frequency='streams = ["marketing", "transactional"]',
                  actions='[streams.transactional.actions]\n"lookup.failed" = "relay"')
    relay = await start_relay(policy=text)
    cut_off(name)
    try:
        errors, reply = await send(relay, ["buyer@example.org"], sender="billing@receipts.example.com")
        assert errors == {} and enhanced(reply) == RELAYED.enhanced
        [got] = sink.received
        assert b"X-Sendwarden-Findings:" in got.data and b"lookup.failed" in got.data
        with pytest.raises(aiosmtplib.SMTPRecipientsRefused) as refused:
            await send(relay, ["reader@example.org"])
        [err] = refused.value.recipients
        assert (err.code, enhanced(err.message)) == (UNAVAILABLE.code, UNAVAILABLE.enhanced)
    finally:
        restore(name)
