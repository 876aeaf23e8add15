"""Heavy messages are parsed and judged in a worker thread, so that other sessions are answered.

Parsing (the stdlib's pure-Python MIME parser) and judging are synchronous CPU work: on the
event loop, one message of 200,000 links held every other session for 0.9 s, 140 zip
attachments for 8 s, a 20 MB attachment for 2 s (NOOP on another connection, a loaded
two-core machine; tests/reliability/test_heavy_messages.py). Why a thread and not a process:
the work is pure Python (or C that releases the GIL: zlib, lxml's parser), and CPython makes a
thread that holds the GIL give it up every `sys.getswitchinterval()` (5 ms), so the loop gets
its turn within milliseconds while the thread works; a process would have to copy the message
and pickle the parsed view back (a 20 MB message: more than the parse itself). Small messages
stay on the loop: a thread hop costs about 50 us, a 30 KB newsletter is judged in 2 ms.

How soon the loop gets its turn is the interpreter's switch interval: a thread that wants the
GIL waits that long before the holder is made to give it up, and a NOOP takes the loop thread
several such turns (wake from select, read, answer). At CPython's 5 ms, three 20 MB messages
judged at once kept a NOOP waiting 80-130 ms; at 1 ms, 27-53 ms (bench/heavy_messages.py), and
the three were done sooner, not later. `share_the_gil` sets it when a relay or milter starts.

The same code runs either way (same results; the engine's own `check.error` handling). At most
JUDGE_WORKERS heavy messages are worked on at once, in a pool of their own, so that they never
take the threads that quarantine writes and store lookups need.
"""

from __future__ import annotations

import asyncio
import sys
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from proxy.message.mime import Message
from proxy.policy.engine import judge
from proxy.policy.loader import Policy
from proxy.policy.context import Context
from proxy.policy.verdict import Finding, Verdict

# Above this size, or with this many MIME boundary lines, a message is heavy.
HEAVY_BYTES = 256 * 1024
HEAVY_BOUNDARIES = 200
JUDGE_WORKERS = 2
_POOL = ThreadPoolExecutor(max_workers=JUDGE_WORKERS, thread_name_prefix="judge")


# Seconds a thread holding the GIL keeps it while another waits (CPython's default: 0.005).
SWITCH_INTERVAL = 0.001


def share_the_gil() -> None:
    """Make a judging thread give the event loop its turn within about a millisecond (see
    above); process-wide, so it is called by the running service, not on import."""
    sys.setswitchinterval(SWITCH_INTERVAL)


def is_heavy(content: bytes) -> bool:
    return len(content) > HEAVY_BYTES or content.count(b"\n--", 0, HEAVY_BYTES) > HEAVY_BOUNDARIES


async def _off_loop(fn: Any, *args: Any) -> Any:
    return await asyncio.get_running_loop().run_in_executor(_POOL, fn, *args)


def _parsed_and_viewed(content: bytes) -> Message:
    """The message with its lazy views built: the fact providers that run on the loop before
    judging read some of them (links, attachments), and must find them made."""
    message = Message.from_bytes(content)
    for view in ("subject", "from_addresses", "problems", "attachments", "distinct_links", "folded_words"):
        getattr(message, view)
    return message


async def parse(content: bytes, heavy: bool | None = None) -> Message:
    """Message.from_bytes, in the judging pool (views and all) when the message is heavy.
    `heavy`: `is_heavy(content)` when the caller knows it already (a pass over the bytes)."""
    if is_heavy(content) if heavy is None else heavy:
        return await _off_loop(_parsed_and_viewed, content)  # type: ignore[no-any-return]
    return Message.from_bytes(content)


async def judge_message(policy: Policy, message: Message, ctx: Context, extra: list[Finding] | None,
                        heavy: bool | None = None) -> Verdict:
    """`judge`, in the judging pool when the message is heavy (its lazy views, HTML, links and
    attachments, are built there too, on first use by a check). `heavy` as for `parse`."""
    if is_heavy(message.raw) if heavy is None else heavy:
        return await _off_loop(judge, policy, message, ctx, extra)  # type: ignore[no-any-return]
    return judge(policy, message, ctx, extra)


__all__ = ["HEAVY_BOUNDARIES", "HEAVY_BYTES", "JUDGE_WORKERS", "SWITCH_INTERVAL", "is_heavy", "judge_message", "parse",
           "share_the_gil"]
