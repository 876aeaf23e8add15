"""`sendwarden milter` under a real Postfix: the same policy as the relay, in the MTA's path.

A Postfix from Debian's package, configured in a temporary directory on loopback ports, has the
running milter (the real Service, front="milter") in smtpd_milters and relays to the test sink.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from proxy.facts.dkim import verify
from proxy.dns import Resolver
from proxy.milter.engine import split_headers
from proxy.policy.loader import BUILTIN_DEFAULT, load_policy
from proxy.replies import Replies
from proxy.runtime.service import Service
from proxy.store.base import GLOBAL, DeadLink, Suppression
from tests.conftest import ROOT, make_config
from tests.support.dkimkit import key_config, make_key
from tests.support.dnsserver import DnsServer
from tests.support.postfix import PostfixInstance, available, delivered, transaction
from tests.support.sink import Sink

pytestmark = pytest.mark.skipif(available() is not None, reason=str(available()))

COMPLIANT = (ROOT / "examples" / "compliant.eml").read_bytes().replace(b"\n", b"\r\n")
PLAIN = (ROOT / "examples" / "plain.eml").read_bytes().replace(b"\n", b"\r\n")

# Postfix's own answer when it queued the message ("250 2.0.0 Ok: queued as ID") is a literal
# below; ours, passed on by Postfix, are named from the catalogue.


def refused(rule: str) -> str:
    """How Postfix passes on the milter's refusal of a message for `rule`."""
    return str(Replies.policy_reject([rule], "")).rstrip(": ")


@dataclass
class Rig:
    service: Service
    postfix: PostfixInstance
    sink: Sink
    dns: DnsServer

    async def send(self, data: bytes, rcpts: tuple[str, ...] = ("reader@example.org",)) -> list[str]:
        return await transaction(self.postfix.port, data, rcpts, helo="app.test")

    async def delivered(self, count: int, timeout: float = 15) -> None:
        await delivered(self.sink, count, timeout)


@pytest.fixture
async def rig(tmp_path: Path, sink: Sink, dns_server: DnsServer) -> AsyncIterator[Rig]:
    key = make_key(tmp_path, "shop.example.com", "m1", "rsa", dns_server)
    config = make_config(tmp_path, sink.url, {
        "milter": {"address": "inet:127.0.0.1:0", "quarantine": "sendwarden"},
        "dns": {"nameservers": [dns_server.nameserver], "timeout": 1.0},
        "dkim": key_config(key),
    })
    service = Service(config, load_policy(BUILTIN_DEFAULT))
    await service.start("milter")
    postfix = PostfixInstance(sink.port, main={
        "smtpd_milters": service.milter_address,
        "non_smtpd_milters": "",
        "milter_protocol": "6",
        "milter_default_action": "tempfail",
    })
    try:
        await asyncio.to_thread(postfix.start)
        yield Rig(service, postfix, sink, dns_server)
    finally:
        await asyncio.to_thread(postfix.stop)
        await service.stop()


async def test_compliant_message_passes_signed(rig: Rig) -> None:
    answers = await rig.send(COMPLIANT)
    assert answers[-1].startswith("250 2.0.0 Ok: queued as "), answers
    await rig.delivered(1)
    [got] = rig.sink.received
    assert got.data.startswith(b"DKIM-Signature: ")
    result = await verify(got.data, Resolver([rig.dns.nameserver], timeout=1))
    assert [(s.selector, s.status) for s in result.signatures] == [("m1", "pass")]
    assert got.data.endswith(COMPLIANT.partition(b"\r\n\r\n")[2])


async def test_violating_message_is_refused_with_our_reply(rig: Rig) -> None:
    answers = await rig.send(PLAIN)
    assert answers[-1].startswith(refused("unsubscribe.header_missing")), answers
    assert rig.sink.received == []


async def test_suppressed_recipient_is_refused_at_rcpt(rig: Rig) -> None:
    await rig.service.store.suppress([Suppression("gone@example.org", GLOBAL, "unsubscribe", "one-click", time.time())])
    answers = await rig.send(COMPLIANT, rcpts=("gone@example.org", "reader@example.org"))
    assert answers[3].startswith(str(Replies.recipient_refused("optout.suppressed", "")).rstrip(": ")), answers
    assert answers[4].startswith("250") and answers[-1].startswith("250 2.0.0 Ok: queued as ")
    await rig.delivered(1)
    assert [r for r, _ in rig.sink.received[0].rcpts] == ["reader@example.org"]


