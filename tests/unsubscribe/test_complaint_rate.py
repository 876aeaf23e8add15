"""The complaint-rate guard end to end over the real relay: deliveries counted per sender domain
and brand, ARF complaints counted where the intake acts on them, a warning (metric and log
line), compliance.complaint_rate deferring the domain's marketing above the limit, clearing
itself when the rate falls, and `sendwarden complaints show` reading the same store (SQLite,
or PostgreSQL shared by a fleet)."""

from __future__ import annotations

import asyncio
import json
import time

import aiosmtplib
import pytest
from structlog.testing import capture_logs

from proxy.policy.families.complaints import ComplaintRateOptions, Rate, rates
from proxy.replies import Replies
from proxy.store.base import SenderCount

from tests.conftest import FIXTURES, SENDWARDEN
from tests.support.recipient_helpers import COMPLIANT, send_message, status_of
from tests.support.scancli import scan_json
from tests.support.smtpclient import enhanced

POLICY = """
[policy]
default_action = "relay"
[actions]
"compliance.complaint_rate" = "tempfail"
[checks.complaint_rate]
min_delivered = 10
warning = 0.05
limit = 0.1
"""
REPORT = (FIXTURES / "arf" / "abuse-report.eml").read_bytes()
# The guard's default action (tempfail) answers with the policy's deferral; the rest is relayed.
DEFERRED, RELAYED = Replies.policy_tempfail([], ""), Replies.relayed("", "")


def test_levels_and_rates_per_domain_and_brand() -> None:
    opts = ComplaintRateOptions(min_delivered=100)
    found = rates([SenderCount("a.example", "shop", 900, 1), SenderCount("b.example", "shop", 100, 1),
                   SenderCount("c.example", "", 50, 5)])
    assert found["brand:shop"] == Rate("brand:shop", 1000, 2)
    assert [found[s].level(opts) for s in ("domain:a.example", "domain:b.example", "domain:c.example", "brand:shop")] == \
        ["warning", "limit", "low_volume", "warning"]
    with pytest.raises(ValueError):
        ComplaintRateOptions(warning=0.01, limit=0.005)


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:{tmp_path / 'var' / 'recipients.sqlite3'}"
    return request.getfixturevalue("pg_url")


async def send(relay, rcpts: list[str]) -> tuple[int, str]:  # type: ignore[no-untyped-def]
    return await send_message(relay, COMPLIANT, tuple(rcpts))


async def complain(relay, complainant: str) -> None:
    # A report is acted on only from a feedback loop (here: the client 127.0.0.1, configured) and
    # for a recipient the send ledger has (issue 17); tests/reliability/test_complaints.py has the forged ones.
    await relay.store.record_sends([complainant], "marketing", "marketing", time.time() - 60)
    client = aiosmtplib.SMTP(hostname="127.0.0.1", port=relay.port, start_tls=False)
    await client.connect()
    try:
        raw = REPORT.replace(b"complainer@example.net", complainant.encode()).replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
        _, text = await client.sendmail("", ["abuse@relay.test"], raw)
        assert text.startswith("2.0.0"), text
    finally:
        await client.quit()


