"""privacy.link_dead end to end: the relay records a privacy link, `links check` (a real CLI
process, a real HTTP server and the loopback DNS server) finds it dead and marks it in the
store (SQLite, or PostgreSQL shared by a fleet), new messages carrying it are refused while
others pass, metrics and `status` name the sender domain, and a later check that finds the page
alive clears the mark."""

from __future__ import annotations

import json

import pytest

from proxy.replies import Replies
from proxy.store.base import DeadLink
from tests.commands.test_links import run_cli
from tests.conftest import ROOT
from tests.outbound.test_linkprobe import Server, http  # noqa: F401  (the loopback HTTP server fixture)
from tests.support.recipient_helpers import send_message, status_of
from tests.support.scancli import scan_json
from tests.support.smtpclient import enhanced


COMPLIANT = (ROOT / "examples" / "compliant.eml").read_bytes().replace(b"\n", b"\r\n")
POLICY = '[actions]\n"privacy.*" = "reject"\n"unsubscribe.*" = "reject"\n[checks.privacy]\nrequire_https = false\n'
REFUSED, RELAYED = Replies.policy_reject([], ""), Replies.relayed("", "")


def with_privacy(url: str) -> bytes:
    return COMPLIANT.replace(b"https://shop.example.com/privacy", url.encode())


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:{tmp_path / 'var' / 'recipients.sqlite3'}"
    return request.getfixturevalue("pg_url")


async def test_dead_privacy_link_is_marked_refused_and_cleared(start_relay, sink, dns_server, http: Server,  # noqa: F811
                                                               tmp_path, cli_env, store_url) -> None:
    port = http.base.rsplit(":", 1)[1]
    dns_server.zone("shop.test", "privacy A 127.0.0.1\n")
    gone, live = f"http://privacy.shop.test:{port}/gone", f"http://privacy.shop.test:{port}/privacy"
    relay = await start_relay({"store": store_url}, policy=POLICY)
    assert (await send_message(relay, with_privacy(gone)))[0] == RELAYED.code
    assert (await send_message(relay, with_privacy(live)))[0] == RELAYED.code

    config = tmp_path / "cli.toml"
    config.write_text(f'state_dir = "{tmp_path / "var"}"\nstore = "{store_url}"\n[dns]\nnameservers = ["{dns_server.nameserver}"]\n'
                      '[links]\nallow_networks = ["127.0.0.0/8"]\n')
    rc, out = await run_cli(cli_env, "--config", str(config))
    assert rc == 11 and f"DEAD  {gone}" in out and "marked dead in the store" in out, out  # not ready
    [mark] = await relay.store.dead_privacy_links()
    assert (mark.sender_domain, mark.url, mark.reason) == ("shop.example.com", gone, "HTTP 404 Not Found")

    await relay.refresh_reputation()  # what the relay does every [reputation] refresh seconds
    code, text = await send_message(relay, with_privacy(gone))
    assert (code, enhanced(text)) == (REFUSED.code, REFUSED.enhanced) and "[privacy.link_dead]" in text, text
    assert (await send_message(relay, with_privacy(live)))[0] == RELAYED.code
    samples = {s.labels["sender_domain"]: s.value for s in relay.metrics.privacy_links_dead.collect()[0].samples}
    assert samples == {"shop.example.com": 1.0}
    assert status_of(relay)["privacy_links_dead"] == {"shop.example.com": 1}

    # The sender fixes the page: the next check finds it alive and clears the mark.
    http.fixed = True
    rc, out = await run_cli(cli_env, "--config", str(config), "--json")
    assert rc == 0 and all(json.loads(line)["alive"] for line in out.splitlines()), out
    assert await relay.store.dead_privacy_links() == []
    await relay.refresh_reputation()
    assert (await send_message(relay, with_privacy(gone)))[0] == RELAYED.code
    assert [s.value for s in relay.metrics.privacy_links_dead.collect()[0].samples] == [0.0]  # cleared: set to 0 (see reputation._export)


def test_marks_set_cleared_and_kept() -> None:
    from proxy.commands.links import marks
    from proxy.outbound.linkprobe import ProbeResult
    from proxy.store.base import PrivacyLink

    def result(url: str, alive: bool, error: str = "") -> ProbeResult:
        return ProbeResult(PrivacyLink(url, "shop.example.com", 1.0, 2.0, 1), alive, None if error else 200, url, "GET", error)

    old = [DeadLink("https://a.example/privacy", "shop.example.com", 1.0, 1.0, "x"),
           DeadLink("https://c.example/privacy", "shop.example.com", 1.0, 1.0, "x"),
           DeadLink("https://gone.example/privacy", "shop.example.com", 1.0, 1.0, "x")]
    dead, alive = marks([result("https://A.example/privacy/", True), result("https://b.example/privacy?u=1", False, "HTTP 404"),
                         result("https://c.example/privacy", False, "not checked: DNS lookup failed: SERVFAIL")], old, 5.0)
    assert [(d.url, d.reason) for d in dead] == [("https://b.example/privacy", "HTTP 404")]
    # a.example came back; gone.example left its window; c.example could not be checked: kept.
    assert sorted(alive) == [("shop.example.com", "https://a.example/privacy"), ("shop.example.com", "https://gone.example/privacy")]


async def test_marks_stay_in_force_when_the_store_cannot_be_read(start_relay, sink) -> None:
    # Suppressions and caps off: this relay needs the store for nothing else at RCPT.
    relay = await start_relay(policy=POLICY + "[checks.optout]\nenabled = false\n[checks.frequency]\nenabled = false\n")
    url = "https://shop.example.com/privacy"
    await relay.store.mark_privacy_links([DeadLink(url, "shop.example.com", 1.0, 2.0, "HTTP 500")], [], 2.0)
    assert await relay.refresh_reputation()
    await relay.store.close()  # the store goes away: the snapshot already read stays in force
    assert not await relay.refresh_reputation()
    code, text = await send_message(relay, COMPLIANT)
    assert (code, enhanced(text)) == (REFUSED.code, REFUSED.enhanced) and "[privacy.link_dead]" in text
    failures = [s.value for s in relay.metrics.reputation_failures.collect()[0].samples if s.name.endswith("_total")]
    assert failures == [1.0]
    await relay.store.open()


async def test_scan_online_reads_the_marks(tmp_path, cli_env) -> None:
    from proxy.config import load_config
    from proxy.store import from_config

    config = tmp_path / "sendwarden.toml"
    config.write_text(f'state_dir = "{tmp_path / "var"}"\n')
    store = from_config(load_config(config))
    await store.open()
    await store.mark_privacy_links([DeadLink("https://shop.example.com/privacy", "shop.example.com", 1.0, 2.0, "timeout")], [], 2.0)
    await store.close()
    eml = tmp_path / "m.eml"
    eml.write_bytes(COMPLIANT)

    code, doc = await scan_json(cli_env, config, eml, "--online")
    assert code == 3 and [f["rule"] for f in doc["findings"]] == ["privacy.link_dead"]
    assert (await scan_json(cli_env, config, eml))[1]["findings"] == []
