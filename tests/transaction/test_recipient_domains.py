"""Recipient domains judged at RCPT through the real relay and the loopback DNS server:
blocked destinations and unroutable domains are refused per recipient (the others in the same
transaction go through to the real sink), a DNS failure defers that recipient only (451 4.4.3),
and negative answers are cached for the SOA's negative TTL."""

from __future__ import annotations

import asyncio

import aiosmtplib
import pytest

from proxy.policy.families.recipient import RecipientOptions, Route, blocked_findings, recipient_domain, route_findings
from proxy.policy.loader import load_policy
from proxy.replies import Replies
from proxy.transaction.recipients import decide
from tests.support.dnsserver import DnsServer
from tests.support.recipient_helpers import send

ZONE = """
    ok          MX   10 mx.ok.test.
    mx.ok       A    192.0.2.25
    bare        A    192.0.2.26
    bare6       AAAA 2001:db8::26
    nullmx      MX   0 .
    nodata      TXT  "exists, takes no mail"
    broken      MX   10 mx.ok.test.
"""


def dns_config(server: DnsServer) -> dict:
    return {"dns": {"nameservers": [server.nameserver], "timeout": 1.0}, "recipients": {"verify_domains": True}}


# -- pure ---------------------------------------------------------------------------------------

def test_blocked_destinations_match_subdomains_in_a_label_form() -> None:
    opts = RecipientOptions(blocked_tlds=[".RU", "рф"], blocked_domains=["bücher.example"])
    assert recipient_domain("a@Shop.Bücher.Example") == "shop.xn--bcher-kva.example"
    assert blocked_findings(opts, "shop.xn--bcher-kva.example")[0].rule == "recipient.blocked_destination"
    assert "top-level domain .ru" in blocked_findings(opts, "mail.yandex.ru")[0].detail
    assert blocked_findings(opts, "xn--80aswg.xn--p1ai")  # сайт.рф
    assert blocked_findings(opts, "example.org") == []
    assert blocked_findings(opts, "ru.example.org") == []  # a label, not the TLD
    assert recipient_domain("x@[192.0.2.1]") == ""
    with pytest.raises(ValueError):
        RecipientOptions(blocked_domains=["not a domain"])


def test_route_findings() -> None:
    assert route_findings(Route("ok.test", mx=((10, "mx.ok.test"),)), "ok.test") == []
    assert route_findings(Route("bare.test", addresses=("192.0.2.26",)), "bare.test") == []
    assert "null MX" in route_findings(Route("n.test", mx=((0, "."),)), "n.test")[0].detail
    assert "NXDOMAIN" in route_findings(Route("d.test", nxdomain=True), "d.test")[0].detail
    assert "no MX and no A/AAAA" in route_findings(Route("e.test"), "e.test")[0].detail

    class Failed:
        reason = "SERVFAIL"

    [f] = route_findings(Failed(), "x.test")
    assert f.rule == "lookup.failed" and "SERVFAIL" in f.detail


def test_a_failed_lookup_is_never_a_permanent_refusal_whatever_its_action(tmp_path) -> None:
    path = tmp_path / "p.toml"
    path.write_text('[actions]\n"lookup.failed" = "reject"\n')
    policy = load_policy(path)
    [f] = route_findings(type("F", (), {"reason": "timeout"})(), "x.test")
    s = decide(policy, "marketing", [f])
    deferred = Replies.recipient_lookup_failed("lookup.failed", "")
    assert s.reply is not None and (s.reply.code, s.reply.enhanced) == (deferred.code, deferred.enhanced)
    path.write_text('[actions]\n"lookup.failed" = "relay"\n')
    assert decide(load_policy(path), "marketing", [f]).reply is None  # accepted, finding carried


# -- through the relay --------------------------------------------------------------------------

async def test_unroutable_and_failing_domains_are_refused_per_recipient(start_relay, sink, dns_server) -> None:
    dns_server.zone("test", ZONE)
    dns_server.behaviour.servfail.add("broken.test")
    relay = await start_relay(dns_config(dns_server))
    rcpts = ["a@ok.test", "b@dead.test", "c@nullmx.test", "d@bare.test", "e@nodata.test", "f@broken.test",
             "g@bare6.test"]
    errors, text = await send(relay, rcpts)
    assert text.split(" ", 1)[0] == Replies.relayed("", "").enhanced and "relayed" in text

    assert set(errors) == {"b@dead.test", "c@nullmx.test", "e@nodata.test", "f@broken.test"}
    for rcpt, why in (("b@dead.test", "NXDOMAIN"), ("c@nullmx.test", "null MX"), ("e@nodata.test", "no MX and no A/AAAA")):
        code, msg = errors[rcpt]
        unroutable = Replies.recipient_unroutable("recipient.domain_unroutable", "")
        assert (code, msg.split(" ", 1)[0]) == (unroutable.code, unroutable.enhanced)
        assert "[recipient.domain_unroutable]" in msg and why in msg
    code, msg = errors["f@broken.test"]
    deferred = Replies.recipient_lookup_failed("lookup.failed", "")
    assert (code, msg.split(" ", 1)[0]) == (deferred.code, deferred.enhanced) and "[lookup.failed]" in msg
    [got] = sink.received
    assert [r for r, _ in got.rcpts] == ["a@ok.test", "d@bare.test", "g@bare6.test"]
    refusals = {s.labels["rule"]: s.value for s in relay.metrics.rcpt_refusals.collect()[0].samples if s.name.endswith("_total")}
    assert refusals == {"recipient.domain_unroutable": 3.0, "lookup.failed": 1.0}
    checks = {s.labels["result"]: s.value for s in relay.metrics.recipient_domains.collect()[0].samples if s.name.endswith("_total")}
    assert checks == {"ok": 3.0, "recipient.domain_unroutable": 3.0, "lookup.failed": 1.0}


