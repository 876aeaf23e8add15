"""The policy action of the rules only the shell emits, honoured over the real relay:
`rate.exceeded` (a rate limit at MAIL or RCPT) and `recipient.invalid` (a recipient the store
cannot file). Until issue 16 both answered one fixed reply whatever the policy said."""

from __future__ import annotations

import json

import pytest

from proxy.replies import Replies
from tests.conftest import ROOT
from tests.support.smtpclient import RawClient, line_start, send_one


COMPLIANT = (ROOT / "examples" / "compliant.eml").read_bytes().replace(b"\n", b"\r\n")
ONE_PER_CLIENT = {"rate_limits": [{"name": "per-client", "per": "client_ip", "messages": 1, "window": 60}]}
# Longer than an address may be (RFC 5321 4.5.3.1.3: 320 octets), which aiosmtpd lets through
# but the store cannot file.
BAD_RECIPIENT = "reader@" + ".".join(["a" * 60] * 6) + ".org"


def policy(actions: str) -> str:
    return f"[policy]\ndefault_action = \"reject\"\n[actions]\n{actions}\n"


async def send(port: int, rcpts: list[str]) -> tuple[int, str]:
    return await send_one(port, COMPLIANT, rcpts=rcpts)


@pytest.mark.parametrize("action, code, enhanced", [
    ("tempfail", Replies.rate_limited("x").code, Replies.rate_limited("x").enhanced),
    ("reject", Replies.rate_refused("x").code, Replies.rate_refused("x").enhanced),
])
async def test_rate_exceeded_refuses_as_the_policy_says(start_relay, sink, action: str, code: int, enhanced: str) -> None:
    relay = await start_relay(ONE_PER_CLIENT, policy=policy(f'"rate.exceeded" = "{action}"'))
    assert (await send(relay.port, ["reader@example.org"]))[0] == Replies.relayed("", "").code
    got, text = await send(relay.port, ["reader@example.org"])
    assert (got, text.split(" ", 1)[0]) == (code, enhanced) and "per-client" in text
    assert len(sink.received) == 1


async def test_rate_exceeded_quarantine_holds_the_message(start_relay, sink) -> None:
    relay = await start_relay(ONE_PER_CLIENT, policy=policy('"rate.exceeded" = "quarantine"'))
    assert (await send(relay.port, ["reader@example.org"]))[0] == Replies.relayed("", "").code
    got, text = await send(relay.port, ["reader@example.org"])
    held = Replies.quarantined("x")
    assert (got, text.split(" ", 1)[0]) == (held.code, held.enhanced)
    assert len(sink.received) == 1  # the second one is in the quarantine, not upstream
    [row] = relay.quarantine.search("1=1", [], 10, 0)[0]
    assert [f["rule"] for f in json.loads(row["findings"])] == ["rate.exceeded"]


async def test_rate_exceeded_relay_lets_it_through_tagged(start_relay, sink) -> None:
    relay = await start_relay(ONE_PER_CLIENT, policy=policy('"rate.exceeded" = "relay"'))
    for _ in range(2):
        assert (await send(relay.port, ["reader@example.org"]))[0] == Replies.relayed("", "").code
    assert len(sink.received) == 2
    assert b"X-Sendwarden-Findings: rate.exceeded" in sink.received[1].data


async def test_rate_exceeded_at_rcpt_follows_the_policy_too(start_relay, sink) -> None:
    limits = {"rate_limits": [{"name": "per-domain", "per": "recipient_domain", "recipients": 1, "domains": ["example.org"]}]}
    relay = await start_relay(limits, policy=policy('"rate.exceeded" = "reject"'))
    c = await RawClient.connect(relay.port)
    await c.reply()
    await c.cmd("EHLO client.test")
    assert (await c.cmd("MAIL FROM:<news@shop.example.com>")).startswith(line_start(Replies.sender_ok()))
    assert (await c.cmd("RCPT TO:<a@example.org>")).startswith(line_start(Replies.recipient_ok()))
    assert (await c.cmd("RCPT TO:<b@example.org>")).startswith(f"{Replies.rate_refused('x').code} ")
    await c.close()


@pytest.mark.parametrize("action, code", [
    ("reject", Replies.bad_recipient("x").code),
    ("quarantine", Replies.quarantined("x").code),
])
async def test_recipient_invalid_follows_the_policy(start_relay, sink, action: str, code: int) -> None:
    relay = await start_relay(policy=policy(f'"recipient.invalid" = "{action}"'))
    got, text = await send(relay.port, [BAD_RECIPIENT])
    assert got == code, text
    if action == "reject":
        assert text.startswith(f"{Replies.bad_recipient('x').enhanced} Bad recipient address") and not sink.received
    else:
        assert text.startswith(Replies.quarantined("x").enhanced)
        [row] = relay.quarantine.search("1=1", [], 10, 0)[0]
        assert [f["rule"] for f in json.loads(row["findings"])] == ["recipient.invalid"]
