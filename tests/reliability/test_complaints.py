"""Forged complaints: anyone may send an ARF report to the complaints address, naming anyone.
A report suppresses only when it comes from a configured feedback loop (a client network, or a
DKIM signature that verifies for a feedback domain, over the loopback DNS server) AND names a
recipient this relay sent to (the send ledger, or our own signed token); every other report is
kept in the complaints Maildir for people. The intake also has its own size and rate limits."""

from __future__ import annotations

import time
from pathlib import Path

from proxy.outbound.dkim import Signer
from proxy.replies import Replies
from proxy.store.base import Scope
from tests.conftest import FIXTURES
from tests.reliability.conftest import record
from tests.support.dkimkit import make_key
from tests.support.smtpclient import RawClient, line_start

REPORT = (FIXTURES / "arf" / "abuse-report.eml").read_bytes().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
FBL = "fbl.mailprovider.example"
# The intake took a report; a report over the intake's size limit.
RECEIVED, TOO_LARGE = Replies.received(""), Replies.too_large(0)


def naming(address: str, raw: bytes = REPORT) -> bytes:
    return raw.replace(b"complainer@example.net", address.encode())


_KEYS: dict[tuple[Path, str], object] = {}


def signed(tmp_path: Path, dns, domain: str, raw: bytes) -> bytes:
    key = _KEYS.get((tmp_path, domain)) or _KEYS.setdefault((tmp_path, domain), make_key(tmp_path, domain, "fbl", "rsa", dns))
    raw = raw.replace(f"feedbackloop@{FBL}".encode(), f"feedbackloop@{domain}".encode())
    out, _ = Signer([key], ["From", "To", "Subject", "Date", "Message-ID"], ["From"]).sign(raw)
    return out


async def deliver(port: int, local: str, raw: bytes) -> str:
    c = await RawClient.connect(port, local=local)
    await c.reply()
    await c.cmd("EHLO fbl.test")
    await c.cmd("MAIL FROM:<>")
    rcpt = await c.cmd("RCPT TO:<abuse@unsub.test>")
    if not rcpt.startswith(line_start(Replies.recipient_ok())):
        await c.close()
        return rcpt
    assert (await c.cmd("DATA")).startswith(line_start(Replies.start_data()))
    await c.send(raw.rstrip(b"\r\n") + b"\r\n.\r\n")
    reply = await c.reply(timeout=30)
    await c.close()
    return reply


async def test_forged_complaints_are_kept_for_people_and_real_ones_suppress(start_relay, sink, dns_server, tmp_path) -> None:
    relay = await start_relay({
        "relay_networks": ["127.0.0.1/32"],
        "dns": {"nameservers": [dns_server.nameserver], "timeout": 1.0},
        "unsubscribe": {"listen": "", "base_url": "https://unsub.test", "mailto_domain": "unsub.test"},
        "complaints": {"address": "abuse@unsub.test", "feedback_domains": [FBL], "feedback_networks": ["127.0.0.5/32"]},
    })
    await relay.store.record_sends(["complainer@example.net"], "shop", "marketing", time.time() - 3600)
    token = relay.unsubscribe_keys.issue("reader@example.org", Scope("brand", "shop"), int(time.time()) + 86400)
    redacted = (FIXTURES / "arf" / "redacted-report.eml").read_bytes().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    redacted = redacted.replace(b"{TOKEN}", token.encode())
    forged = {
        # (client, report): what an attacker can send
        "outsider names the CEO": ("127.0.0.9", naming("ceo@bigcustomer.example")),
        "outsider names a real recipient": ("127.0.0.9", REPORT),
        "outsider carries our own token": ("127.0.0.9", redacted),
        "feedback network names someone never sent to": ("127.0.0.5", naming("ceo@bigcustomer.example")),
        "valid DKIM of another domain": ("127.0.0.9", signed(tmp_path, dns_server, "evil.example", REPORT)),
        "feedback DKIM, never sent to": ("127.0.0.9", signed(tmp_path, dns_server, FBL, naming("ceo@bigcustomer.example"))),
    }
    for name, (client, raw) in forged.items():
        reply = await deliver(relay.port, client, raw)
        assert reply.startswith(line_start(RECEIVED)), (name, reply)
    counts = await relay.store.counts()
    kept = len(list((relay.config.complaints_dir / "new").iterdir()))
    assert counts["suppression"] == 0 and kept == len(forged)

    genuine = {
        "feedback DKIM, ledger": ("127.0.0.9", signed(tmp_path, dns_server, FBL, REPORT), "complainer@example.net"),
        "feedback network, token": ("127.0.0.5", redacted, "reader@example.org"),
    }
    for name, (client, raw, address) in genuine.items():
        assert (await deliver(relay.port, client, raw)).startswith(line_start(RECEIVED)), name
        assert [s.reason for s in await relay.store.suppressions(address)] == ["complaint"], name
    assert (await relay.store.counts())["suppression"] == 2
    record("forged complaints", forged_sent=len(forged), forged_acted_on=0, kept_for_people=kept,
           genuine_acted_on=len(genuine))


async def test_the_complaints_intake_has_its_own_size_and_rate_limits(start_relay, sink) -> None:
    relay = await start_relay({"relay_networks": ["127.0.0.1/32"],
                               "complaints": {"address": "abuse@unsub.test", "per_client": 5, "window": 3600}})
    big = REPORT + (b"x" * 998 + b"\r\n") * 1100  # about 1.1 MB, past the 1 MB default
    assert (await deliver(relay.port, "127.0.0.9", big)).startswith(line_start(TOO_LARGE))
    replies = [await deliver(relay.port, "127.0.0.8", REPORT) for _ in range(6)]
    assert [r[:9] for r in replies] == [line_start(RECEIVED)[:9]] * 5 + [line_start(Replies.rate_limited(""))[:9]], replies
    assert (await deliver(relay.port, "127.0.0.7", REPORT)).startswith(line_start(RECEIVED))  # another client is not held up
    record("complaints intake limits", too_large=str(TOO_LARGE.code), sixth_within_window=replies[-1][:40])
