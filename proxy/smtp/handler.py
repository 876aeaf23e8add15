"""The aiosmtpd handler: decides who may relay, collects the envelope, and for each message runs
the transaction code (proxy/transaction/) and acts on the verdict in SMTP: relay upstream, quarantine,
reject or defer.
"""

from __future__ import annotations

import asyncio
import re
import time
from typing import TYPE_CHECKING, Any, Protocol

import structlog
from aiosmtpd.smtp import Envelope, Session

from proxy.outbound import received as trace
from proxy.transaction import outcome, recipients
from proxy.transaction.evaluate import evaluate
from proxy.transaction.envelope import Transaction, new_queue_id
from proxy.transaction.outcome import findings_header
from proxy.policy.verdict import Finding, Verdict
from proxy.replies import EHLO_AUTH_BARE, EHLO_EXTENSIONS, Replies, Reply
from proxy.outbound.upstream import Outgoing, Recipient, Result
from proxy.outbound.xforward import Origin
from proxy.smtp.datareader import DataResult
from proxy.smtp.server import ProtocolTables, protocol_names
from proxy.unsubscribe.intake import Refused

if TYPE_CHECKING:
    from proxy.audit import AddressMasker
    from proxy.config import Config
    from proxy.metrics import Metrics
    from proxy.outbound.upstream import Upstream
    from proxy.policy.loader import Policy
    from proxy.smtp.authguard import AuthGuard
    from proxy.smtp.inflight import InFlight
    from proxy.smtp.ratelimit import RateLimiter
    from proxy.smtp.server import RelaySMTP
    from proxy.transaction.deps import TransactionDeps
    from proxy.unsubscribe.intake import Intake

log = structlog.get_logger("sendwarden.smtp")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# The replies of every transaction, formatted once.
SENDER_OK, RECIPIENT_OK, RESET_OK = str(Replies.sender_ok()), str(Replies.recipient_ok()), str(Replies.reset())


def address_refusal(address: str, smtputf8: bool, recipient: bool) -> Reply | None:
    """The reply refusing an envelope address that cannot be carried upstream, or None when it
    can. aiosmtpd hands undecodable bytes over as surrogate escapes: refused here, at once and
    for good, rather than failing later with a 451 the client retries forever."""
    reason = None
    if _CONTROL.search(address):
        reason = "control characters in the address"
    else:
        try:
            address.encode("utf-8")
        except UnicodeEncodeError:
            reason = "the address is not valid UTF-8"
    if reason is not None:
        return Replies.recipient_address_refused(reason) if recipient else Replies.sender_refused(reason)
    if not smtputf8 and not address.isascii():
        return Replies.recipient_needs_smtputf8() if recipient else Replies.sender_needs_smtputf8()
    return None


def client_ip(session: Session) -> str:
    peer = session.peer
    if isinstance(peer, tuple) and peer:
        return str(peer[0])
    return str(peer or "")


def protocol_name(session: Session) -> str:
    """The RFC 3848 protocol name of a session: ESMTP, ESMTPS, ESMTPSA, ..."""
    proto = "ESMTP" if session.extended_smtp else "SMTP"
    if session.ssl is not None:
        proto += "S"
    if session.authenticated:
        proto += "A"
    return proto


def received_header(hostname: str, session: Session, queue_id: str, rcpts: list[Recipient]) -> bytes:
    """The RFC 5321 trace header a relay must add, with the RFC 3848 protocol name."""
    return trace.received(hostname, helo=session.host_name or "unknown", ip=client_ip(session),
                          proto=protocol_name(session), queue_id=queue_id, rcpts=[r.address for r in rcpts])


