"""The unsubscribe loop closed inside sendwarden: inserted List-Unsubscribe headers, the RFC 8058
one-click endpoint over real HTTP, mailto unsubscribes and ARF complaints over real SMTP."""

from __future__ import annotations

import re
import time

import aiohttp
import aiosmtplib
import pytest
from structlog.testing import capture_logs

import proxy.message.mime
from proxy.replies import Replies

from proxy.store import GLOBAL, ConsentRecord, Scope
from proxy.unsubscribe.token import TokenKeys
from tests.conftest import FIXTURES
from tests.support.recipient_helpers import BARE, COMPLIANT, SENDER, policy
from tests.support.smtpclient import RawClient, line_start

LOOP = {
    "unsubscribe": {"listen": "127.0.0.1:0", "base_url": "https://unsub.test", "mailto_domain": "unsub.test"},
    "complaints": {"address": "abuse@unsub.test"},
}
INSERTING = policy(optout="insert_list_unsubscribe = true\nunsubscribe_scope = \"brand\"")
TOKEN_IN_URL = re.compile(rb"<https://unsub\.test/unsubscribe/([a-z2-7]+)>")


async def start(start_relay, extra: dict | None = None, pol: str = INSERTING):
    relay = await start_relay({**LOOP, **(extra or {})}, policy=pol)
    await relay.store.add_consent([ConsentRecord(a, "shop", time.time() - 60, "form", "p") for a in
                                   ("reader@example.org", "second@example.org")], time.time())
    return relay


async def send(relay, rcpts: list[str], data: bytes = BARE):
    client = aiosmtplib.SMTP(hostname="127.0.0.1", port=relay.port, start_tls=False)
    await client.connect()
    try:
        return await client.sendmail(SENDER, rcpts, data)
    finally:
        await client.quit()


def url(relay, token: str) -> str:
    return f"http://127.0.0.1:{relay.unsubscribe_web.port}/unsubscribe/{token}"


async def one_click(relay, token: str, body: str | bytes = "List-Unsubscribe=One-Click") -> tuple[int, str]:
    async with aiohttp.ClientSession() as http:
        async with http.post(url(relay, token), data=body,
                             headers={"Content-Type": "application/x-www-form-urlencoded"}) as resp:
            return resp.status, await resp.text()


async def test_inserted_header_unsubscribes_with_one_click(start_relay, sink) -> None:
    relay = await start(start_relay)
    await send(relay, ["reader@example.org"])
    [got] = sink.received
    head = got.data.split(b"\r\n\r\n", 1)[0]
    assert b"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n" in head
    token = TOKEN_IN_URL.search(head).group(1).decode()
    assert f"<mailto:unsubscribe+{token}@unsub.test?subject=unsubscribe>".encode() in head
    assert got.data.endswith(BARE)  # prepended; the message itself untouched

    # A GET shows a confirmation page and changes nothing (link scanners fetch URLs).
    async with aiohttp.ClientSession() as http:
        async with http.get(url(relay, token)) as resp:
            page = await resp.text()
            assert resp.status == 200 and 'method="post"' in page and "r•••@example.org" in page
            assert resp.headers["Cache-Control"] == "no-store"
    assert await relay.store.suppressions("reader@example.org") == []

    status, _ = await one_click(relay, token)
    assert status == 200
    [entry] = await relay.store.suppressions("reader@example.org")
    assert (entry.scope, entry.reason, entry.source) == (Scope("brand", "shop"), "unsubscribe", "one-click")
    with pytest.raises(aiosmtplib.SMTPRecipientsRefused) as refused:
        await send(relay, ["reader@example.org"])
    assert refused.value.recipients[0].code == Replies.recipient_refused("", "").code
    assert "optout.suppressed" in refused.value.recipients[0].message


async def test_the_message_is_parsed_once_and_judged_with_the_inserted_header(start_relay, sink, monkeypatch) -> None:
    """The relay prepends List-Unsubscribe to the view it parsed instead of parsing the message
    again; the unsubscribe checks (reject here) see the inserted header, so the bare message goes out."""
    relay = await start(start_relay)
    parsed: list[bytes] = []
    real = proxy.message.mime._parse
    monkeypatch.setattr(proxy.message.mime, "_parse", lambda raw: parsed.append(raw) or real(raw))
    await send(relay, ["reader@example.org"])
    [got] = sink.received
    assert parsed == [BARE]
    assert got.data.endswith(BARE) and TOKEN_IN_URL.search(got.data.split(b"\r\n\r\n", 1)[0])


