"""The running relay: listeners, shared state, start-up, reload and graceful shutdown.

One `Service` owns what every connection shares: the configuration and policy in force, the
upstream, the quarantine, the address masker, the credentials, rate limits, metrics and the
connection registry. A reload (SIGHUP) builds every new part first and swaps them in only when
all of them loaded; transactions in flight keep the policy they started with.
"""

from __future__ import annotations

import asyncio
import collections
import gc
import ipaddress
import resource
import signal
import sqlite3
import time
from dataclasses import dataclass
from typing import Any, Callable

import structlog

from proxy.facts.reputation import Reputation
from proxy.audit import AddressMasker
from proxy.smtp.auth import Credentials
from proxy.config import Config, ConfigError, parse_hostport
from proxy.outbound.dkim import Signer, signature_head
from proxy.dns import Resolver
from proxy.facts.sources import FactSources
from proxy.metrics import Metrics, worker_gone
from proxy.quarantine.notify import Notifier
from proxy.policy.loader import Policy
from proxy.quarantine.files import LOST_AND_FOUND
from proxy.quarantine.files import for_config as quarantine_for_config
from proxy.smtp.ratelimit import Limit, RateLimiter
from proxy.smtp.ratelimit_host import HostRateLimiter, HostShare
from proxy.smtp.ratelimit_host import reset as reset_host_share
from proxy.outbound.upstream import Upstream, upstream_budget, upstream_for
from proxy.runtime.sdnotify import SystemdNotifier
from proxy.smtp.handler import RelayHandler, client_ip
from proxy.smtp.server import RelaySMTP
from proxy.store import StoreError, from_config
from proxy.store.pending import PendingWrites
from proxy.runtime.tls import dev_pair, server_context
from proxy.unsubscribe.headers import Endpoints
from proxy.unsubscribe.intake import Intake
from proxy.unsubscribe.token import TokenKeys
from proxy.unsubscribe.web import UnsubscribeEndpoint
from proxy.smtp.authguard import AuthGuard
from proxy.smtp.inflight import InFlight
from proxy.facts.dkim import verify as dkim_verify
from proxy.runtime.listeners import HTTP_MAX_CONNECTIONS, HttpListener, install_accept_error_log
from proxy.runtime.warmup import prepare, warm_up
from proxy.transaction import heavy
from proxy.transaction.deps import JudgingDeps, TransactionDeps

log = structlog.get_logger("sendwarden.service")
PROXY_HEADER_TIMEOUT = 10.0
SENDS_KEPT = 400 * 86400  # frequency windows longer than this are not supported
PRUNE_EVERY = 6 * 3600
# Descriptors besides the client connections and their upstream connections: listeners, the
# quarantine index and its journal, the store, the log, the event loop's own, a hold in flight.
SPARE_FILES = 64
LAST_HOUR_REFRESH = 15.0  # seconds: how late a worker's last-hour counts may forget a minute
HOST_SHARE_FILE = "workers.sqlite3"  # in the state dir: what the workers of this host share


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
        upstream = upstream_budget(config)
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


@dataclass
class Parts:
    """Everything a reload replaces, built and validated before anything is swapped."""

    config: Config
    policy: Policy
    settings: Settings
    upstream: Upstream | None
    masker: AddressMasker
    credentials: Credentials | None
    tls_context: Any
    rate: RateLimiter
    connection_rate: RateLimiter
    signer: Signer  # DKIM keys, read from their files here: once at start, again on reload


def build_parts(config: Config, policy: Policy, upstream: Upstream | None = None) -> Parts:
    f = config.file
    if upstream is None:
        upstream = upstream_for(config)
    tls_context = None
    if f.tls.cert:
        tls_context = server_context(config.path(f.tls.cert), config.path(f.tls.key))
    elif f.tls.dev_cert:
        tls_context = server_context(*dev_pair(config.state_dir, f.hostname))
    limits = [
        Limit(x.name, x.per, x.messages, x.recipients, x.window, frozenset(x.classes),
              frozenset(d.lower() for d in x.domains))
        for x in f.rate_limits
    ]
    per_conn = f.connection_rate.per_client
    return Parts(
        config=config,
        policy=policy,
        settings=Settings.from_config(config),
        upstream=upstream,
        masker=AddressMasker.for_state_dir(f.audit.addresses, config.state_dir),
        credentials=Credentials.load(config.path(f.auth.credentials)) if f.auth.credentials else None,
        tls_context=tls_context,
        rate=RateLimiter(limits),
        connection_rate=RateLimiter([Limit("connections", "client_ip", per_conn, window=f.connection_rate.window)] if per_conn else []),
        signer=Signer.from_config(config),
    )


