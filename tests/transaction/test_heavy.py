"""Heavy messages are judged in the judging pool, and the running relay makes judging threads
give the event loop its turn soon (proxy/transaction/heavy.py)."""

from __future__ import annotations

import sys

from proxy.message.mime import Message
from proxy.transaction import heavy
from tests.message.test_elide import SHAPES


async def test_a_started_relay_shortens_the_switch_interval(start_relay) -> None:
    sys.setswitchinterval(0.005)
    await start_relay()
    assert sys.getswitchinterval() == heavy.SWITCH_INTERVAL


async def test_a_heavy_message_parsed_in_the_pool_is_the_same_view() -> None:
    raw = SHAPES["base64 attachment"]
    assert heavy.is_heavy(raw)
    off_loop = await heavy.parse(raw)
    on_loop = Message.from_bytes(raw)
    assert off_loop.attachments == on_loop.attachments and off_loop.text == on_loop.text
