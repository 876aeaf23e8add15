"""The event loop the service runs on: uvloop (libuv's loop, in C).

The relay spends what its checks leave on asyncio's own machinery: the selector loop's
`_run_once`, handles and timers (aiosmtpd re-arms a timeout on every command), stream reads and
transport writes, all Python in the stdlib's loop. uvloop does the same in C behind the same
API (asyncio transports, protocols, streams, `start_tls`), so aiosmtpd, aiohttp and asyncpg run
on it unchanged: 21.33 M instructions per relayed 30 KB newsletter against 22.21 M on the stdlib
loop (bench/instructions.py --cases sendwarden --few 10 --many 40, callgrind). The test suite
runs on it too (tests/conftest.py), so what is tested is what runs.
"""

from __future__ import annotations

from collections.abc import Coroutine
from typing import Any, TypeVar

import uvloop

T = TypeVar("T")


def run(main: Coroutine[Any, Any, T]) -> T:
    """asyncio.run(main) on a uvloop event loop."""
    return uvloop.run(main)


new_event_loop = uvloop.new_event_loop

__all__ = ["new_event_loop", "run"]
