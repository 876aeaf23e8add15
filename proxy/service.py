"""The running relay: listeners, shared state, start-up and graceful shutdown.

One `Service` owns what every connection shares: the configuration and policy in force, the
upstream, the quarantine, the address masker, the credentials and the connection registry.
"""

from __future__ import annotations

import asyncio
import collections
import resource
import signal
from dataclasses import dataclass
from typing import Any, Callable

import structlog

from proxy.audit import AddressMasker
from proxy.auth import Credentials
from proxy.config import Config
from proxy.policy.loader import Policy
from proxy.policy.verdict import Reply, Verdict
from proxy.quarantine import LOST_AND_FOUND, Quarantine
from proxy.relay import Upstream, make_upstream
from proxy.smtp.handler import RelayHandler, client_ip
from proxy.smtp.server import RelaySMTP
from proxy.tls import dev_pair, server_context

log = structlog.get_logger("sendwarden.service")
# Descriptors besides the client connections and their upstream connections: listeners, the
# quarantine index and its journal, the log, the event loop's own, a hold in flight.
SPARE_FILES = 64


def open_files_limit(wanted: int) -> int:
    """Raise this process's soft open-files limit towards `wanted`, as far as the hard limit
    allows; return the soft limit in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    return wanted if soft == resource.RLIM_INFINITY else soft


@dataclass(frozen=True, slots=True)
class Settings:
    """Per-message limits and budgets, derived from the config once."""

    hostname: str
    max_message_size: int
    max_line_length: int
    max_recipients: int
    normalize: bool
    data_timeout: float
    command_timeout: float
    policy_timeout: float
    upstream_budget: float
    processing_budget: float

    @classmethod
    def from_config(cls, config: Config) -> "Settings":
        f = config.file
        t = f.timeouts
        upstream = t.upstream_connect + 3 * t.upstream_command + t.upstream_data
        return cls(
            hostname=f.hostname,
            max_message_size=f.limits.max_message_size,
            max_line_length=f.limits.max_line_length,
            max_recipients=f.limits.max_recipients,
            normalize=f.smtp.bare_line_endings == "normalize",
            data_timeout=t.data,
            command_timeout=t.command,
            policy_timeout=t.policy,
            upstream_budget=upstream,
            # The client's idle timer while we judge and relay: longer than both budgets,
            # so that our own explicit 451 always comes first.
            processing_budget=t.policy + upstream + 30,
        )


class Service:
    def __init__(self, config: Config, policy: Policy, upstream: Upstream | None = None) -> None:
        self.config = config
        self.policy = policy
        self.settings = Settings.from_config(config)
        f = config.file
        self.upstream: Upstream = upstream or make_upstream(
            config.upstream_url(),
            helo=f.upstream.helo or f.hostname,
            starttls=f.upstream.starttls,
            verify=f.upstream.verify,
            pool_size=f.upstream.pool_size,
            connect_timeout=f.timeouts.upstream_connect,
            command_timeout=f.timeouts.upstream_command,
            data_timeout=f.timeouts.upstream_data,
        )
        self.quarantine = Quarantine(config.quarantine_dir)
        self.masker = AddressMasker.for_state_dir(f.audit.addresses, config.state_dir)
        self.credentials = Credentials.load(config.path(f.auth.credentials)) if f.auth.credentials else None
        self.tls_context = None
        if f.tls.cert:
            self.tls_context = server_context(config.path(f.tls.cert), config.path(f.tls.key))
        elif f.tls.dev_cert:
            self.tls_context = server_context(*dev_pair(config.state_dir, f.hostname))
        self.sessions: set[RelaySMTP] = set()
        self.max_connections = f.limits.max_connections  # lowered at start when descriptors are short
        self.per_client: collections.Counter[str] = collections.Counter()
        self.closing = False
        self.servers: list[asyncio.Server] = []
        self.addresses: list[tuple[str, int]] = []
        self.counters: collections.Counter[str] = collections.Counter()
        self._stopped = asyncio.Event()

    # -- connections ------------------------------------------------------------------------------

    def admit(self, server: RelaySMTP, transport: asyncio.BaseTransport) -> bool:
        peer = transport.get_extra_info("peername")
        ip = str(peer[0]) if isinstance(peer, tuple) else str(peer)
        limits = self.config.file.limits
        if self.closing or len(self.sessions) >= self.max_connections or self.per_client[ip] >= limits.max_connections_per_client:
            log.warning("connection_refused", client=ip, sessions=len(self.sessions), from_client=self.per_client[ip])
            return False
        self.sessions.add(server)
        self.per_client[ip] += 1
        server.client_key = ip  # type: ignore[attr-defined]
        return True

    def release(self, server: RelaySMTP) -> None:
        if server in self.sessions:
            self.sessions.discard(server)
            ip = getattr(server, "client_key", "")
            self.per_client[ip] -= 1
            if self.per_client[ip] <= 0:
                del self.per_client[ip]

    def auth_offered(self, server: RelaySMTP) -> bool:
        return self.credentials is not None and self.tls_context is not None

    async def verify_login(self, login: bytes, password: bytes) -> bool:
        if self.credentials is None:
            return False
        user = login.decode("utf-8", "replace")
        pw = password.decode("utf-8", "replace")
        return await asyncio.to_thread(self.credentials.verify, user, pw)

    def count(self, verdict: Verdict | None, reply: Reply) -> None:
        self.counters[str(verdict.effective) if verdict else "refused"] += 1

    # -- life cycle -------------------------------------------------------------------------------

    def _factory(self, listener_name: str) -> Callable[[], RelaySMTP]:
        handler = RelayHandler(self, listener_name)
        f = self.config.file
        excluded = [] if self.credentials else ["PLAIN", "LOGIN"]
        excluded += [m for m in ("PLAIN", "LOGIN") if m not in f.auth.mechanisms and m not in excluded]
        kwargs: dict[str, Any] = dict(
            hostname=f.hostname,
            ident=f.smtp.banner,
            data_size_limit=f.limits.max_message_size,
            enable_SMTPUTF8=True,
            decode_data=False,
            tls_context=self.tls_context,
            require_starttls=False,
            auth_require_tls=True,
            auth_exclude_mechanism=excluded,
            timeout=f.timeouts.command,
        )

        def factory() -> RelaySMTP:
            return RelaySMTP(handler, loop=asyncio.get_running_loop(), **kwargs)

        return factory

    def _fit_connection_limit(self) -> None:
        """Each client connection needs a descriptor, and one more for the upstream connection
        that relays its message. Past the process's open-files limit, accept() fails in a loop
        (clients hang without a greeting, the log floods): so raise the limit, and where it
        cannot go high enough, lower the connection limit, so that the 421 answers instead."""
        configured = self.config.file.limits.max_connections
        limit = open_files_limit(2 * configured + SPARE_FILES)
        self.max_connections = min(configured, max(1, (limit - SPARE_FILES) // 2))
        if self.max_connections < configured:
            log.warning("connection_limit_lowered", configured=configured, effective=self.max_connections,
                        open_files_limit=limit, remedy=f"raise the open-files limit to {2 * configured + SPARE_FILES}")

    async def start(self) -> None:
        self._fit_connection_limit()
        await asyncio.to_thread(self.quarantine.open)
        repair = await asyncio.to_thread(self.quarantine.repair)
        if repair:
            # Rows without a file were acknowledged and are gone: that needs people (error).
            (log.error if repair.missing else log.warning)(
                "quarantine_out_of_step", files_without_index=repair.moved[:20], moved_to=LOST_AND_FOUND,
                index_without_file=repair.missing[:20], marked="missing", partial_removed=repair.partial,
                counts=[len(repair.moved), len(repair.missing)], skipped_other_process_open=repair.skipped,
            )
        loop = asyncio.get_running_loop()
        for listener in self.config.file.listeners:
            host, port = listener.host_port
            server = await loop.create_server(self._factory(listener.name), host, port)
            self.servers.append(server)
            for sock in server.sockets:
                addr = sock.getsockname()
                self.addresses.append((addr[0], addr[1]))
                log.info("listening", listener=listener.name, address=f"{addr[0]}:{addr[1]}")
        log.info("ready", upstream=repr(self.upstream), policy=self.policy.source, monitor=self.policy.monitor)

    async def stop(self) -> None:
        """Stop accepting, tell idle clients 421, let transactions in flight finish (bounded by
        the shutdown timeout), then close what is left."""
        if self.closing:
            await self._stopped.wait()
            return
        self.closing = True
        log.info("stopping", sessions=len(self.sessions))
        for server in self.servers:
            server.close()
        for session in list(self.sessions):
            if session.in_transaction:
                session.closing = True
            else:
                await session.close_gracefully()
        deadline = asyncio.get_running_loop().time() + self.config.file.timeouts.shutdown
        while any(s.in_transaction for s in self.sessions) and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.05)
        for session in list(self.sessions):
            if session.transport is not None:
                session.transport.close()
        for server in self.servers:
            await server.wait_closed()
        await self.upstream.close()
        self.quarantine.close()
        log.info("stopped", counters=dict(self.counters))
        self._stopped.set()

    async def run(self) -> None:
        """Start, then serve until SIGTERM or SIGINT."""
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await self.start()
        await stop.wait()
        await self.stop()


__all__ = ["Service", "Settings", "client_ip"]
