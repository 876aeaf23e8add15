"""The aiosmtpd handler: decides who may relay, collects the envelope, and for each message runs
the policy engine and acts on the verdict (relay, quarantine, reject), then writes one audit line.
"""

from __future__ import annotations

import asyncio
import email.utils
import re
import secrets
import time
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import structlog
from aiosmtpd.smtp import Envelope, Session

from proxy.facts import PROVIDERS, gather
from proxy.message import Message
from proxy.policy.engine import judge
from proxy.policy.loader import Policy
from proxy.policy.registry import Context
from proxy.policy.verdict import Action, Replies, Reply, Verdict
from proxy.quarantine import Held, QuarantineError
from proxy.relay import Outgoing, Recipient, Result
from proxy.smtp.datareader import DataResult

if TYPE_CHECKING:
    from proxy.service import Service
    from proxy.smtp.server import RelaySMTP

log = structlog.get_logger("sendwarden.smtp")
_EXTENSIONS = ("250-PIPELINING", "250-ENHANCEDSTATUSCODES", "250-DSN")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_UNPRINTABLE = re.compile(r"[^\x21-\x7e]")


@dataclass
class Transaction:
    """What sendwarden keeps for one MAIL..DATA transaction."""

    queue_id: str
    mail_from: str
    policy: Policy  # the policy in force at MAIL FROM: a reload does not change it mid-way
    stream: str
    started: float
    recipients: list[Recipient] = field(default_factory=list)
    mail_dsn: dict[str, str] = field(default_factory=dict)
    body_8bit: bool = False


def new_queue_id() -> str:
    return secrets.token_hex(5).upper()


def address_problem(address: str, smtputf8: bool) -> tuple[str, str]:
    """Why an envelope address cannot be carried upstream, as (enhanced code for MAIL, reason);
    ("", "") when it can. aiosmtpd hands undecodable bytes over as surrogate escapes: refused
    here, at once and for good, rather than failing later with a 451 the client retries forever."""
    if _CONTROL.search(address):
        return "5.1.7", "control characters in the address"
    try:
        address.encode("utf-8")
    except UnicodeEncodeError:
        return "5.1.7", "the address is not valid UTF-8"
    if not smtputf8 and not address.isascii():
        return "5.6.7", "a non-ASCII address needs the SMTPUTF8 parameter on MAIL FROM (RFC 6531)"
    return "", ""


def client_ip(session: Session) -> str:
    peer = session.peer
    if isinstance(peer, tuple) and peer:
        return str(peer[0])
    return str(peer or "")


def received_header(hostname: str, session: Session, queue_id: str, rcpts: list[Recipient]) -> bytes:
    """The RFC 5321 trace header a relay must add, with the RFC 3848 protocol name."""
    proto = "ESMTP" if session.extended_smtp else "SMTP"
    if session.ssl is not None:
        proto += "S"
    if session.authenticated:
        proto += "A"
    # The client's words, in a header of the message: printable ASCII only (no control bytes,
    # no undecodable bytes, nothing 8-bit in a header of a message that may not allow it).
    helo = _UNPRINTABLE.sub("?", session.host_name or "unknown")[:200]
    ip = client_ip(session)
    literal = f"IPv6:{ip}" if ":" in ip else ip
    rcpt = f"\r\n\tfor <{rcpts[0].address}>" if len(rcpts) == 1 else ""
    date = email.utils.format_datetime(email.utils.localtime())
    text = f"Received: from {helo} ([{literal}])\r\n\tby {hostname} (sendwarden) with {proto} id {queue_id}{rcpt};\r\n\t{date}\r\n"
    return text.encode("utf-8", "surrogateescape")


def findings_header(verdict: Verdict) -> bytes:
    rules = ", ".join(dict.fromkeys(verdict.rules))
    prefix = f"monitor would {verdict.action}; " if verdict.monitor and verdict.action != Action.RELAY else ""
    return f"X-Sendwarden-Findings: {prefix}{rules}\r\n".encode()