async def show(tmp_path, store_url: str, env, *args: str) -> list[dict]:
    policy = tmp_path / "cr.toml"
    policy.write_text(POLICY)
    config = tmp_path / "cli.toml"
    config.write_text(f'state_dir = "{tmp_path / "var"}"\nstore = "{store_url}"\npolicy = "{policy}"\n')
    proc = await asyncio.create_subprocess_exec(*SENDWARDEN, "complaints", "show", "--config", str(config), "--json", *args,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0 and not err, err
    return [json.loads(line) for line in out.splitlines()]


def levels(relay) -> dict[str, float]:
    return {s.labels["scope"]: s.value for s in relay.metrics.complaint_rate_level.collect()[0].samples}


async def test_complaints_warn_then_defer_marketing_then_clear(start_relay, sink, tmp_path, cli_env, store_url) -> None:
    relay = await start_relay({"store": store_url, "complaints": {"address": "abuse@relay.test", "feedback_networks": ["127.0.0.1/32"]}}, policy=POLICY)
    assert (await send(relay, [f"r{n}@example.org" for n in range(10)]))[0] == RELAYED.code
    await complain(relay, "r1@example.org")
    with capture_logs() as logs:
        await relay.refresh_reputation()
    assert [e["event"] for e in logs if e["event"].startswith("complaint_rate")] == ["complaint_rate_warning"] * 2
    assert levels(relay) == {"domain:shop.example.com": 1.0, "brand:marketing": 1.0}
    assert (await send(relay, ["r2@example.org"]))[0] == RELAYED.code  # a warning does not hold mail

    await complain(relay, "r3@example.org")  # 2 in 11: 18 %, over the 10 % limit
    with capture_logs() as logs:
        await relay.refresh_reputation()
    over = [e for e in logs if e["event"] == "complaint_rate_over_limit"]
    assert {e["scope"] for e in over} == {"domain:shop.example.com", "brand:marketing"}
    assert over[0]["complaints"] == 2 and over[0]["delivered"] == 11
    assert status_of(relay)["complaint_rates"]["domain:shop.example.com"] == {"rate": 2 / 11, "level": "limit"}
    code, text = await send(relay, ["r4@example.org"])
    assert (code, enhanced(text)) == (DEFERRED.code, DEFERRED.enhanced) and "[compliance.complaint_rate]" in text, text
    assert "shop.example.com: 2 spam complaints on 11 delivered" in text
    assert len(sink.received) == 2

    docs = {d["scope"]: d for d in await show(tmp_path, store_url, cli_env)}
    assert docs["domain:shop.example.com"]["level"] == "limit" and docs["domain:shop.example.com"]["complaints"] == 2
    assert docs["brand:marketing"]["delivered"] == 11 and docs["domain:shop.example.com"]["window"]["days"] == 7
    assert [d["scope"] for d in await show(tmp_path, store_url, cli_env, "--domain", "other.example")] == []

    # More mail delivered (by another node of the fleet, say): the rate falls, the guard clears.
    await relay.store.count_delivered("shop.example.com", "marketing", 40, time.time())
    with capture_logs() as logs:
        await relay.refresh_reputation()
    assert {e["scope"] for e in logs if e["event"] == "complaint_rate_cleared"} == {"domain:shop.example.com", "brand:marketing"}
    assert (await send(relay, ["r4@example.org"]))[0] == RELAYED.code
    assert levels(relay) == {"domain:shop.example.com": 0.0, "brand:marketing": 0.0}


async def test_scan_online_reads_the_rates(tmp_path, cli_env) -> None:
    from proxy.config import load_config
    from proxy.store import from_config

    policy = tmp_path / "cr.toml"
    policy.write_text(POLICY)
    config = tmp_path / "sendwarden.toml"
    config.write_text(f'state_dir = "{tmp_path / "var"}"\npolicy = "{policy}"\n')
    store = from_config(load_config(config))
    await store.open()
    await store.count_delivered("shop.example.com", "marketing", 10, time.time())
    await store.record_complaint("shop.example.com", time.time())
    await store.record_complaint("shop.example.com", time.time())
    await store.close()
    eml = tmp_path / "m.eml"
    eml.write_bytes(COMPLIANT)
    code, doc = await scan_json(cli_env, config, eml, "--online")
    assert code == 4 and [f["rule"] for f in doc["findings"]] == ["compliance.complaint_rate"], doc
    assert doc["smtp"]["code"] == DEFERRED.code


async def test_a_brand_over_the_limit_defers_its_other_domains_too(start_relay, sink) -> None:
    relay = await start_relay(policy=POLICY)
    now = time.time()
    # The brand "marketing" (this stream's) sends from two domains; the other one drew the complaints.
    await relay.store.count_delivered("shop.example.com", "marketing", 100, now)
    await relay.store.count_delivered("outlet.example.com", "marketing", 10, now - 7200)
    await relay.store.count_delivered("outlet.example.com", "marketing", 10, now)
    for _ in range(20):
        await relay.store.record_complaint("outlet.example.com", now)
    await relay.refresh_reputation()
    assert relay.reputation.levels["domain:shop.example.com"] == "ok"
    assert relay.reputation.levels["brand:marketing"] == "limit"
    code, text = await send(relay, ["r@example.org"])
    assert (code, enhanced(text)) == (DEFERRED.code, DEFERRED.enhanced), text
    assert "[compliance.complaint_rate]" in text and "marketing: 20 spam complaints" in text, text


async def test_too_little_volume_does_not_count(start_relay, sink) -> None:
    relay = await start_relay({"complaints": {"address": "abuse@relay.test", "feedback_networks": ["127.0.0.1/32"]}}, policy=POLICY)
    assert (await send(relay, ["a@example.org", "b@example.org"]))[0] == RELAYED.code
    await complain(relay, "a@example.org")  # 1 in 2, but under the minimum volume of 10
    await relay.refresh_reputation()
    assert (await send(relay, ["c@example.org"]))[0] == RELAYED.code
    assert levels(relay) == {"domain:shop.example.com": 0.0, "brand:marketing": 0.0}
