"""content.blocklisted_link: link domains (and the From domain) looked up in DNS URI blocklists
on the loopback DNS server, through the relay, `scan --online` and the milter's engine; return
codes mapped to reasons, "query refused" codes and rewritten answers as lookup failures, never
hits; the newsletters of the corpus pass with the lists on."""

from __future__ import annotations

import pytest

from proxy.message.mime import Message
from proxy.replies import Replies
from proxy.policy.families.blocklist import BlocklistOptions, Zone, ZoneAnswer, answer_findings, lookup_domains
from tests.conftest import ROOT
from tests.support.dnsserver import DnsServer
from tests.support.recipient_helpers import send_message
from tests.support.scancli import scan_json
from tests.support.smtpclient import enhanced

COMPLIANT = (ROOT / "examples" / "compliant.eml").read_bytes().replace(b"\n", b"\r\n")
CORPUS = ROOT / "tests" / "fixtures" / "corpus"
REFUSED, DEFERRED = Replies.policy_reject([], ""), Replies.policy_tempfail([], "")
RELAYED = Replies.relayed("", "")
DBL = {"zone": "dbl.test", "codes": {"127.0.1.2": "spam domain", "127.0.1.4": "phishing domain"},
       "refused": ["127.255.255.254"]}
MULTI = {"zone": "multi.test", "bits": {8: "phishing", 16: "malware"}, "refused": ["127.0.0.1"]}
POLICY = """
[actions]
"content.blocklisted_link" = "reject"
"lookup.failed" = "tempfail"
[checks.blocklist]
enabled = true
[[checks.blocklist.zones]]
zone = "dbl.test"
codes = { "127.0.1.2" = "spam domain", "127.0.1.4" = "phishing domain" }
refused = ["127.255.255.254"]
[[checks.blocklist.zones]]
zone = "multi.test"
bits = { 8 = "phishing", 16 = "malware" }
refused = ["127.0.0.1"]
"""


def with_link(url: str) -> bytes:
    return COMPLIANT.replace(b'<p>Example Shop, 1 Market', f'<p><a href="{url}">Deal</a></p>\r\n<p>Example Shop, 1 Market'.encode())


def lists(server: DnsServer) -> DnsServer:
    server.zone("dbl.test", """
        evil-shop.com      A 127.0.1.2
        phish-bank.net     A 127.0.1.4
        via-public.org     A 127.255.255.254
        rewritten.info     A 198.51.100.7
    """)
    server.zone("multi.test", """
        both-bad.com       A 127.0.0.24
        blocked-query.com  A 127.0.0.1
    """)
    return server


# -- pure ---------------------------------------------------------------------------------------

def test_codes_bits_and_refusals() -> None:
    opts = BlocklistOptions(enabled=True, zones=[Zone(**DBL), Zone(**MULTI)])
    found = answer_findings(opts, (
        ZoneAnswer("evil-shop.com", "dbl.test", ("127.0.1.2",)),
        ZoneAnswer("both-bad.com", "multi.test", ("127.0.0.24",)),
        ZoneAnswer("fine.com", "dbl.test", ()),
    ))
    assert [(f.rule, f.detail) for f in found] == [
        ("content.blocklisted_link", "evil-shop.com is listed on dbl.test: spam domain"),
        ("content.blocklisted_link", "both-bad.com is listed on multi.test: phishing, malware"),
    ]
    for answer in (ZoneAnswer("a.com", "dbl.test", ("127.255.255.254",)), ZoneAnswer("a.com", "multi.test", ("127.0.0.1",)),
                   ZoneAnswer("a.com", "dbl.test", ("198.51.100.7",)), ZoneAnswer("a.com", "dbl.test", error="SERVFAIL")):
        assert [f.rule for f in answer_findings(opts, (answer,))] == ["lookup.failed"]
    with pytest.raises(ValueError):
        BlocklistOptions(enabled=True)  # no zones
    with pytest.raises(ValueError):
        Zone(zone="x.test", bits={3: "two bits"})


def test_domains_looked_up_are_registrable_web_link_domains_and_from() -> None:
    msg = Message.from_bytes(with_link("https://www.Evil-Shop.com/deal?x=1").replace(
        b"</body>", b'<a href="http://192.0.2.7/x">ip</a><a href="mailto:a@b.com">m</a><a href="https://deep.sub.evil-shop.com/">again</a></body>'))
    opts = BlocklistOptions(enabled=True, zones=[Zone(**DBL)])
    assert lookup_domains(msg, opts) == ["example.com", "evil-shop.com"]
    assert lookup_domains(msg, BlocklistOptions(enabled=True, zones=[Zone(**DBL)], skip_domains=["shop.example.com"],
                                                check_from=False)) == ["evil-shop.com"]