async def test_a_dead_domain_costs_one_lookup_until_its_negative_ttl_runs_out(start_relay, sink, dns_server) -> None:
    # Negative TTL (RFC 2308): the smaller of the SOA's own TTL and its minimum field, here 1 s.
    dns_server.zone("test", "@ 1 SOA ns.test. hostmaster.test. 1 3600 600 86400 1\n" + ZONE)
    relay = await start_relay(dns_config(dns_server))
    for _ in range(3):
        with pytest.raises(aiosmtplib.SMTPRecipientsRefused):
            await send(relay, [f"user{n}@dead.test" for n in range(20)])
    assert [q for q in dns_server.queries if q[0] == "dead.test"] == [("dead.test", "MX", "udp")]
    await asyncio.sleep(1.3)
    with pytest.raises(aiosmtplib.SMTPRecipientsRefused):
        await send(relay, ["again@dead.test"])
    assert len([q for q in dns_server.queries if q[0] == "dead.test"]) == 2


async def test_blocked_destinations_are_refused_without_a_lookup(start_relay, sink, dns_server) -> None:
    dns_server.zone("test", ZONE)
    policy = ('[policy]\ndefault_action = "relay"\n[actions]\n"recipient.*" = "reject"\n'
              '[checks.recipient]\nblocked_tlds = ["ru"]\nblocked_domains = ["sanctioned.test"]\n')
    relay = await start_relay(dns_config(dns_server), policy=policy)
    errors, _ = await send(relay, ["a@ok.test", "b@shop.sanctioned.test", "c@mail.example.ru"])
    assert set(errors) == {"b@shop.sanctioned.test", "c@mail.example.ru"}
    code, msg = errors["b@shop.sanctioned.test"]
    refused = Replies.recipient_refused("recipient.blocked_destination", "")
    assert (code, msg.split(" ", 1)[0]) == (refused.code, refused.enhanced) and "[recipient.blocked_destination]" in msg

    assert not [q for q in dns_server.queries if "sanctioned" in q[0] or q[0].endswith("ru")]
    assert [r for r, _ in sink.received[0].rcpts] == ["a@ok.test"]


async def test_monitor_mode_accepts_and_tags(start_relay, sink, dns_server) -> None:
    dns_server.zone("test", ZONE)
    relay = await start_relay(dns_config(dns_server), monitor=True)
    errors, _ = await send(relay, ["a@ok.test", "b@dead.test"])
    assert errors == {}
    [got] = sink.received
    assert b"X-Sendwarden-Findings: " in got.data and b"recipient.domain_unroutable" in got.data


async def test_switched_off_no_lookup_is_made(start_relay, sink, dns_server) -> None:
    dns_server.zone("test", ZONE)
    relay = await start_relay({"dns": {"nameservers": [dns_server.nameserver]}})  # verify_domains off (tests' default)
    errors, _ = await send(relay, ["b@dead.test"])
    assert errors == {} and dns_server.queries == []
    assert relay.config.file.recipients.verify_domains is False


async def test_scan_judges_recipients_as_the_relay_does(dns_server, tmp_path, cli_env) -> None:
    from tests.conftest import ROOT
    from tests.support.scancli import scan_json

    dns_server.zone("test", ZONE)
    policy = tmp_path / "p.toml"
    policy.write_text('[actions]\n"recipient.*" = "reject"\n[checks.recipient]\nblocked_tlds = ["ru"]\n')
    config = tmp_path / "sendwarden.toml"
    config.write_text(f'state_dir = "{tmp_path / "var"}"\npolicy = "{policy}"\n[dns]\nnameservers = ["{dns_server.nameserver}"]\n')

    async def scan(*args: str) -> tuple[int, list[tuple[str, str]]]:
        """The exit status, and each recipient refused at RCPT with its enhanced code and reply."""
        code, doc = await scan_json(cli_env, config, ROOT / "examples" / "compliant.eml", *args)
        return code, [(r["address"], r["smtp"]["enhanced"] + " " + r["smtp"]["text"]) for r in doc["rcpts_refused"]]

    # As the relay: the refused recipient is refused at RCPT, the other one gets the message.
    code, refused = await scan("--rcpt", "a@ok.test", "--rcpt", "b@x.example.ru")
    assert code == 0 and [a for a, _ in refused] == ["b@x.example.ru"] and "[recipient.blocked_destination]" in refused[0][1]
    # With no recipient left, the relay takes no message: reject.
    code, refused = await scan("--rcpt", "b@x.example.ru")
    assert code == 3 and [a for a, _ in refused] == ["b@x.example.ru"]
    assert await scan("--rcpt", "b@dead.test") == (0, [])  # offline: no lookup
    assert not [q for q in dns_server.queries if q[0] == "dead.test"]
    code, refused = await scan("--online", "--rcpt", "a@ok.test", "--rcpt", "b@dead.test")
    assert code == 0 and refused[0][0] == "b@dead.test" and refused[0][1].startswith("5.1.2 ")