class RelayHandler:
    """One per listener; the shared state lives in the `Service`."""

    def __init__(self, service: "Service", listener: str) -> None:
        self.service = service
        self.listener = listener

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

    def login_failed(self, server: "RelaySMTP", login: bytes) -> None:
        log.warning("auth_failed", client=client_ip(server.session) if server.session else "", user=login.decode("utf-8", "replace")[:64])

    # -- SMTP hooks -------------------------------------------------------------------------------

    async def handle_EHLO(self, server: "RelaySMTP", session: Session, envelope: Envelope, hostname: str, responses: list[str]) -> list[str]:
        session.host_name = hostname
        out = [r for r in responses[:-1] if r.strip() != "250-AUTH"]
        out.extend(_EXTENSIONS)
        out.append(responses[-1])
        return out

    async def handle_MAIL(self, server: "RelaySMTP", session: Session, envelope: Envelope, address: str, options: list[str]) -> str:
        service = self.service
        ip = client_ip(session)
        if not (session.authenticated or service.config.may_relay(ip)):
            reply = Replies.auth_required() if service.auth_offered(server) else Replies.relay_denied()
            log.warning("relay_refused", client=ip, sender=service.masker(address), reply=str(reply))
            return str(reply)
        if service.closing:
            return str(Replies.shutting_down())
        code, reason = address_problem(address, bool(envelope.smtp_utf8))
        if code:
            return f"553 {code} Sender address refused: {reason}"
        policy = service.policy
        user = _auth_user(session)
        stream = policy.resolve_stream(listener=self.listener, user=user, sender=address)
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        tx = Transaction(new_queue_id(), address, policy, stream.name, time.monotonic(), mail_dsn=dict(server.pending_dsn))
        tx.body_8bit = "BODY=8BITMIME" in options
        envelope.tx = tx  # type: ignore[attr-defined]
        server.in_transaction = True
        return "250 2.1.0 Sender ok"

    async def handle_RCPT(self, server: "RelaySMTP", session: Session, envelope: Envelope, address: str, options: list[str]) -> str:
        tx: Transaction | None = getattr(envelope, "tx", None)
        if tx is None:
            return "503 5.5.1 Error: need MAIL command"
        if len(envelope.rcpt_tos) >= self.settings.max_recipients:
            return "452 4.5.3 Too many recipients"
        code, reason = address_problem(address, bool(envelope.smtp_utf8))
        if code:
            return f"553 {code.replace('5.1.7', '5.1.3')} Recipient address refused: {reason}"
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(options)
        tx.recipients.append(Recipient(address, dict(server.pending_dsn)))
        return "250 2.1.5 Recipient ok"

    async def handle_RSET(self, server: "RelaySMTP", session: Session, envelope: Envelope) -> str:
        server.in_transaction = False
        return "250 2.0.0 Ok"

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
        verdict: Verdict | None = None
        t0 = time.perf_counter()
        if data.content is None:
            if data.error == "too_large":
                reply = Replies.too_large(settings.max_message_size)
            elif data.error == "bare_eol":
                reply = Replies.malformed("5.6.0", "Bare CR or LF in message data is not allowed (RFC 5321 2.3.8); send CRLF line endings")
            else:
                reply = Replies.malformed("5.6.0", f"Message has a line longer than {settings.max_line_length} characters (RFC 5321 4.5.3.1.6)")
            self._audit(session, tx, reply, None, data.size, record, t0)
            return str(reply)

        content = data.content
        message = Message.from_bytes(content)
        ctx = Context(
            stream=tx.stream,
            marketing=tx.policy.streams[tx.stream].marketing,
            mail_from=envelope.mail_from or "",
            rcpts=tuple(r.address for r in tx.recipients),
            client_ip=client_ip(session),
            helo=session.host_name or "",
            auth_user=_auth_user(session),
            now=time.time(),
        )
        if PROVIDERS:
            facts = await gather(service, tx.policy, message, ctx, settings.policy_timeout)
            if facts:
                ctx = replace(ctx, facts=facts)
        try:
            verdict = judge(tx.policy, message, ctx)
        except Exception as exc:  # the engine itself failed: never relay unjudged
            log.error("engine_failed", queue_id=tx.queue_id, error=repr(exc), exc_info=True)
            verdict = Verdict(tx.policy.action(tx.stream, "check.error"), (), tx.policy.monitor, tx.stream, (repr(exc),))
        record["policy_ms"] = round((time.perf_counter() - t0) * 1000, 3)

        action = verdict.effective
        if action == Action.REJECT:
            reply = verdict.reject_reply()
        elif action == Action.QUARANTINE:
            reply = await self._quarantine(session, envelope, tx, message, content, verdict, record)
        else:
            reply = await self._relay(server, session, envelope, tx, content, verdict, record)
        self._audit(session, tx, reply, verdict, len(content), record, t0)
        return str(reply)

    async def _quarantine(self, session: Session, envelope: Envelope, tx: Transaction, message: Message,
                          content: bytes, verdict: Verdict, record: dict[str, Any]) -> Reply:
        held = Held(
            stream=tx.stream,
            mail_from=envelope.mail_from or "",
            rcpts=[{"address": r.address, "dsn": r.dsn} for r in tx.recipients],
            mail_dsn=tx.mail_dsn,
            smtputf8=bool(envelope.smtp_utf8),
            client=client_ip(session),
            auth_user=_auth_user(session),
            subject=message.subject[:500],
            findings=[{"rule": j.rule, "action": str(j.action), "detail": j.finding.detail} for j in verdict.judged],
            queue_id=tx.queue_id,
        )
        try:
            hold_id = await self.service.quarantine.hold(content, held)
        except QuarantineError as exc:
            log.error("quarantine_failed", queue_id=tx.queue_id, error=str(exc))
            return Replies.store_unavailable(str(exc))
        record["hold_id"] = hold_id
        return Replies.quarantined(hold_id)

    async def _relay(self, server: "RelaySMTP", session: Session, envelope: Envelope, tx: Transaction,
                     content: bytes, verdict: Verdict, record: dict[str, Any]) -> Reply:
        settings = self.settings
        head = received_header(settings.hostname, session, tx.queue_id, tx.recipients)
        if verdict.judged and tx.policy.tag_header:
            head += findings_header(verdict)
        out = Outgoing(
            mail_from=envelope.mail_from or "",
            recipients=tuple(tx.recipients),
            data=head + content,
            smtputf8=bool(envelope.smtp_utf8),
            body_8bit=tx.body_8bit,
            dsn=tx.mail_dsn,
        )
        t1 = time.perf_counter()
        try:
            result = await asyncio.wait_for(self.service.upstream.send(out, tx.queue_id), settings.upstream_budget)
        except asyncio.TimeoutError:
            result = Result(Replies.upstream_unavailable("upstream did not answer in time"), False, "timeout")
        record["upstream_ms"] = round((time.perf_counter() - t1) * 1000, 3)
        record["upstream"] = result.upstream
        return result.reply

    def _audit(self, session: Session, tx: Transaction, reply: Reply, verdict: Verdict | None, size: int,
               record: dict[str, Any], t0: float) -> None:
        mask = self.service.masker
        log.info(
            "message",
            queue_id=tx.queue_id,
            client=client_ip(session),
            helo=session.host_name,
            auth_user=_auth_user(session),
            listener=self.listener,
            stream=tx.stream,
            sender=mask(tx.mail_from),
            rcpt_count=len(tx.recipients),
            rcpts=[mask(r.address) for r in tx.recipients],
            size=size,
            action=str(verdict.effective) if verdict else "refused",
            verdict=str(verdict.action) if verdict else None,
            monitor=verdict.monitor if verdict else False,
            rules=verdict.rules if verdict else [],
            reply=str(reply),
            total_ms=round((time.perf_counter() - t0) * 1000, 3),
            **record,
        )
        self.service.count(verdict, reply)


def _auth_user(session: Session) -> str | None:
    data = session.auth_data
    if data is None:
        return None
    login = getattr(data, "login", None)
    if isinstance(login, bytes):
        return login.decode("utf-8", "replace")
    return str(login) if login else None


__all__ = ["RelayHandler", "Transaction"]
