"""One message's way through the functional core and the stores, whatever brought it in.

The SMTP relay (proxy/smtp/handler.py) and the milter (proxy/milter/engine.py) both collect an
envelope into a `Transaction`, then call `evaluate` (parse once, insert List-Unsubscribe when
the policy says so, look up facts, judge), act on the verdict in their own protocol, and
finish with `audit`. Holding a message in the quarantine and the bookkeeping after an accepted
message live here too, so both fronts behave the same.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import structlog

from proxy.transaction import recipients
from proxy.facts.gather import gather
from proxy.message.mime import Message
from proxy.metrics import reply_class
from proxy.policy.engine import judge
from proxy.policy.loader import Policy
from proxy.policy.context import Context
from proxy.policy.verdict import Action, Finding, Replies, Reply, Verdict
from proxy.quarantine.files import Held, QuarantineError
from proxy.transaction.deps import TransactionDeps
from proxy.transaction.recipients import Plan
from proxy.outbound.upstream import Recipient

if TYPE_CHECKING:
    from proxy.unsubscribe.intake import Local

log = structlog.get_logger("sendwarden.pipeline")


@dataclass
class Transaction:
    """What sendwarden keeps for one MAIL..end-of-data transaction."""

    queue_id: str
    mail_from: str
    policy: Policy  # the policy in force at MAIL FROM: a reload does not change it mid-way
    stream: str
    started: float
    listener: str = ""
    client_ip: str = ""
    helo: str = ""
    auth_user: str | None = None
    proto: str = "ESMTP"
    smtputf8: bool = False
    recipients: list[Recipient] = field(default_factory=list)
    mail_dsn: dict[str, str] = field(default_factory=dict)
    body_8bit: bool = False
    traffic_class: str = ""  # for rate limits: "bounce" or the stream's name
    rate_keys: dict[str, str] = field(default_factory=dict)
    domains: set[str] = field(default_factory=set)
    inbound_only: bool = False  # the client may not relay: only sendwarden's own addresses
    local: list["Local"] = field(default_factory=list)  # recipients that are sendwarden itself
    plan: Plan | None = None  # the recipient-state lookups, fixed at the first RCPT
    rcpt_findings: list[Finding] = field(default_factory=list)  # accepted with findings at RCPT

    @property
    def marketing(self) -> bool:
        return self.policy.streams[self.stream].marketing

    def ensure_plan(self) -> Plan:
        if self.plan is None:
            self.plan = recipients.plan(self.policy, self.stream, self.mail_from, self.auth_user)
        return self.plan


def new_queue_id() -> str:
    return secrets.token_hex(5).upper()


def findings_header(verdict: Verdict) -> bytes:
    """The tag on relayed messages that had findings (policy `tag_header`)."""
    rules = ", ".join(dict.fromkeys(verdict.rules))
    prefix = f"monitor would {verdict.action}; " if verdict.monitor and verdict.action != Action.RELAY else ""
    return f"X-Sendwarden-Findings: {prefix}{rules}\r\n".encode()


@dataclass
class Judgement:
    message: Message
    content: bytes  # the message as it will leave: `inserted` + what arrived
    inserted: bytes  # headers sendwarden prepended before judging (List-Unsubscribe), or b""
    verdict: Verdict


async def evaluate(deps: TransactionDeps, tx: Transaction, content: bytes, record: dict[str, Any]) -> Judgement:
    """Parse once, insert List-Unsubscribe where the policy asks, gather facts, judge."""
    t0 = time.perf_counter()
    message = Message.from_bytes(content)
    plan = tx.ensure_plan()
    rcpt_addresses = [r.address for r in tx.recipients]
    head, why_not = recipients.list_unsubscribe_block(deps, tx.policy, plan, tx.marketing, rcpt_addresses, message)
    if head:
        # Prepended only: the message itself is never re-serialised. Judged as it will go out.
        content = head + content
        message = Message.from_bytes(content)
        record["list_unsubscribe"] = "inserted"
    elif why_not:
        record["list_unsubscribe"] = f"not inserted: {why_not}"
    ctx = Context(
        stream=tx.stream,
        marketing=tx.marketing,
        mail_from=tx.mail_from,
        rcpts=tuple(rcpt_addresses),
        client_ip=tx.client_ip,
        helo=tx.helo,
        auth_user=tx.auth_user,
        now=time.time(),
    )
    facts = await gather(deps.facts, tx.policy, message, ctx, deps.policy_timeout)
    if facts:
        ctx = replace(ctx, facts=facts)
    try:
        verdict = judge(tx.policy, message, ctx, extra=tx.rcpt_findings)
    except Exception as exc:  # the engine itself failed: never relay unjudged
        log.error("engine_failed", queue_id=tx.queue_id, error=repr(exc), exc_info=True)
        verdict = Verdict(tx.policy.action(tx.stream, "check.error"), (), tx.policy.monitor, tx.stream, (repr(exc),))
    record["policy_ms"] = round((time.perf_counter() - t0) * 1000, 3)
    return Judgement(message, content, head or b"", verdict)


async def hold(deps: TransactionDeps, tx: Transaction, judgement: Judgement, original: bytes, record: dict[str, Any]) -> Reply:
    """Keep the message (as it arrived) in the quarantine; the reply says on disk or 451."""
    verdict = judgement.verdict
    held = Held(
        stream=tx.stream,
        mail_from=tx.mail_from,
        rcpts=[{"address": r.address, "dsn": r.dsn} for r in tx.recipients],
        mail_dsn=tx.mail_dsn,
        smtputf8=tx.smtputf8,
        client=tx.client_ip,
        auth_user=tx.auth_user,
        subject=judgement.message.subject[:500],
        findings=[{"rule": j.rule, "action": str(j.action), "detail": j.finding.detail} for j in verdict.judged],
        queue_id=tx.queue_id,
        helo=tx.helo,
        proto=tx.proto,
    )
    try:
        hold_id = await deps.quarantine.hold(original, held)
    except QuarantineError as exc:
        log.error("quarantine_failed", queue_id=tx.queue_id, error=str(exc))
        record["store_error"] = "quarantine"
        return Replies.store_unavailable(str(exc))
    deps.notifier.quarantined(hold_id, held)
    record["hold_id"] = hold_id
    return Replies.quarantined(hold_id)


async def accepted(deps: TransactionDeps, tx: Transaction, judgement: Judgement) -> None:
    """Bookkeeping once the next hop has the message: frequency counts, privacy links."""
    await recipients.after_relay(deps, tx.ensure_plan(), tx.stream, tx.marketing, tx.mail_from,
                                 [r.address for r in tx.recipients], judgement.message,
                                 tx.policy.options.get("privacy"))


def audit(deps: TransactionDeps, tx: Transaction, reply: Reply, verdict: Verdict | None, size: int,
          record: dict[str, Any], t0: float) -> None:
    """The one audit line of a message, and its metrics."""
    mask = deps.masker
    log.info(
        "message",
        queue_id=tx.queue_id,
        client=tx.client_ip,
        helo=tx.helo,
        auth_user=tx.auth_user,
        listener=tx.listener,
        stream=tx.stream,
        sender=mask(tx.mail_from),
        rcpt_count=len(tx.recipients) or len(tx.local),
        rcpts=[mask(r.address) for r in tx.recipients] or [mask(r.address) for r in tx.local],
        size=size,
        action=str(verdict.effective) if verdict else ("consumed" if "consumed" in record else "refused"),
        verdict=str(verdict.action) if verdict else None,
        monitor=verdict.monitor if verdict else False,
        rules=verdict.rules if verdict else [],
        reply=str(reply),
        total_ms=round((time.perf_counter() - t0) * 1000, 3),
        **({"worker": deps.worker} if deps.worker is not None else {}),
        **record,
    )
    m = deps.metrics
    m.message(tx.stream, str(verdict.effective) if verdict else "refused")
    if verdict is not None:
        for j in verdict.judged:
            m.findings.labels(j.rule, str(j.action)).inc()
    if "policy_ms" in record:
        m.policy_seconds.observe(record["policy_ms"] / 1000)
    if "upstream_ms" in record:
        m.upstream_seconds.observe(record["upstream_ms"] / 1000)
        m.upstream_replies.labels(reply_class(record.get("upstream_code"))).inc()
    if record.get("store_error"):
        m.store_errors.labels(record["store_error"]).inc()
    m.transaction_seconds.observe(time.perf_counter() - t0)