# -- through the relay --------------------------------------------------------------------------

async def relay_with_lists(start_relay, dns_server, policy: str = POLICY, policy_timeout: float = 3, dns_timeout: float = 1.0):
    return await start_relay({"dns": {"nameservers": [dns_server.nameserver], "timeout": dns_timeout},
                              "timeouts": {"policy": policy_timeout}}, policy=policy)


async def test_listed_link_is_refused_with_the_reason(start_relay, sink, dns_server) -> None:
    relay = await relay_with_lists(start_relay, lists(dns_server))
    code, text = await send_message(relay, with_link("https://www.evil-shop.com/deal"))
    assert (code, enhanced(text)) == (REFUSED.code, REFUSED.enhanced) and "[content.blocklisted_link]" in text
    code, text = await send_message(relay, with_link("https://both-bad.com/"))
    assert (code, enhanced(text)) == (REFUSED.code, REFUSED.enhanced) and "[content.blocklisted_link]" in text
    assert sink.received == []
    code, _ = await send_message(relay, COMPLIANT)
    assert code == RELAYED.code and len(sink.received) == 1
    found = {s.labels["rule"] for s in relay.metrics.findings.collect()[0].samples if s.name.endswith("_total")}
    assert "content.blocklisted_link" in found
    looked = {(s.labels["zone"], s.labels["result"]) for s in relay.metrics.blocklist_lookups.collect()[0].samples
              if s.name.endswith("_total")}
    assert {("dbl.test", "listed"), ("multi.test", "listed"), ("dbl.test", "clean")} <= looked


async def test_refused_queries_and_failures_defer_never_pass(start_relay, sink, dns_server) -> None:
    lists(dns_server).behaviour.servfail.add("broken.com.multi.test")
    relay = await relay_with_lists(start_relay, dns_server)
    for url in ("https://via-public.org/", "https://blocked-query.com/", "https://rewritten.info/", "https://broken.com/"):
        code, text = await send_message(relay, with_link(url))
        assert (code, enhanced(text)) == (DEFERRED.code, DEFERRED.enhanced) and "[lookup.failed]" in text, (url, text)
    assert sink.received == []


async def test_lookups_run_in_parallel_under_the_policy_timeout(start_relay, sink, dns_server) -> None:
    # 8 domains x 2 zones at 0.3 s each: one after the other they would take 4.8 s, past the
    # 2.5 s policy budget (a lookup.failed); together they answer within it.
    lists(dns_server).behaviour.delay = 0.3
    relay = await relay_with_lists(start_relay, dns_server, policy_timeout=2.5, dns_timeout=2.4)
    links = "".join(f'<a href="https://site{n}.com/">{n}</a>' for n in range(7)).encode()
    code, text = await send_message(relay, COMPLIANT.replace(b"</body>", links + b"</body>"))
    assert code == RELAYED.code, text


async def test_corpus_newsletters_pass_with_the_lists_on(start_relay, sink, dns_server) -> None:
    relay = await relay_with_lists(start_relay, lists(dns_server))
    for name in ("newsletter_en.eml", "newsletter_nl.eml", "newsletter_mjml.eml"):
        data = (CORPUS / name).read_bytes().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
        code, text = await send_message(relay, data)
        assert code == RELAYED.code, (name, text)
    assert [q for q in dns_server.queries if q[0].endswith(".dbl.test")]


async def test_scan_online_looks_up_and_offline_does_not(dns_server, tmp_path, cli_env) -> None:
    lists(dns_server)
    policy = tmp_path / "policy.toml"
    policy.write_text(POLICY)
    config = tmp_path / "sendwarden.toml"
    config.write_text(f'state_dir = "{tmp_path / "var"}"\npolicy = "{policy}"\n[dns]\nnameservers = ["{dns_server.nameserver}"]\n')
    eml = tmp_path / "m.eml"
    eml.write_bytes(with_link("https://www.evil-shop.com/deal"))

    code, doc = await scan_json(cli_env, config, eml, "--online")
    assert code == 3 and doc["findings"] == [{"rule": "content.blocklisted_link", "action": "reject",
                                              "detail": "evil-shop.com is listed on dbl.test: spam domain"}]
    code, doc = await scan_json(cli_env, config, eml)
    assert code == 0 and doc["findings"] == []