async def test_one_click_with_valid_forged_and_expired_tokens(start_relay, sink) -> None:
    relay = await start(start_relay)
    keys = relay.unsubscribe_keys
    now = int(time.time())
    valid = keys.issue("second@example.org", GLOBAL, now + 3600)
    forged = TokenKeys([b"k" * 32]).issue("reader@example.org", GLOBAL, now + 3600)
    expired = keys.issue("reader@example.org", GLOBAL, now - 1)
    tampered = valid[:-3] + ("aaa" if not valid.endswith("aaa") else "bbb")
    with capture_logs() as logs:
        assert (await one_click(relay, forged))[0] == 403
        assert (await one_click(relay, tampered))[0] == 403
        assert (await one_click(relay, expired))[0] == 410
        assert (await one_click(relay, "not-a-token!"))[0] == 404
    refused = [e for e in logs if e["event"] == "unsubscribe_token_refused"]
    assert [e["kind"] for e in refused] == ["forged", "forged", "expired", "malformed"]
    assert await relay.store.suppressions("reader@example.org") == []
    # The body must be the RFC 8058 one; an oversized one is refused before it is read.
    assert (await one_click(relay, valid, "List-Unsubscribe=Maybe"))[0] == 400
    assert (await one_click(relay, valid, "List-Unsubscribe=One-Click&pad=" + "x" * 20000))[0] == 413
    assert await relay.store.suppressions("second@example.org") == []
    assert (await one_click(relay, valid))[0] == 200
    assert (await one_click(relay, valid))[0] == 200  # again: still fine, nothing new
    assert [str(s.scope) for s in await relay.store.suppressions("second@example.org")] == ["global"]
    # The forged and expired tokens' address is still reachable; the valid one's is not.
    await send(relay, ["reader@example.org"])
    with pytest.raises(aiosmtplib.SMTPRecipientsRefused):
        await send(relay, ["second@example.org"])


async def test_multi_recipient_messages_get_no_per_recipient_header(start_relay, sink) -> None:
    relay = await start(start_relay)
    with capture_logs() as logs, pytest.raises(aiosmtplib.SMTPDataError) as rejected:
        await send(relay, ["reader@example.org", "second@example.org"])
    assert rejected.value.code == Replies.policy_reject([], "").code and "unsubscribe.header_missing" in rejected.value.message
    [audit] = [e for e in logs if e["event"] == "message"]
    assert audit["list_unsubscribe"].startswith("not inserted: 2 recipients")
    # A message that has its own header keeps it.
    await send(relay, ["reader@example.org"], COMPLIANT)
    assert sink.received[0].data.count(b"List-Unsubscribe:") == 1


async def smtp_session(relay, local: str | None = None) -> RawClient:
    client = await RawClient.connect(relay.port, local=local)
    await client.reply()
    assert (await client.cmd("EHLO mail.example.net")).startswith("250")  # aiosmtpd's EHLO reply
    return client


async def test_mailto_unsubscribe_from_outside_the_relay_networks(start_relay, sink) -> None:
    # 127.0.0.1 may not relay here: it plays a mailbox provider on the internet.
    relay = await start(start_relay, {"relay_networks": ["127.0.0.2/32"]})
    token = relay.unsubscribe_keys.issue("reader@example.org", Scope("brand", "shop"), int(time.time()) + 3600)
    forged = TokenKeys([b"z" * 32]).issue("second@example.org", GLOBAL, int(time.time()) + 3600)
    c = await smtp_session(relay)
    assert (await c.cmd("MAIL FROM:<reader@example.org>")).startswith(line_start(Replies.sender_ok()))
    # Not an open relay: anything but sendwarden's own addresses is refused.
    assert (await c.cmd("RCPT TO:<victim@example.com>")).startswith(line_start(Replies.relay_denied()))
    assert (await c.cmd("RCPT TO:<postmaster@unsub.test>")).startswith(line_start(Replies.no_such_user()))
    with capture_logs() as logs:
        assert (await c.cmd(f"RCPT TO:<unsubscribe+{forged}@unsub.test>")).startswith(line_start(Replies.unsubscribe_invalid()))
    assert [e["kind"] for e in logs if e["event"] == "unsubscribe_token_refused"] == ["forged"]
    assert (await c.cmd(f"RCPT TO:<unsubscribe+{token.upper()}@UNSUB.test>")).startswith(line_start(Replies.recipient_ok()))
    assert (await c.cmd("DATA")).startswith(line_start(Replies.start_data()))
    reply = await c.cmd("From: reader@example.org\r\nSubject: unsubscribe\r\n\r\nplease\r\n.")
    assert reply.startswith(line_start(Replies.received("")))
    await c.cmd("QUIT")
    await c.close()
    [entry] = await relay.store.suppressions("reader@example.org")
    assert (entry.scope, entry.reason, entry.source) == (Scope("brand", "shop"), "unsubscribe", "mailto")
    assert sink.received == []
    # A relaying client that mixes local and relayed recipients is told to split them.
    c = await smtp_session(relay, local="127.0.0.2")
    await c.cmd(f"MAIL FROM:<{SENDER}>")
    assert (await c.cmd("RCPT TO:<second@example.org>")).startswith(line_start(Replies.recipient_ok()))
    assert (await c.cmd(f"RCPT TO:<unsubscribe+{token}@unsub.test>")).startswith(line_start(Replies.local_and_relayed_apart()))
    await c.close()


