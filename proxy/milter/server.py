"""The asyncio milter server: TCP and UNIX-socket listeners, one session per MTA connection.

Addresses use Postfix's notation, so the same text goes into `smtpd_milters`:
"inet:127.0.0.1:8891", "inet:[::1]:8891", "unix:/run/sendwarden/milter.sock"; a bare
"HOST:PORT" means inet. Past `max_connections` a new connection is closed at once, and the MTA
applies its milter_default_action (tempfail unless configured otherwise).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import stat
from collections.abc import Callable
from pathlib import Path

import structlog

from proxy.config import parse_hostport
from proxy.milter.application import MilterApplication
from proxy.milter.options import MilterOptions
from proxy.milter.session import MilterSession

log = structlog.get_logger("sendwarden.milter")


def parse_address(text: str) -> tuple[str, str | tuple[str, int]]:
    """("unix", path) or ("inet", (host, port)); ValueError with the reason otherwise."""
    kind, sep, rest = text.partition(":")
    if sep and kind == "unix":
        if not rest.startswith("/"):
            raise ValueError(f"{text!r}: a UNIX socket path must be absolute")
        return "unix", rest
    if sep and kind in ("inet", "inet6"):
        return "inet", parse_hostport(rest)
    return "inet", parse_hostport(text)


def _remove_stale_socket(path: str) -> None:
    """A socket file left by a previous run is removed; one still served is an error."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise OSError(f"{path} exists and is not a socket")
    with socket.socket(socket.AF_UNIX) as probe:
        try:
            probe.connect(path)
        except OSError:
            os.unlink(path)
            return
    raise OSError(f"{path} is in use by another milter")


class MilterServer:
    """Listens on one or more addresses and serves each MTA connection with a fresh
    application from `app_factory`."""

    def __init__(self, app_factory: Callable[[], MilterApplication], options: MilterOptions | None = None) -> None:
        self.app_factory = app_factory
        self.options = options or MilterOptions()
        self.servers: list[asyncio.Server] = []
        self.sessions: set[asyncio.Task[None]] = set()
        self.unix_paths: list[str] = []

    @property
    def addresses(self) -> list[str]:
        """Where we listen, in Postfix notation (ports as bound, so port 0 shows the real one)."""
        out = []
        for server in self.servers:
            for sock in server.sockets:
                name = sock.getsockname()
                if sock.family == socket.AF_UNIX:
                    out.append(f"unix:{name}")
                elif sock.family == socket.AF_INET6:
                    out.append(f"inet:[{name[0]}]:{name[1]}")
                else:
                    out.append(f"inet:{name[0]}:{name[1]}")
        return out

    async def listen(self, address: str, reuse_port: bool = False) -> str:
        """Start listening on `address`; returns it as bound. `reuse_port`: worker processes
        share an inet address (SO_REUSEPORT)."""
        kind, where = parse_address(address)
        if kind == "unix":
            assert isinstance(where, str)
            _remove_stale_socket(where)
            server = await asyncio.start_unix_server(self._serve, path=where)
            os.chmod(where, self.options.unix_socket_mode)
            self.unix_paths.append(where)
        else:
            assert isinstance(where, tuple)
            server = await asyncio.start_server(self._serve, where[0], where[1], reuse_port=reuse_port or None)
        self.servers.append(server)
        bound = self.addresses[-1]
        log.info("milter_listening", address=bound)
        return bound

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peername = writer.get_extra_info("peername")
        peer = f"{peername[0]}:{peername[1]}" if isinstance(peername, tuple) else "unix"
        if len(self.sessions) >= self.options.max_connections:
            log.warning("milter_connection_refused", peer=peer, sessions=len(self.sessions))
            writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await writer.wait_closed()
            return
        task = asyncio.current_task()
        assert task is not None
        self.sessions.add(task)
        try:
            await MilterSession(reader, writer, self.app_factory, self.options, peer).run()
        except asyncio.CancelledError:
            # Only stop() cancels a session. Ending normally keeps asyncio's stream callback
            # from logging the cancellation as an error.
            log.warning("milter_session_cut", peer=peer)
            writer.transport.abort()
        except Exception as exc:  # a bug in the session must not take the server down
            log.error("milter_session_failed", peer=peer, error=repr(exc), exc_info=exc)
            writer.transport.abort()
        finally:
            self.sessions.discard(task)

    async def stop(self, grace: float = 5.0) -> None:
        """Stop listening; give open sessions `grace` seconds to end, then cut them (the MTA
        then applies its milter_default_action to whatever was in progress)."""
        for server in self.servers:
            server.close()
        for path in self.unix_paths:
            with contextlib.suppress(FileNotFoundError):
                Path(path).unlink()  # noqa: ASYNC240  (once, at shutdown: a local socket's name)
        if self.sessions:
            _, pending = await asyncio.wait(set(self.sessions), timeout=grace)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=grace)
        for server in self.servers:
            await server.wait_closed()
        self.servers.clear()
        self.unix_paths.clear()

    async def __aenter__(self) -> "MilterServer":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