class Relay(Protocol):
    """What the handler uses of the running relay (proxy/runtime/service.py's `Service`): the
    parts a reload swaps, the connection registry, and the transaction dependencies."""

    config: "Config"
    policy: "Policy"
    settings: Any
    closing: bool
    intake: "Intake"
    masker: "AddressMasker"
    metrics: "Metrics"
    rate: "RateLimiter"
    deps: "TransactionDeps"
    upstream: "Upstream"
    auth_guard: "AuthGuard"
    in_flight: "InFlight"

    def admit(self, server: "RelaySMTP", transport: asyncio.BaseTransport) -> bool: ...
    def release(self, server: "RelaySMTP") -> None: ...
    def rekey(self, server: "RelaySMTP", real_ip: str) -> bool: ...
    def proxy_allowed(self, listener: str, peer_ip: str) -> bool: ...
    def auth_offered(self, server: "RelaySMTP") -> bool: ...
    async def verify_login(self, login: bytes, password: bytes) -> bool: ...
    async def dkim_signature(self, head: bytes, content: bytes) -> tuple[bytes, str]: ...


class RelayHandler:
    """One per listener; the shared state lives in the running relay (`Relay`)."""

    def __dir__(self) -> list[str]:
        # What aiosmtpd looks up on a handler for every connection (see RelaySMTP.__dir__).
        return protocol_names(type(self), ("handle_", "auth_"))

    def __init__(self, service: Relay, listener: str) -> None:
        self.service = service
        self.listener = listener
        # aiosmtpd's tables for a connection (hooks, commands, mechanisms), made at the first
        # connection for all (proxy/smtp/server.py): (the connection class, its tables)
        self.protocol_tables: tuple[type, ProtocolTables] | None = None

    @property
    def settings(self) -> Any:
        return self.service.settings

    # -- connections ------------------------------------------------------------------------------

    def admit(self, server: "RelaySMTP", transport: asyncio.BaseTransport) -> bool:
        return self.service.admit(server, transport)

    def release(self, server: "RelaySMTP") -> None:
        self.service.release(server)

    async def verify_login(self, login: bytes, password: bytes) -> bool:
        return await self.service.verify_login(login, password)

    def login_failed(self, server: "RelaySMTP", login: bytes, locked_out: bool = False) -> None:
        client = client_ip(server.session) if server.session else ""
        log.warning("auth_failed", client=client, user=login.decode("utf-8", "replace")[:64])
        if locked_out:
            guard = self.service.auth_guard
            log.warning("auth_locked_out", client=client, failures=guard.max_failures, window_s=guard.window,
                        lockout_s=guard.lockout)

    # -- SMTP hooks -------------------------------------------------------------------------------

    async def handle_PROXY(self, server: "RelaySMTP", session: Session, envelope: Envelope, proxy_data: Any) -> bool:
        """The balancer told us who the client really is: policy applies to that address."""
        peer_ip = client_ip(session)
        if not self.service.proxy_allowed(self.listener, peer_ip):
            log.warning("proxy_refused", peer=peer_ip, reason="not in proxy_networks")
            return False
        src = getattr(proxy_data, "src_addr", None)
        if src is None:  # PROXY UNKNOWN / LOCAL: a health check from the balancer itself
            return True
        real = str(src)
        if not self.service.rekey(server, real):
            return False
        session.peer = (real, getattr(proxy_data, "src_port", 0) or 0)  # type: ignore[assignment]
        return True

    async def handle_EHLO(self, server: "RelaySMTP", session: Session, envelope: Envelope, hostname: str, responses: list[str]) -> list[str]:
        session.host_name = hostname
        out = [r for r in responses[:-1] if r.strip() != EHLO_AUTH_BARE]
        out.extend(EHLO_EXTENSIONS)
        out.append(responses[-1])
        return out

    async def handle_MAIL(self, server: "RelaySMTP", session: Session, envelope: Envelope, address: str, options: list[str]) -> str:
        service = self.service
        ip = client_ip(session)
        # A client that may not relay may still send to sendwarden's own addresses (intake).
        inbound_only = not (session.authenticated or service.config.may_relay(ip))
        if inbound_only and not service.intake.enabled:
            reply = Replies.auth_required() if service.auth_offered(server) else Replies.relay_denied()
            log.warning("relay_refused", client=ip, sender=service.masker(address), reply=str(reply))
            return str(reply)
        if service.closing:
            return str(Replies.shutting_down())
        refusal = address_refusal(address, bool(envelope.smtp_utf8), recipient=False)
        if refusal is not None:
            return str(refusal)
        policy = service.policy
        user = _auth_user(session)
        stream = policy.resolve_stream(listener=self.listener, user=user, sender=address)
        traffic_class = "bounce" if address in ("", "<>") else stream.name
        keys = {"client_ip": ip, "sender_domain": address.rpartition("@")[2].lower()}
        if user:
            keys["auth_user"] = user
        broken = await service.rate.check_message(traffic_class, keys)
        carried: list[Finding] = []
        if broken is not None:
            service.metrics.rate_limited.labels(broken.name).inc()
            log.info("rate_limited", limit=broken.name, client=ip, key=broken.per)
            limited = recipients.rate_exceeded(policy, stream.name,
                                               f"{broken.name} (messages per {broken.window:g}s per {broken.per})")
            if limited.reply is not None:
                return str(limited.reply)
            carried = limited.findings
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        tx = Transaction(new_queue_id(), address, policy, stream.name, time.monotonic(), listener=self.listener,
                         client_ip=ip, helo=session.host_name or "", auth_user=user, proto=protocol_name(session),
                         smtputf8=bool(envelope.smtp_utf8), mail_dsn=dict(server.pending_dsn))
        tx.body_8bit = "BODY=8BITMIME" in options
        tx.traffic_class, tx.rate_keys = traffic_class, keys
        tx.inbound_only = inbound_only
        tx.rcpt_findings.extend(carried)
        envelope.tx = tx  # type: ignore[attr-defined]
        server.in_transaction = True
        structlog.contextvars.bind_contextvars(queue_id=tx.queue_id)
        return SENDER_OK

    async def handle_RCPT(self, server: "RelaySMTP", session: Session, envelope: Envelope, address: str, options: list[str]) -> str:
        tx: Transaction | None = getattr(envelope, "tx", None)
        if tx is None:
            return str(Replies.need_mail())
        if len(envelope.rcpt_tos) >= self.settings.max_recipients:
            return str(Replies.too_many_recipients())
        refusal = address_refusal(address, bool(envelope.smtp_utf8), recipient=True)
        if refusal is not None:
            return str(refusal)
        domain = address.rpartition("@")[2].lower()
        broken = await self.service.rate.check_recipient(tx.traffic_class, tx.rate_keys, domain, domain not in tx.domains)
        if broken is not None:
            self.service.metrics.rate_limited.labels(broken.name).inc()
            log.info("rate_limited", limit=broken.name, key=broken.per)
            limited = recipients.rate_exceeded(tx.policy, tx.stream, f"{broken.name} (per {broken.per})")
            if limited.reply is not None:
                self.service.metrics.rcpt_refusals.labels("rate.exceeded").inc()
                return str(limited.reply)
            tx.rcpt_findings.extend(limited.findings)
        tx.domains.add(domain)
        service = self.service
        try:
            local = service.intake.classify(address, time.time(), client_ip(session))
        except Refused as exc:
            return str(exc.reply)
        # Mail to sendwarden itself is never mixed with mail it relays (RFC 5321 3.3: the
        # client sends the 452'd recipient again in a new transaction).
        if (local is not None and tx.recipients) or (local is None and tx.local):
            return str(Replies.local_and_relayed_apart())
        if local is not None:
            tx.local.append(local)
            envelope.rcpt_tos.append(address)
            return RECIPIENT_OK
        if tx.inbound_only:
            reply = Replies.auth_required() if service.auth_offered(server) else Replies.relay_denied()
            log.warning("relay_refused", client=client_ip(session), rcpt=service.masker(address), reply=str(reply))
            return str(reply)
        screening = await recipients.screen(service.deps.judging, tx.policy, tx.ensure_plan(), tx.stream, address)
        if screening.reply is not None:
            service.metrics.rcpt_refusals.labels(screening.rule).inc()
            log.info("rcpt_refused", rcpt=service.masker(address), reply=str(screening.reply))
            return str(screening.reply)
        tx.rcpt_findings.extend(screening.findings)
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(options)
        tx.recipients.append(Recipient(address, dict(server.pending_dsn)))
        return RECIPIENT_OK

    async def handle_RSET(self, server: "RelaySMTP", session: Session, envelope: Envelope) -> str:
        server.in_transaction = False
        structlog.contextvars.unbind_contextvars("queue_id")
        return RESET_OK

    async def handle_exception(self, error: Exception) -> str:
        # Never echo internals to the client (aiosmtpd's default does); log them instead.
        log.error("session_error", error=repr(error), exc_info=error)
        return str(Replies.internal_error())

    # -- the message ------------------------------------------------------------------------------

    async def handle_message(self, server: "RelaySMTP", session: Session, envelope: Envelope, data: DataResult) -> str:
        tx: Transaction = envelope.tx  # type: ignore[attr-defined]
        settings = self.settings
        service = self.service
        record: dict[str, Any] = {}
        t0 = time.perf_counter()
        if data.content is None:
            if data.error == "too_large":
                reply = Replies.too_large(min(settings.max_message_size, service.intake.max_size) if tx.local
                                          else settings.max_message_size)
            elif data.error == "in_flight_full":
                reply = Replies.in_flight_full()
            elif data.error == "bare_eol":
                reply = Replies.bare_line_ending()
            else:
                reply = Replies.line_too_long(settings.max_line_length)
            outcome.audit(service.deps, tx, reply, None, data.size, record, t0)
            return str(reply)
        if tx.local:
            reply, consumed = await service.intake.consume(tx.local, envelope.mail_from or "", data.content, tx.queue_id,
                                                           client_ip(session))
            record.update(consumed)
            outcome.audit(service.deps, tx, reply, None, len(data.content), record, t0)
            return str(reply)

        judgement = await evaluate(service.deps.judging, tx, data.content, record)
        verdict = judgement.verdict
        content = data.content

        async def held() -> Reply:
            return await outcome.hold(service.deps, tx, judgement, content, record)

        async def relayed() -> Reply:
            reply = await self._relay(session, tx, judgement.content, verdict, record)
            if reply.is_success:
                await outcome.accepted(service.deps, tx, judgement)
            return reply

        reply = await outcome.act(verdict, refuse=_as_is, hold=held, relay=relayed)
        outcome.audit(service.deps, tx, reply, verdict, len(judgement.content), record, t0)
        structlog.contextvars.unbind_contextvars("queue_id")
        return str(reply)

    async def _relay(self, session: Session, tx: Transaction, content: bytes, verdict: Verdict,
                     record: dict[str, Any]) -> Reply:
        settings = self.settings
        head = received_header(settings.hostname, session, tx.queue_id, tx.recipients)
        if verdict.judged and tx.policy.tag_header:
            head += findings_header(verdict)
        # DKIM-signing is the last change to the message: nothing may be added after it.
        signature, signed = await self.service.dkim_signature(head, content)
        if signed:
            record["dkim"] = signed
        out = Outgoing(
            mail_from=tx.mail_from,
            recipients=tuple(tx.recipients),
            head=signature + head,
            data=content,
            smtputf8=tx.smtputf8,
            body_8bit=tx.body_8bit,
            dsn=tx.mail_dsn,
            origin=Origin(addr=tx.client_ip, helo=tx.helo, proto=tx.proto),  # for XFORWARD
        )
        t1 = time.perf_counter()
        try:
            async with asyncio.timeout(settings.upstream_budget):  # no task per message, as wait_for makes
                result = await self.service.upstream.send(out, tx.queue_id)
        except TimeoutError:
            result = Result(Replies.upstream_unavailable("upstream did not answer in time"), False, "timeout")
        record["upstream_ms"] = round((time.perf_counter() - t1) * 1000, 3)
        record["upstream"] = result.upstream
        record["upstream_code"] = result.code
        return result.reply


def _as_is(reply: Reply) -> Reply:
    return reply


def _auth_user(session: Session) -> str | None:
    data = session.auth_data
    if data is None:
        return None
    login = getattr(data, "login", None)
    if isinstance(login, bytes):
        return login.decode("utf-8", "replace")
    return str(login) if login else None


__all__ = ["RelayHandler", "Transaction"]
