"""Two real relay processes sharing one PostgreSQL database: what one node learns, the other
enforces at once, and a message one node held is reviewed from the other's CLI."""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path

import aiohttp
import aiosmtplib
import pytest

from proxy.replies import Replies
from proxy.store import ConsentRecord, open_store
from tests.conftest import SENDWARDEN
from tests.support.fleet_nodes import Node, start_node
from tests.support.pgdb import cut_off, restore
from tests.support.quarantine_env import HOLDING_POLICY, PLAIN
from tests.support.recipient_helpers import BARE, SENDER, policy
from tests.support.sink import Sink
from tests.store.test_sqlite import NORMALIZE
from tests.unsubscribe.test_loop import TOKEN_IN_URL
from tests.support.smtpclient import send_one

FLEET_POLICY = policy(optout='insert_list_unsubscribe = true\nunsubscribe_scope = "brand"')
# Receipts: at most 2 messages an hour per sender domain, across the fleet.
RELAYED = Replies.relayed("", "")
RATE = '[[rate_limits]]\nname = "receipts"\nper = "sender_domain"\nmessages = 2\nwindow = 3600\nclasses = ["transactional"]\n'
RECEIPTS = "billing@receipts.example.com"


@pytest.fixture
async def fleet(tmp_path: Path, sink: Sink, pg_url: str, cli_env: dict[str, str]):
    policy_file = tmp_path / "policy.toml"
    policy_file.write_text(FLEET_POLICY)
    nodes = await asyncio.gather(*(start_node(tmp_path, name, pg_url, sink.url, policy_file, cli_env, RATE)
                                   for name in ("a", "b")))
    store = open_store(pg_url, NORMALIZE)
    await store.open()
    try:
        yield nodes[0], nodes[1], store
    finally:
        await store.close()
        await asyncio.gather(*(n.stop() for n in nodes))


async def test_unsubscribe_on_a_refuses_on_b_and_limits_count_across_both(fleet, sink: Sink) -> None:
    a, b, store = fleet
    now = time.time()
    await store.add_consent([ConsentRecord(r, "shop", now - 60, "form", "p") for r in
                             ("reader@example.org", "capped@example.org")], now)

    assert (await send_one(a.port, BARE, rcpts=["reader@example.org"]))[0] == RELAYED.code
    token = TOKEN_IN_URL.search(sink.received[-1].data).group(1).decode()
    async with aiohttp.ClientSession() as http:
        async with http.post(f"http://127.0.0.1:{a.web_port}/unsubscribe/{token}", data="List-Unsubscribe=One-Click",
                             headers={"Content-Type": "application/x-www-form-urlencoded"}) as resp:
            assert resp.status == 200
    clicked = time.monotonic()
    code, text = await send_one(b.port, BARE, rcpts=["reader@example.org"])
    assert time.monotonic() - clicked < 1.0
    assert code == Replies.recipient_refused("optout.suppressed", "").code and "optout.suppressed" in text

    # The policy's cap is 2 per 7 days for the brand: one message through each node uses it up.
    assert (await send_one(a.port, BARE, rcpts=["capped@example.org"]))[0] == RELAYED.code
    assert (await send_one(b.port, BARE, rcpts=["capped@example.org"]))[0] == RELAYED.code
    for node in (a, b):
        code, text = await send_one(node.port, BARE, rcpts=["capped@example.org"])
        assert code == Replies.recipient_deferred("frequency.exceeded", "").code and "frequency.exceeded" in text
    assert len(sink.received) == 3

    # The receipts rate limit, 2 per hour, is one bucket for the fleet.
    assert (await send_one(a.port, BARE, RECEIPTS, ["buyer@example.org"]))[0] == RELAYED.code
    assert (await send_one(b.port, BARE, RECEIPTS, ["buyer@example.org"]))[0] == RELAYED.code
    for node in (a, b):
        code, text = await send_one(node.port, BARE, RECEIPTS, ["buyer@example.org"])
        assert (code, text.split(" ", 1)[0]) == (Replies.rate_limited("").code, Replies.rate_limited("").enhanced)
        assert "receipts" in text


async def cli(node: Node, env: dict[str, str], *args: str) -> tuple[int, str, str]:
    """`sendwarden ARGS --config NODE's config` as a subprocess: that node's CLI."""
    proc = await asyncio.create_subprocess_exec(*SENDWARDEN, *args, "--config", str(node.config), env=env,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert b"Traceback" not in err, err.decode()
    return proc.returncode or 0, out.decode(), err.decode()


async def test_a_message_held_by_a_is_released_from_b_exactly_once(tmp_path: Path, sink: Sink, pg_url: str,
                                                                   cli_env: dict[str, str]) -> None:
    policy_file = tmp_path / "holding.toml"
    policy_file.write_text(HOLDING_POLICY)
    a, b = await asyncio.gather(*(start_node(tmp_path, name, pg_url, sink.url, policy_file, cli_env) for name in ("a", "b")))
    name = pg_url.rsplit("/", 1)[1]
    try:
        client = aiosmtplib.SMTP(hostname="127.0.0.1", port=a.port, start_tls=False)
        await client.connect()
        _, text = await client.sendmail(SENDER, ["reader@example.org"], PLAIN)
        client.close()
        hold_id = re.search(r"held for review id=([0-9a-f]{24})", text).group(1)

        code, out, _ = await cli(b, cli_env, "quarantine", "list")
        assert code == 0 and hold_id in out
        code, out, _ = await cli(b, cli_env, "quarantine", "show", hold_id, "--raw")
        assert code == 0 and out.encode() == PLAIN  # the exact bytes node A took

        # The database goes away: B's CLI says so in one line and nothing is sent or changed.
        cut_off(name)
        try:
            code, _, err = await cli(b, cli_env, "quarantine", "release", hold_id)
            assert code != 0 and "quarantine" in err and sink.received == []
        finally:
            restore(name)

        # Back: releases racing from both nodes' CLIs send it once.
        sink.behaviour.data_delay = 1.0
        runs = await asyncio.gather(*(cli(node, cli_env, "quarantine", "release", hold_id, "--as", f"op{n}")
                                      for n, node in enumerate((b, a, b, a))))
        assert len(sink.received) == 1
        assert sum("released: 250" in out for _, out, _ in runs) == 1, runs  # the sink's own reply, passed on

        code, out, _ = await cli(a, cli_env, "quarantine", "list", "--status", "released")
        assert hold_id in out
    finally:
        restore(name)
        await asyncio.gather(a.stop(), b.stop())
