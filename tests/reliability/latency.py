"""The latency probe of the hostile-input tests: one more client, on its own connection, sends
NOOP every 10 ms while something heavy is judged, and reports the slowest answer. A relay that
holds its event loop shows it here (the target: every NOOP answered within 100 ms)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from typing import Any, Self

from tests.support.smtpclient import RawClient


class NoopProbe:
    """`async with NoopProbe(port) as probe: ...`; then `probe.worst` (seconds) and `probe.count`."""

    def __init__(self, port: int, interval: float = 0.01) -> None:
        self.port = port
        self.interval = interval
        self.worst = 0.0
        self.count = 0
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._client: RawClient | None = None

    async def __aenter__(self) -> Self:
        self._client = await RawClient.connect(self.port)
        assert (await self._client.reply()).startswith("220")
        await self._client.cmd("EHLO probe.test")
        self._task = asyncio.create_task(self._run())
        await asyncio.sleep(self.interval * 3)
        return self

    async def _run(self) -> None:
        assert self._client is not None
        while not self._stop.is_set():
            t = time.perf_counter()
            reply = await self._client.cmd("NOOP", timeout=30)
            assert reply.startswith("250"), reply
            self.worst = max(self.worst, time.perf_counter() - t)
            self.count += 1
            await asyncio.sleep(self.interval)

    async def __aexit__(self, *exc: object) -> None:
        self._stop.set()
        assert self._task is not None and self._client is not None
        await self._task
        await self._client.close()

    def ms(self) -> int:
        return round(self.worst * 1000)


async def worst_noop_during(port: int, work: Awaitable[Any]) -> tuple[Any, NoopProbe]:
    """Await `work` while a NoopProbe runs; its result and the probe."""
    async with NoopProbe(port) as probe:
        result = await work
    return result, probe
