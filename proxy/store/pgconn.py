"""A PostgreSQL connection pool that fails the way the relay can answer: StoreError, never a
driver exception, and with backoff when the server is unreachable.

asyncpg's pool replaces a broken connection on the next acquire. What it does not do is hold
back: with the database down, every RCPT would wait for its own connect attempt. So after a
connection failure the pool refuses at once (StoreError, which the relay answers 451 4.3.0)
until the backoff delay has passed; the next call then tries again, and the delay doubles up to
`max_backoff` while the server stays away and resets on the first success.
"""

from __future__ import annotations

import asyncio
import time
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import structlog

from proxy.store.base import StoreError

log = structlog.get_logger("sendwarden.pg")

# Failures of the connection rather than of the statement: these start the backoff.
CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    OSError, ConnectionError, TimeoutError, asyncpg.InterfaceError, asyncpg.PostgresConnectionError,
    asyncpg.exceptions.OperatorInterventionError, asyncpg.exceptions.ObjectNotInPrerequisiteStateError,
    asyncpg.exceptions.InsufficientResourcesError,
)
# Failures of one statement: the server's errors, and the driver's own (InternalClientError:
# a prepared statement outdated by another node's schema change, a protocol state the driver
# did not expect). Neither is an exception of the others' families, and neither says the
# server is away: StoreError, without backoff.
STATEMENT_ERRORS: tuple[type[BaseException], ...] = (asyncpg.PostgresError, asyncpg.InternalClientError)
DRIVER_ERRORS: tuple[type[BaseException], ...] = (*CONNECTION_ERRORS, *STATEMENT_ERRORS)


def redact(url: str) -> str:
    """The URL without its password, for logs and errors."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


class PgPool:
    """One pool per process and URL; `async with pool.connection() as db:` around each use."""

    def __init__(self, url: str, *, max_size: int = 10, connect_timeout: float = 3.0,
                 command_timeout: float = 10.0, first_backoff: float = 0.1, max_backoff: float = 2.0) -> None:
        self.url = url
        self.max_size = max_size
        self.connect_timeout = connect_timeout
        self.command_timeout = command_timeout
        self.first_backoff = first_backoff
        self.max_backoff = max_backoff
        self._pool: asyncpg.Pool | None = None
        self._delay = 0.0
        self._retry_at = 0.0
        self.failures = 0  # connection failures seen, for metrics and tests

    def __repr__(self) -> str:
        return redact(self.url)

    async def open(self) -> None:
        if self._pool is not None:
            return
        try:
            self._pool = await asyncpg.create_pool(
                self.url, min_size=1, max_size=self.max_size, timeout=self.connect_timeout,
                command_timeout=self.command_timeout, max_inactive_connection_lifetime=60.0,
            )
        except DRIVER_ERRORS as exc:
            raise StoreError(f"{self}: {describe(exc)}") from exc
        except ValueError as exc:  # a malformed URL
            raise StoreError(f"{self}: {exc}") from exc

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            try:
                await asyncio.wait_for(pool.close(), 5.0)
            except (TimeoutError, *DRIVER_ERRORS):  # type: ignore[misc]
                pool.terminate()

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[Any]:
        """A pooled connection; any driver failure inside comes out as StoreError."""
        if self._pool is None:
            raise StoreError(f"{self}: the store is not open")
        wait = self._retry_at - time.monotonic()
        if wait > 0:
            raise StoreError(f"{self}: database unreachable, next attempt in {wait:.1f}s")
        try:
            # No timeout on the wait for a free connection: under load that wait is normal, and the
            # caller bounds the whole call (the policy time budget). Connecting has its own.
            async with self._pool.acquire() as db:
                yield db
        except CONNECTION_ERRORS as exc:
            self._failed(exc)
            raise StoreError(f"{self}: {describe(exc)}") from exc
        except STATEMENT_ERRORS as exc:
            raise StoreError(f"{self}: {describe(exc)}") from exc
        self._succeeded()

    def _failed(self, exc: BaseException) -> None:
        self.failures += 1
        self._delay = min(self.max_backoff, self._delay * 2 if self._delay else self.first_backoff)
        self._retry_at = time.monotonic() + self._delay
        log.warning("database_unreachable", url=repr(self), error=describe(exc), retry_in=round(self._delay, 2))

    def _succeeded(self) -> None:
        if self._delay:
            log.info("database_reachable", url=repr(self))
        self._delay = 0.0
        self._retry_at = 0.0


def describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
