"""AUTH against guessing: failures counted per client address across connections, with a
lockout; password checks in their own small pool.

Guessing spread over 20 connections from one address ran at 9 guesses a second (the per-
connection limit of three failures only made it open more connections), and each argon2 check
takes 64 MiB in the shared thread pool that DNS, quarantine and store work also use: the relay
grew from 157 to 487 MB and ordinary relaying slowed from 10 ms to 0.5-0.8 s. So:

- an address with MAX_FAILURES failed AUTH within WINDOW seconds is locked out for LOCKOUT
  seconds: every AUTH from it is answered `454 4.7.0` at once, without a password check (a
  right password too, or the lockout would tell a guesser when it guessed right);
- at most CHECK_WORKERS password checks run at once, in a pool of their own (argon2-cffi
  releases the GIL while hashing, so two threads use two cores), and at most CHECK_QUEUE wait;
  past that an AUTH is answered `454 4.7.0` (try again later) instead of queueing memory.
The failure table is bounded (MAX_ADDRESSES, the oldest entries dropped first).
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

MAX_FAILURES = 5
WINDOW = 600.0
LOCKOUT = 900.0
CHECK_WORKERS = 2
CHECK_QUEUE = 8
MAX_ADDRESSES = 100_000


class ChecksBusy(Exception):
    """Too many password checks are running or waiting: try again later."""


class AuthGuard:
    def __init__(self, max_failures: int = MAX_FAILURES, window: float = WINDOW, lockout: float = LOCKOUT,
                 workers: int = CHECK_WORKERS, queue: int = CHECK_QUEUE) -> None:
        self.max_failures = max_failures
        self.window = window
        self.lockout = lockout
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()
        self._locked: dict[str, float] = {}
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="auth-check")
        self._slots = workers + queue
        self._pending = 0

    def locked_for(self, client: str, now: float | None = None) -> float:
        """Seconds the address stays locked out (0: it may try)."""
        until = self._locked.get(client)
        if until is None:
            return 0.0
        now = time.monotonic() if now is None else now
        if now >= until:
            del self._locked[client]
            return 0.0
        return until - now

    def failed(self, client: str, now: float | None = None) -> bool:
        """Count a failure; True when it locks the address out."""
        now = time.monotonic() if now is None else now
        times = self._failures.pop(client, None) or deque()
        times.append(now)
        while times and times[0] <= now - self.window:
            times.popleft()
        if len(times) >= self.max_failures:
            self._locked[client] = now + self.lockout
            return True
        self._failures[client] = times
        while len(self._failures) > MAX_ADDRESSES:
            self._failures.popitem(last=False)
        if len(self._locked) > MAX_ADDRESSES:
            self._locked = {c: u for c, u in self._locked.items() if u > now}
        return False

    def succeeded(self, client: str) -> None:
        self._failures.pop(client, None)

    async def check(self, verify: Callable[[str, str], bool], user: str, password: str) -> bool:
        """`verify(user, password)` in the AUTH pool; ChecksBusy when it is full."""
        if self._pending >= self._slots:
            raise ChecksBusy()
        self._pending += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(self._pool, verify, user, password)
        finally:
            self._pending -= 1

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


__all__ = ["CHECK_QUEUE", "CHECK_WORKERS", "LOCKOUT", "MAX_FAILURES", "WINDOW", "AuthGuard", "ChecksBusy"]
