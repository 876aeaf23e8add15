"""Two real relay processes sharing one PostgreSQL database: what one node learns, the other
enforces at once."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import aiohttp
import aiosmtplib
import pytest

from proxy.store import ConsentRecord, open_store
from tests.fleet_nodes import Node, start_node
from tests.recipient_helpers import BARE, SENDER, policy
from tests.sink import Sink
from tests.test_store import NORMALIZE
from tests.test_unsubscribe_loop import TOKEN_IN_URL

FLEET_POLICY = policy(optout='insert_list_unsubscribe = true\nunsubscribe_scope = "brand"')


async def send(node: Node, rcpt: str) -> tuple[int, str]:
    """(code, text) of one message to one recipient through `node`; a refusal is its RCPT reply."""
    client = aiosmtplib.SMTP(hostname="127.0.0.1", port=node.port, start_tls=False, timeout=10)
    await client.connect()
    try:
        _, text = await client.sendmail(SENDER, [rcpt], BARE)
        return 250, text
    except aiosmtplib.SMTPRecipientsRefused as exc:
        return exc.recipients[0].code, exc.recipients[0].message
    finally:
        client.close()


@pytest.fixture
async def fleet(tmp_path: Path, sink: Sink, pg_url: str, cli_env: dict[str, str]):
    policy_file = tmp_path / "policy.toml"
    policy_file.write_text(FLEET_POLICY)
    nodes = await asyncio.gather(*(start_node(tmp_path, name, pg_url, sink.url, policy_file, cli_env) for name in ("a", "b")))
    store = open_store(pg_url, NORMALIZE)
    await store.open()
    try:
        yield nodes[0], nodes[1], store
    finally:
        await store.close()
        await asyncio.gather(*(n.stop() for n in nodes))


async def test_unsubscribe_on_a_refuses_on_b_and_caps_count_across_both(fleet, sink: Sink) -> None:
    a, b, store = fleet
    now = time.time()
    await store.add_consent([ConsentRecord(r, "shop", now - 60, "form", "p") for r in
                             ("reader@example.org", "capped@example.org")], now)

    assert (await send(a, "reader@example.org"))[0] == 250
    token = TOKEN_IN_URL.search(sink.received[-1].data).group(1).decode()
    async with aiohttp.ClientSession() as http:
        async with http.post(f"http://127.0.0.1:{a.web_port}/unsubscribe/{token}", data="List-Unsubscribe=One-Click",
                             headers={"Content-Type": "application/x-www-form-urlencoded"}) as resp:
            assert resp.status == 200
    clicked = time.monotonic()
    code, text = await send(b, "reader@example.org")
    assert time.monotonic() - clicked < 1.0
    assert code == 550 and "optout.suppressed" in text

    # The policy's cap is 2 per 7 days for the brand: one message through each node uses it up.
    assert (await send(a, "capped@example.org"))[0] == 250
    assert (await send(b, "capped@example.org"))[0] == 250
    for node in (a, b):
        code, text = await send(node, "capped@example.org")
        assert code == 450 and "frequency.exceeded" in text
    assert len(sink.received) == 3