async def test_unroutable_recipient_is_refused_at_rcpt_and_the_other_delivered(rig: Rig) -> None:
    rig.dns.zone("test", "ok MX 10 mx.ok.test.\nmx.ok A 192.0.2.25\nnullmx MX 0 .\n")
    rig.dns.behaviour.servfail.add("broken.test")
    rig.service.deps = dataclasses.replace(rig.service.deps, judging=dataclasses.replace(rig.service.deps.judging, verify_domains=True))
    answers = await rig.send(COMPLIANT, rcpts=("a@nullmx.test", "b@broken.test", "c@ok.test"))
    assert answers[3].startswith(str(Replies.recipient_unroutable("recipient.domain_unroutable", "")).rstrip(": ")), answers
    assert answers[4].startswith(str(Replies.recipient_lookup_failed("lookup.failed", "")).split(":")[0]), answers
    assert answers[5].startswith("250") and answers[-1].startswith("250 2.0.0 Ok: queued as ")
    await rig.delivered(1)
    assert [r for r, _ in rig.sink.received[0].rcpts] == ["c@ok.test"]


async def test_blocked_destination_is_refused_at_rcpt(rig: Rig, tmp_path: Path) -> None:
    policy = tmp_path / "blocked.toml"
    policy.write_text('[actions]\n"recipient.*" = "reject"\n"unsubscribe.*" = "reject"\n'
                      '[checks.recipient]\nblocked_domains = ["sanctioned.example"]\n')
    rig.service.policy = load_policy(policy)
    answers = await rig.send(COMPLIANT, rcpts=("a@mail.sanctioned.example", "reader@example.org"))
    assert answers[3].startswith(str(Replies.recipient_refused("recipient.blocked_destination", "")).rstrip(": ")), answers
    assert answers[-1].startswith("250 2.0.0 Ok: queued as "), answers
    await rig.delivered(1)
    assert [r for r, _ in rig.sink.received[0].rcpts] == ["reader@example.org"]


async def test_blocklisted_link_is_refused_at_end_of_message(rig: Rig, tmp_path: Path) -> None:
    rig.dns.zone("dbl.test", "evil-shop.com A 127.0.1.2\n")
    policy = tmp_path / "b.toml"
    policy.write_text('[actions]\n"content.blocklisted_link" = "reject"\n"unsubscribe.*" = "reject"\n[checks.blocklist]\n'
                      'enabled = true\n[[checks.blocklist.zones]]\nzone = "dbl.test"\ncodes = { "127.0.1.2" = "spam domain" }\n')
    rig.service.policy = load_policy(policy)
    bad = COMPLIANT.replace(b"</body>", b'<a href="https://www.evil-shop.com/">deal</a></body>')
    answers = await rig.send(bad)
    assert answers[-1].startswith(refused("content.blocklisted_link")), answers
    answers = await rig.send(COMPLIANT)
    assert answers[-1].startswith("250 2.0.0 Ok: queued as "), answers
    await rig.delivered(1)


async def test_dead_privacy_link_is_refused_at_end_of_message(rig: Rig) -> None:
    await rig.service.store.mark_privacy_links(
        [DeadLink("https://shop.example.com/privacy", "shop.example.com", time.time(), time.time(), "HTTP 404")], [], time.time())
    await rig.service.refresh_reputation()
    answers = await rig.send(COMPLIANT)
    assert answers[-1].startswith(refused("privacy.link_dead")), answers
    assert rig.sink.received == []


async def test_marketing_over_the_complaint_limit_is_deferred(rig: Rig) -> None:
    now = time.time()
    await rig.service.store.count_delivered("shop.example.com", "marketing", 1000, now)
    for _ in range(4):  # 0.4 %: over the default 0.3 % limit
        await rig.service.store.record_complaint("shop.example.com", now)
    await rig.service.refresh_reputation()
    answers = await rig.send(COMPLIANT)
    assert answers[-1].startswith(str(Replies.policy_tempfail(["compliance.complaint_rate"], "")).split(", try")[0]), answers
    assert rig.sink.received == []


async def test_quarantined_message_is_held_by_sendwarden(rig: Rig, tmp_path: Path) -> None:
    policy = tmp_path / "q.toml"
    policy.write_text('[actions]\n"unsubscribe.*" = "quarantine"\n')
    rig.service.policy = load_policy(policy)
    answers = await rig.send(PLAIN)
    assert answers[-1].startswith("250 "), answers  # the MTA accepted it, then discarded its copy
    rows, total = rig.service.quarantine.search("status = 'held'", [], 10, 0)
    assert total == 1 and rig.service.quarantine.raw(rows[0]["id"]).endswith(PLAIN.partition(b"\r\n\r\n")[2])
    await asyncio.sleep(1)
    assert rig.sink.received == []


def test_split_headers_keeps_folds_for_the_mta() -> None:
    block = b"DKIM-Signature: v=1; a=rsa-sha256;\r\n\tb=abc\r\nX-Tag: x\r\n"
    assert split_headers(block) == [("DKIM-Signature", "v=1; a=rsa-sha256;\n\tb=abc"), ("X-Tag", "x")]
