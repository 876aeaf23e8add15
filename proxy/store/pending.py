"""After-relay writes (frequency counts, privacy links) that the store could not take, kept
and replayed once it is back, so that a message delivered during a database outage still counts
against its recipients' caps.

The queue lives in memory, bounded: a node killed during an outage loses what it held (logged
at shutdown), and past `limit` entries the oldest go first (logged). Writes are replayed in
order, with backoff, by one task; each keeps the time of the message it counts.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Awaitable, Callable

import structlog

from proxy.store.base import StoreError

log = structlog.get_logger("sendwarden.store")
Write = Callable[[], Awaitable[None]]


class PendingWrites:
    def __init__(self, timeout: float, limit: int = 100_000, first_delay: float = 0.5, max_delay: float = 30.0) -> None:
        self.timeout = timeout
        self.limit = limit
        self.first_delay = first_delay
        self.max_delay = max_delay
        self._queue: deque[tuple[str, Write]] = deque()
        self._task: asyncio.Task[None] | None = None
        self.dropped = 0

    def __len__(self) -> int:
        return len(self._queue)

    async def run(self, label: str, write: Write) -> None:
        """Try `write` now (within the timeout); keep it for later when the store cannot."""
        if self._queue:  # keep the order: behind what is already waiting
            self._keep(label, write)
            return
        try:
            async with asyncio.timeout(self.timeout):
                await write()
        except (StoreError, TimeoutError) as exc:
            log.error("store_write_deferred", write=label, error=str(exc) or type(exc).__name__)
            self._keep(label, write)

    def _keep(self, label: str, write: Write) -> None:
        if len(self._queue) >= self.limit:
            gone, _ = self._queue.popleft()
            self.dropped += 1
            log.error("store_write_dropped", write=gone, reason=f"more than {self.limit} writes waiting")
        self._queue.append((label, write))
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._replay())

    async def _replay(self) -> None:
        delay = self.first_delay
        while self._queue:
            await asyncio.sleep(delay)
            if await self._flush():
                log.info("store_writes_replayed")
                return
            delay = min(self.max_delay, delay * 2)

    async def _flush(self) -> bool:
        """Replay in order until one fails; True when nothing is left."""
        while self._queue:
            label, write = self._queue[0]
            try:
                async with asyncio.timeout(self.timeout):
                    await write()
            except (StoreError, TimeoutError):
                return False
            except ValueError as exc:  # cannot ever succeed: do not block the rest
                log.error("store_write_failed", write=label, error=str(exc))
            self._queue.popleft()
        return True

    async def close(self) -> None:
        """One last attempt; what still cannot be written is reported, not silently lost."""
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        if self._queue and not await self._flush():
            log.error("store_writes_lost", count=len(self._queue), writes=sorted({label for label, _ in self._queue}))