def _upstream_key(config: Config) -> tuple[Any, ...]:
    f = config.file
    return (config.upstream_url(), f.upstream.model_dump(), f.timeouts.model_dump(), f.hostname)


class Service:
    # Set by _install, kept across reloads: the one resolver of the process and the [dns] it was made from.
    resolver: Resolver
    _dns: Any

    def __init__(self, config: Config, policy: Policy, upstream: Upstream | None = None,
                 reload_source: Callable[[], tuple[Config, Policy]] | None = None, worker: int = 0,
                 workers: int = 1) -> None:
        # With `workers` > 1, that many processes share the listening ports (SO_REUSEPORT), and
        # their rate limits and per-client connection counts (the host share); worker 0 is the
        # main process and alone serves /metrics, the unsubscribe endpoint and sd_notify.
        self.worker = worker
        self.reuse_port = workers > 1
        self.host_share: HostShare | None = None
        if workers > 1:
            path = config.state_dir / HOST_SHARE_FILE
            try:
                if worker == 0:  # before any worker child opens it
                    reset_host_share(path)
                self.host_share = HostShare(path, worker)
            except (OSError, sqlite3.Error) as exc:
                raise ConfigError(f"{config.source}: state_dir: cannot share rate limits between workers in {path}: {exc}") from None
        self._install(build_parts(config, policy, upstream))
        self.reload_source = reload_source
        self.worker_processes: Any = None  # the main process's Workers, for /healthz
        self.quarantine = quarantine_for_config(config)
        self._recipient_state(config)
        self._share_rate_limits()
        self.metrics = Metrics()
        self.metrics.watch_link_check(config.state_dir)
        # Dead privacy links and complaint rates, re-read from the store now and then.
        self.reputation = Reputation(self.metrics)
        self.systemd = SystemdNotifier()
        # Quarantine and release events for people (a command or a webhook).
        self.notifier = Notifier(config.file.quarantine.notify, config.file.hostname)
        self.deps = self._transaction_deps()
        self.sessions: set[RelaySMTP] = set()
        self.connection_cap = 1 << 30  # what the open-files limit allows, set at start
        self.per_client: collections.Counter[str] = collections.Counter()
        self.closing = False
        self.upstream_up = False
        self.servers: list[asyncio.Server] = []
        self.addresses: list[tuple[str, int]] = []
        self.ops_address: tuple[str, int] | None = None
        self._ops: Any = None
        self._tasks: list[asyncio.Task[Any]] = []
        self.milter: Any = None
        self.milter_address = ""
        self._stopped = asyncio.Event()

    def _recipient_state(self, config: Config) -> None:
        """The store and the unsubscribe loop: made once, kept across reloads (a change to
        their configuration needs a restart)."""
        f = config.file
        u = f.unsubscribe
        self.store = from_config(config)
        self.pending_writes = PendingWrites(f.timeouts.policy)
        self.endpoints = Endpoints(u.base_url, u.mailto_local, u.mailto_domain)
        self.unsubscribe_keys: TokenKeys | None = None
        if u.base_url or u.mailto_domain or u.listen:
            try:
                self.unsubscribe_keys = TokenKeys.load(config.unsubscribe_key_path)
            except (OSError, ValueError) as exc:
                raise ConfigError(f"{config.source}: unsubscribe.key_file: {exc}") from None
        self.intake = Intake(
            store=self.store, keys=self.unsubscribe_keys, masker=self.masker, mailto_local=u.mailto_local,
            mailto_domain=u.mailto_domain, complaints_address=f.complaints.address,
            complaints_dir=config.complaints_dir, timeout=f.timeouts.policy,
            feedback_domains=f.complaints.feedback_domains, feedback_networks=f.complaints.feedback_networks,
            verify_dkim=lambda raw: dkim_verify(raw, self.resolver), max_size=f.complaints.max_size,
            per_client=f.complaints.per_client, window=f.complaints.window,
        )
        self.unsubscribe_web: UnsubscribeEndpoint | None = None
        self._unsubscribe_http: HttpListener | None = None
        self.auth_guard = AuthGuard()  # failed AUTH per address across connections; the argon2 pool
        lim = f.limits  # message bytes in flight (proxy/smtp/inflight.py); never below one message
        self.in_flight = InFlight(max(lim.max_bytes_in_flight, lim.max_message_size))
        if u.listen and self.unsubscribe_keys is not None:
            self.unsubscribe_web = UnsubscribeEndpoint(self.store, self.unsubscribe_keys, self.masker, f.timeouts.policy, u.max_body)

    def _install(self, parts: Parts) -> None:
        self.config = parts.config
        self.policy = parts.policy
        self.settings = parts.settings
        if parts.upstream is not None:
            self.upstream = parts.upstream
        self.masker = parts.masker
        self.credentials = parts.credentials
        self.tls_context = parts.tls_context
        self.rate = parts.rate
        if getattr(self, "store", None) is not None:
            self._share_rate_limits()
        self.connection_rate = parts.connection_rate
        if self.host_share is not None and self.connection_rate.limits:
            self.connection_rate = HostRateLimiter(self.connection_rate.limits, self.host_share)
        self.signer = parts.signer
        # The one resolver of the process; a reload keeps it (and its cache) unless [dns] changed.
        if getattr(self, "resolver", None) is None or parts.config.file.dns != self._dns:
            self.resolver = Resolver.from_config(parts.config.file.dns)
            self._dns = parts.config.file.dns

    def _transaction_deps(self) -> TransactionDeps:
        """What the transaction code may use: rebuilt at each reload (masker, budget, resolver)."""
        return TransactionDeps(
            judging=JudgingDeps(
                facts=FactSources(resolver=self.resolver, store=self.store, reputation=self.reputation, metrics=self.metrics),
                unsubscribe_keys=self.unsubscribe_keys,
                endpoints=self.endpoints,
                token_days=self.config.file.unsubscribe.token_days,
                policy_timeout=self.settings.policy_timeout,
                verify_domains=self.config.file.recipients.verify_domains,
            ),
            pending_writes=self.pending_writes,
            quarantine=self.quarantine,
            notifier=self.notifier,
            masker=self.masker,
            metrics=self.metrics,
            worker=self.worker if self.reuse_port else None,
        )

    def _share_rate_limits(self) -> None:
        """With the store in PostgreSQL, the fleet shares its rate-limit buckets there too;
        otherwise the workers of this host share theirs (connection-rate limits stay per
        host: they protect this host)."""
        from proxy.store.pg import PgStore

        if isinstance(self.store, PgStore) and self.rate.limits:
            from proxy.smtp.ratelimit_pg import SharedRateLimiter

            self.rate = SharedRateLimiter(self.rate.limits, self.store.pool)
        elif self.host_share is not None and self.rate.limits:
            self.rate = HostRateLimiter(self.rate.limits, self.host_share)

    # -- connections ------------------------------------------------------------------------------

    def admit(self, server: RelaySMTP, transport: asyncio.BaseTransport, ip: str | None = None) -> bool:
        if ip is None:
            peer = transport.get_extra_info("peername")
            ip = str(peer[0]) if isinstance(peer, tuple) else str(peer)
        limits = self.config.file.limits
        if (self.closing or len(self.sessions) >= min(limits.max_connections, self.connection_cap)
                or self.per_client[ip] >= limits.max_connections_per_client):
            log.warning("connection_refused", client=ip, sessions=len(self.sessions), from_client=self.per_client[ip])
            return False
        if self.connection_rate.message("connections", {"client_ip": ip}) is not None:
            log.warning("connection_rate_exceeded", client=ip)
            self.metrics.rate_limited.labels("connections").inc()
            return False
        if not self._host_admits(ip, limits.max_connections_per_client):
            return False
        self.sessions.add(server)
        self.per_client[ip] += 1
        server.client_key = ip  # type: ignore[attr-defined]
        self.metrics.connections.set(len(self.sessions))
        return True

    def release(self, server: RelaySMTP) -> None:
        if server in self.sessions:
            self.sessions.discard(server)
            ip = getattr(server, "client_key", "")
            self.per_client[ip] -= 1
            if self.per_client[ip] <= 0:
                del self.per_client[ip]
            self.metrics.connections.set(len(self.sessions))
            if self.host_share is not None:
                self.host_share.disconnect(ip)

    def _host_admits(self, ip: str, most: int) -> bool:
        """With workers: count the connection on the host (this worker's own count, checked
        above, is part of it)."""
        if self.host_share is None or self.host_share.connect(ip, most):
            return True
        log.warning("connection_refused", client=ip, sessions=len(self.sessions), from_client=self.per_client[ip], on_host=most)
        return False

    def worker_died(self, index: int, pid: int) -> None:
        """The main process's word that worker `index` (process `pid`) died: its connections
        and live metrics went with it."""
        worker_gone(pid)
        if self.host_share is not None:
            self.host_share.forget_worker(index)

    def rekey(self, server: RelaySMTP, real_ip: str) -> bool:
        """A PROXY header named the real client: count the connection against it instead."""
        self.release(server)
        return self.admit(server, server.transport, real_ip)  # type: ignore[arg-type]

    def proxy_allowed(self, listener: str, peer_ip: str) -> bool:
        for x in self.config.file.listeners:
            if x.name == listener:
                if not x.proxy_networks:
                    return True
                try:
                    addr = ipaddress.ip_address(peer_ip)
                except ValueError:
                    return False
                return any(addr in ipaddress.ip_network(n, strict=False) for n in x.proxy_networks)
        return False

    def auth_offered(self, server: RelaySMTP) -> bool:
        return self.credentials is not None and self.tls_context is not None

    async def verify_login(self, login: bytes, password: bytes) -> bool:
        credentials = self.credentials
        if credentials is None:
            return False
        user = login.decode("utf-8", "replace")
        pw = password.decode("utf-8", "replace")
        return await self.auth_guard.check(credentials.verify, user, pw)  # raises ChecksBusy when full

    async def dkim_signature(self, head: bytes, content: bytes) -> tuple[bytes, str]:
        """The DKIM-Signature header(s) for `head + content` (b"" when unsigned), and a note."""
        return await signature_head(self.signer, head, content)

    def summary(self) -> str:
        """systemd's STATUS= line: this host's sessions and last hour (every worker's)."""
        sessions, totals = self.metrics.host_counts(len(self.sessions))
        return (f"{sessions} sessions; last hour: {totals.get('relay', 0)} relayed, "
                f"{totals.get('quarantine', 0)} held, {totals.get('reject', 0)} rejected; "
                f"upstream {'up' if self.upstream_up else 'DOWN'}")

    # -- life cycle -------------------------------------------------------------------------------

    def _factory(self, listener_name: str, proxy_protocol: bool) -> Callable[[], RelaySMTP]:
        handler = RelayHandler(self, listener_name)

        def factory() -> RelaySMTP:
            # Read at every connection, so that a reload reaches new connections.
            f = self.config.file
            excluded = [m for m in ("PLAIN", "LOGIN") if not self.credentials or m not in f.auth.mechanisms]
            return RelaySMTP(
                handler,
                loop=asyncio.get_running_loop(),
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
                proxy_protocol_timeout=PROXY_HEADER_TIMEOUT if proxy_protocol else None,
            )

        return factory

    def _fit_connection_limit(self) -> None:
        """Each client connection needs a descriptor, and one more for the upstream connection
        that relays its message. Past the process's open-files limit, accept() fails in a loop
        (clients hang without a greeting, the log floods): so raise the limit, and where it
        cannot go high enough, cap the connections, so that the 421 answers instead."""
        configured = self.config.file.limits.max_connections
        # The HTTP endpoints' connections (each capped, proxy/runtime/listeners.py) come first.
        f = self.config.file
        http = sum(1 for on in (f.metrics.address, f.unsubscribe.listen) if on)
        spare = SPARE_FILES + http * HTTP_MAX_CONNECTIONS
        limit = open_files_limit(2 * configured + spare)
        self.connection_cap = max(1, (limit - spare) // 2)
        if self.connection_cap < configured:
            log.warning("connection_limit_lowered", configured=configured, effective=self.connection_cap,
                        open_files_limit=limit, remedy=f"raise the open-files limit to {2 * configured + spare}")

    async def start(self, front: str = "smtp") -> None:
        """Open the stores and start serving: SMTP listeners (`front="smtp"`), or the milter
        socket for an MTA (`front="milter"`); the ops and unsubscribe endpoints either way."""
        self._fit_connection_limit()
        install_accept_error_log(asyncio.get_running_loop())
        try:
            await self.store.open()
            await self.store.prune(time.time(), SENDS_KEPT)
        except StoreError as exc:
            raise ConfigError(f"{self.config.source}: store: {exc}") from None
        await self.refresh_reputation()
        await asyncio.to_thread(self.quarantine.open)
        repair = await asyncio.to_thread(self.quarantine.repair)
        if repair.skipped:  # another worker (or a review command) has it open: its check, not ours
            log.info("quarantine_check_skipped", reason="another process has the quarantine open")
        elif repair:
            # Rows without a file were acknowledged and are gone: that needs people (error).
            (log.error if repair.missing else log.warning)(
                "quarantine_out_of_step", files_without_index=repair.moved[:20], moved_to=LOST_AND_FOUND,
                index_without_file=repair.missing[:20], marked="missing", partial_removed=repair.partial,
                counts=[len(repair.moved), len(repair.missing)],
            )
        loop = asyncio.get_running_loop()
        if front == "milter":
            await self._start_milter()
        for listener in self.config.file.listeners if front == "smtp" else ():
            host, port = listener.host_port
            server = await loop.create_server(self._factory(listener.name, listener.proxy_protocol), host, port,
                                              reuse_port=self.reuse_port or None)
            self.servers.append(server)
            for sock in server.sockets:
                addr = sock.getsockname()
                self.addresses.append((addr[0], addr[1]))
                log.info("listening", listener=listener.name, address=f"{addr[0]}:{addr[1]}",
                         proxy_protocol=listener.proxy_protocol,
                         proxy_networks=listener.proxy_networks if listener.proxy_protocol else [])
        self._warn_dev_certificate()
        metrics = self.config.file.metrics
        if metrics.address and self.worker == 0:
            from proxy.runtime.opsweb import OpsServer

            self._ops = OpsServer(self, *parse_hostport(metrics.address))
            self.ops_address = await self._ops.start()
        if self.unsubscribe_web is not None and self.worker == 0:
            host, port = parse_hostport(self.config.file.unsubscribe.listen)
            self._unsubscribe_http = HttpListener(self.unsubscribe_web.app(), "unsubscribe")
            _, self.unsubscribe_web.port = await self._unsubscribe_http.start(host, port)
            log.info("unsubscribe_endpoint_listening", address=f"{host}:{self.unsubscribe_web.port}",
                     max_connections=self._unsubscribe_http.max_connections)
        await self.probe_upstream()
        self._tasks.append(loop.create_task(self._probe_loop()))
        self._tasks.append(loop.create_task(self._prune_loop()))
        if self.metrics.shared:
            self._tasks.append(loop.create_task(self._last_hour_loop()))
        self._tasks.append(loop.create_task(self._reputation_loop()))
        heavy.share_the_gil()  # judging threads let the event loop answer within milliseconds
        await asyncio.to_thread(prepare, self.policy)  # ~180 ms: off the loop, which already listens
        warmed = warm_up(self.policy)  # the first client's message does not pay for first use
        log.info("ready", upstream=repr(self.upstream), policy=self.policy.source, monitor=self.policy.monitor,
                 worker=self.worker, warm_up_ms=round(warmed * 1000, 1))
        if self.worker == 0:
            self.systemd.ready(self.summary())
            self.systemd.start_watchdog(self.summary)

    def _warn_dev_certificate(self) -> None:
        """The self-signed development certificate is for trying things out on this machine: a
        client elsewhere gets no proof of whom it talks to (its STARTTLS, and so its AUTH
        password, can be intercepted). Say so at start for each listener it would serve."""
        tls = self.config.file.tls
        if tls.cert or not tls.dev_cert or self.tls_context is None:
            return
        for listener in self.config.file.listeners:
            host = listener.host_port[0]
            try:
                loopback = ipaddress.ip_address(host.strip("[]")).is_loopback
            except ValueError:
                loopback = host == "localhost"
            if not loopback:
                log.warning("dev_certificate_on_public_listener", listener=listener.name, address=listener.address,
                            remedy="set [tls] cert and key to a certificate for this host name")

    async def _start_milter(self) -> None:
        from proxy.milter.options import MilterOptions
        from proxy.milter.server import MilterServer
        from proxy.milter.engine import PolicyMilter

        m = self.config.file.milter
        options = MilterOptions(command_timeout=m.command_timeout, message_timeout=m.message_timeout,
                                on_error=m.on_error, max_message_size=self.config.file.limits.max_message_size,
                                max_recipients=self.config.file.limits.max_recipients,
                                no_reply=PolicyMilter.NEVER_REFUSES)
        self.milter = MilterServer(lambda: PolicyMilter(self), options)
        self.milter_address = await self.milter.listen(m.address, reuse_port=self.reuse_port)
        log.info("milter_listening", address=self.milter_address)

    async def probe_upstream(self) -> None:
        try:
            up = await asyncio.wait_for(self.upstream.probe(), self.config.file.timeouts.upstream_connect + 5)
        except (asyncio.TimeoutError, OSError):
            up = False
        if up != self.upstream_up:
            log.info("upstream_state", upstream=repr(self.upstream), up=up)
        self.upstream_up = up
        self.metrics.upstream_up.set(1 if up else 0)

    async def _probe_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.file.metrics.probe_interval)
            await self.probe_upstream()

    async def refresh_reputation(self) -> bool:
        """Re-read dead privacy links and complaint counts from the store (a fleet shares them)."""
        self.reputation.optout = self.policy.options["optout"]  # names the brand of a transaction
        return await self.reputation.refresh(self.store, self.policy.options["complaint_rate"])  # type: ignore[arg-type]

    async def _reputation_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.file.reputation.refresh)
            await self.refresh_reputation()

    async def _prune_loop(self) -> None:
        """Forget sends older than any frequency window, now and then, so the table stays small."""
        while True:
            await asyncio.sleep(PRUNE_EVERY)
            try:
                gone = await self.store.prune(time.time(), SENDS_KEPT)
                buckets = await self.rate.prune() if hasattr(self.rate, "prune") else 0
                if self.host_share is not None:
                    longest = max((x.window for x in (*self.rate.limits, *self.connection_rate.limits)), default=60.0)
                    buckets += self.host_share.prune(longest)
                log.info("store_pruned", sends=gone, rate_buckets=buckets)
            except (StoreError, sqlite3.Error) as exc:
                log.warning("store_prune_failed", error=str(exc))

    async def _last_hour_loop(self) -> None:
        """With workers, each keeps its last-hour gauge current for the main process's
        /metrics, which cannot refresh another process's at the scrape."""
        while True:
            await asyncio.sleep(LAST_HOUR_REFRESH)
            self.metrics.refresh_last_hour()

    async def reload(self) -> bool:
        """Re-read config and policy; swap them in only if everything loads. Returns success."""
        if self.reload_source is None:
            log.warning("reload_unavailable")
            return False
        self.systemd.reloading()
        try:
            config, policy = await asyncio.to_thread(self.reload_source)
            same_upstream = _upstream_key(config) == _upstream_key(self.config)
            parts = await asyncio.to_thread(build_parts, config, policy, self.upstream if same_upstream else None)
            await asyncio.to_thread(prepare, policy)  # off the loop: warm_up below finds it done
        except Exception as exc:  # every reason a reload can fail is reported, never fatal
            log.error("reload_failed", error=str(exc))
            self.metrics.reloads.labels("failed").inc()
            self.systemd.ready(self.summary())
            return False
        if [x.model_dump() for x in config.file.listeners] != [x.model_dump() for x in self.config.file.listeners]:
            log.warning("reload_needs_restart", reason="listeners changed; they keep their old addresses until a restart")
        if config.quarantine_dir != self.config.quarantine_dir or config.file.metrics != self.config.file.metrics:
            log.warning("reload_needs_restart", reason="quarantine directory or metrics address changed")
        f, old = config.file, self.config.file
        if (config.store_url, f.addresses, f.unsubscribe, f.complaints) != (self.config.store_url, old.addresses, old.unsubscribe, old.complaints):
            log.warning("reload_needs_restart", reason="store, addresses, unsubscribe or complaints changed")
        old_upstream = self.upstream
        self._install(parts)
        self.deps = self._transaction_deps()
        warm_up(policy)
        freeze_heap()  # the old policy's objects can go now; the new one's are frozen
        if old_upstream is not self.upstream:
            # Transactions in flight may still hold its connections: close it once they are done.
            asyncio.get_running_loop().call_later(self.settings.upstream_budget, lambda: asyncio.ensure_future(old_upstream.close()))
            await self.probe_upstream()
        self.metrics.reloads.labels("ok").inc()
        log.info("reloaded", policy=policy.source, monitor=policy.monitor)
        self.systemd.ready(self.summary())
        return True

    async def stop(self) -> None:
        """Stop accepting, tell idle clients 421, let transactions in flight finish (bounded by
        the shutdown timeout), then close what is left."""
        if self.closing:
            await self._stopped.wait()
            return
        self.closing = True
        self.systemd.stopping()
        log.info("stopping", sessions=len(self.sessions))
        for server in self.servers:
            server.close()
        if self.milter is not None:
            await self.milter.stop(self.config.file.timeouts.shutdown)
        if self._unsubscribe_http is not None:
            await self._unsubscribe_http.stop()
            self._unsubscribe_http = None
        for session in list(self.sessions):
            if session.in_transaction:
                session.closing = True
            else:
                await session.close_gracefully()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.config.file.timeouts.shutdown
        # Polled, bounded by the deadline, once at shutdown: simpler than an event per session.
        while any(s.in_transaction for s in self.sessions) and loop.time() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        for session in list(self.sessions):
            if session.transport is not None:
                session.transport.close()
        for server in self.servers:
            await server.wait_closed()
        for task in self._tasks:
            task.cancel()
        if self._ops is not None:
            await self._ops.stop()
        await self.upstream.close()
        await self.notifier.close()
        self.quarantine.close()
        await self.pending_writes.close()
        await self.store.close()
        if self.host_share is not None:
            self.host_share.close()
        self.auth_guard.close()
        self.systemd.close()
        log.info("stopped", last_hour=dict(self.metrics.last_hour.totals()))
        self._stopped.set()

    async def run(self, front: str = "smtp", workers: Any = None) -> None:
        """Start, then serve until SIGTERM or SIGINT; SIGHUP reloads (in every worker)."""
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)

        def reload() -> None:
            if workers is not None:
                workers.signal(signal.SIGHUP)
            self._tasks.append(loop.create_task(self.reload()))

        loop.add_signal_handler(signal.SIGHUP, reload)
        self.worker_processes = workers
        await self.start(front)
        freeze_heap()
        if workers is not None:
            await workers.start()
        await stop.wait()
        if workers is not None:
            workers.signal(signal.SIGTERM)
        await self.stop()
        if workers is not None:
            await workers.stop(self.config.file.timeouts.shutdown + 5)


def freeze_heap() -> None:
    """Move everything loaded so far (the policy's compiled lists, the public suffix list, the
    confusables table: several hundred thousand objects) out of the garbage collector's sight.
    Otherwise every full collection walks all of it again: measured ~55 ms a collection with
    the default policy, a pause every message in flight waits for (with the heap frozen:
    ~2 ms). Called after start and after each reload, unfreezing first so that what a reload
    replaced can be collected."""
    gc.unfreeze()
    gc.collect()
    gc.freeze()


__all__ = ["Service", "Settings", "client_ip", "freeze_heap"]