async def test_without_intake_outsiders_are_still_refused_at_mail(start_relay, sink) -> None:
    relay = await start_relay({"relay_networks": ["127.0.0.2/32"]})
    c = await smtp_session(relay)
    assert (await c.cmd("MAIL FROM:<a@example.net>")).startswith(line_start(Replies.relay_denied()))
    await c.close()


async def deliver(relay, raw: bytes) -> str:
    c = await smtp_session(relay)
    await c.cmd("MAIL FROM:<>")
    assert (await c.cmd("RCPT TO:<abuse@unsub.test>")).startswith(line_start(Replies.recipient_ok()))
    assert (await c.cmd("DATA")).startswith(line_start(Replies.start_data()))
    reply = await c.cmd(raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n").rstrip(b"\r\n").decode() + "\r\n.")
    await c.close()
    return reply


async def test_arf_abuse_report_suppresses_the_complainant(start_relay, sink) -> None:
    # The feedback loop's reports come through 127.0.0.1 (configured), and name a recipient the
    # send ledger has; forged reports are tests/reliability/test_complaints.py's.
    relay = await start(start_relay, {"relay_networks": ["127.0.0.2/32"],
                                      "complaints": {**LOOP["complaints"], "feedback_networks": ["127.0.0.1/32"]}})
    await relay.store.record_sends(["complainer@example.net"], "shop", "marketing", time.time() - 3600)
    reply = await deliver(relay, (FIXTURES / "arf" / "abuse-report.eml").read_bytes())
    assert reply.startswith(line_start(Replies.received("")))
    [entry] = await relay.store.suppressions("complainer@example.net")
    assert (entry.scope, entry.reason, entry.source) == (GLOBAL, "complaint", "arf:dns; mta1.fbl.mailprovider.example")
    # A redacted report still names the complainant through sendwarden's own signed token.
    token = relay.unsubscribe_keys.issue("reader@example.org", Scope("brand", "shop"), int(time.time()) - 86400)
    raw = (FIXTURES / "arf" / "redacted-report.eml").read_bytes().replace(b"{TOKEN}", token.encode())
    assert (await deliver(relay, raw)).startswith(line_start(Replies.received("")))
    [entry] = await relay.store.suppressions("reader@example.org")
    assert (entry.scope, entry.reason) == (GLOBAL, "complaint")
    with pytest.raises(aiosmtplib.SMTPRecipientsRefused):
        await send(relay, ["reader@example.org"])


async def test_other_mail_to_the_complaints_address_is_kept_for_people(start_relay, sink, tmp_path) -> None:
    relay = await start(start_relay, {"relay_networks": ["127.0.0.2/32"]})
    letter = b"From: angry@example.net\r\nTo: abuse@unsub.test\r\nSubject: stop it\r\n\r\nI never signed up.\r\n"
    assert (await deliver(relay, letter)).startswith(line_start(Replies.received("")))
    # An ARF report of another type is for people too.
    not_abuse = (FIXTURES / "arf" / "abuse-report.eml").read_bytes().replace(b"Feedback-Type: abuse", b"Feedback-Type: not-spam")
    assert (await deliver(relay, not_abuse)).startswith(line_start(Replies.received("")))
    stored = sorted((relay.config.complaints_dir / "new").iterdir())
    assert len(stored) == 2
    assert stored[0].read_bytes().endswith(letter) or stored[1].read_bytes().endswith(letter)
    assert (await relay.store.counts())["suppression"] == 0
    assert sink.received == []
