"""What every listener needs against hostile clients: a connection cap and timeouts for the HTTP
endpoints (one-click unsubscribe, ops), and accept() errors logged at a bounded rate.

240 idle connections to the one-click endpoint once starved the SMTP greeting and /healthz:
aiohttp kept each one open for its keep-alive time (about an hour) before a first request, so
they used up the open-files limit, and then every refused accept() logged a traceback (19,636
lines in 6 s). Now:
- each HTTP listener takes at most HTTP_MAX_CONNECTIONS at once; one more is answered
  `503` and closed at once (its descriptor is freed, and the count is logged at a bounded rate);
- a connection must deliver a complete request head within HEADER_TIMEOUT of connecting or of
  its previous response (aiohttp's keep-alive timer, which runs from the connection's start:
  an idle or slow-header client is closed); a handler that reads a body bounds that itself
  (the one-click endpoint: 408 after BODY_TIMEOUT of proxy/unsubscribe/web.py);
- an accept() that fails (EMFILE, ENFILE, ENOBUFS) is logged as one line without traceback, at
  most once per ACCEPT_LOG_EVERY seconds with the count of those not logged.

aiohttp has no connection cap of its own: the protocol factory handed to `loop.create_server`
refuses past the cap, counting the protocols it made until each connection is lost.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, cast

import structlog
from aiohttp import web

log = structlog.get_logger("sendwarden.listeners")

HTTP_MAX_CONNECTIONS = 64
HEADER_TIMEOUT = 10.0
ACCEPT_LOG_EVERY = 10.0
_BUSY = b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nContent-Length: 0\r\nRetry-After: 5\r\n\r\n"


class RateLimitedLog:
    """One log line per `every` seconds for a recurring event; the rest are counted."""

    def __init__(self, every: float) -> None:
        self.every = every
        self._last = float("-inf")
        self.suppressed = 0

    def due(self) -> int | None:
        """The count suppressed since the last line when one is due now, else None."""
        now = time.monotonic()
        if now - self._last < self.every:
            self.suppressed += 1
            return None
        self._last, n, self.suppressed = now, self.suppressed, 0
        return n


class _Busy(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A cast, not an isinstance test: uvloop's transports (proxy/runtime/eventloop.py) are
        # no subclasses of asyncio's, though they have the same methods.
        stream = cast(asyncio.Transport, transport)
        stream.write(_BUSY)
        stream.close()


class _Counted(asyncio.Protocol):
    """aiohttp's protocol, counted from the moment it is made (asyncio makes protocols for a
    burst of accepted connections before it tells any of them they are connected)."""

    __slots__ = ("_inner", "_listener")

    def __init__(self, inner: Any, listener: HttpListener) -> None:
        self._inner = inner
        self._listener = listener
        listener.open += 1

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received()  # type: ignore[no-any-return]

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        self._listener.open -= 1
        self._inner.connection_lost(exc)


class HttpListener:
    """An aiohttp application served with a connection cap and a header timeout."""

    def __init__(self, app: web.Application, name: str, max_connections: int = HTTP_MAX_CONNECTIONS,
                 header_timeout: float = HEADER_TIMEOUT) -> None:
        self.app = app
        self.name = name
        self.max_connections = max_connections
        self.header_timeout = header_timeout
        self.refused = 0
        self.open = 0
        self._refusals = RateLimitedLog(ACCEPT_LOG_EVERY)
        self.runner: web.AppRunner | None = None
        self._server: asyncio.Server | None = None

    async def start(self, host: str, port: int) -> tuple[str, int]:
        self.runner = web.AppRunner(self.app, access_log=None, handle_signals=False,
                                    keepalive_timeout=self.header_timeout)
        await self.runner.setup()
        server = self.runner.server
        assert server is not None

        def admit() -> asyncio.BaseProtocol:
            if self.open >= self.max_connections:
                self.refused += 1
                suppressed = self._refusals.due()
                if suppressed is not None:
                    log.warning("http_connection_refused", listener=self.name, reason="connection cap reached",
                                cap=self.max_connections, not_logged_since=suppressed)
                return _Busy()
            return _Counted(server(), self)

        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(admit, host, port, reuse_address=True)
        addr = self._server.sockets[0].getsockname()
        return str(addr[0]), int(addr[1])

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None


class AcceptErrorLog:
    """The event loop's exception handler: accept() failures (out of descriptors or buffers)
    are one warning line without traceback, at most once per ACCEPT_LOG_EVERY seconds; anything
    else goes to the handler that was there before."""

    def __init__(self, previous: Any = None) -> None:
        self.previous = previous
        self._log = RateLimitedLog(ACCEPT_LOG_EVERY)

    def __call__(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        if str(context.get("message", "")).startswith("socket.accept() out of system resource"):
            suppressed = self._log.due()
            if suppressed is not None:
                exc = context.get("exception")
                log.error("accept_failed", error=str(exc) if exc else "", not_logged_since=suppressed,
                          remedy="raise the open-files limit, or lower limits.max_connections")
            return
        if self.previous is not None:
            self.previous(loop, context)
        else:
            loop.default_exception_handler(context)


def install_accept_error_log(loop: asyncio.AbstractEventLoop) -> None:
    if not isinstance(loop.get_exception_handler(), AcceptErrorLog):
        loop.set_exception_handler(AcceptErrorLog(loop.get_exception_handler()))


__all__ = ["ACCEPT_LOG_EVERY", "HEADER_TIMEOUT", "HTTP_MAX_CONNECTIONS", "AcceptErrorLog", "HttpListener",
           "RateLimitedLog", "install_accept_error_log"]
