"""What becomes of a judged message, whatever brought it in: held in the quarantine, the
bookkeeping once the next hop has it, the findings tag, and the one audit line.

The SMTP relay (proxy/smtp/handler.py) and the milter (proxy/milter/engine.py) act on the
verdict in their own protocol with these, so both fronts behave the same.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Awaitable, Callable, TypeVar

import structlog

from proxy.metrics import reply_class
from proxy.policy.verdict import Action, Verdict
from proxy.replies import Replies, Reply
from proxy.quarantine.files import Held, QuarantineError
from proxy.transaction import recipients
from proxy.transaction.deps import TransactionDeps
from proxy.transaction.envelope import Transaction
from proxy.transaction.evaluate import Judgement

log = structlog.get_logger("sendwarden.pipeline")
T = TypeVar("T")


async def act(verdict: Verdict, *, refuse: Callable[[Reply], T], hold: Callable[[], Awaitable[T]],
              relay: Callable[[], Awaitable[T]]) -> T:
    """The one dispatch from a verdict to its outcome, for the relay, the milter and `scan`:
    reject and tempfail answer the verdict's reply (`refuse`, in the front's own protocol),
    quarantine holds the message, relay sends it on. In monitor mode everything is relayed."""
    action = verdict.effective
    if action == Action.REJECT:
        return refuse(verdict.reject_reply())
    if action == Action.TEMPFAIL:
        return refuse(verdict.tempfail_reply())
    if action == Action.QUARANTINE:
        return await hold()
    return await relay()


def findings_header(verdict: Verdict) -> bytes:
    """The tag on relayed messages that had findings (policy `tag_header`)."""
    rules = ", ".join(dict.fromkeys(verdict.rules))
    prefix = f"monitor would {verdict.action}; " if verdict.monitor and verdict.action != Action.RELAY else ""
    return f"X-Sendwarden-Findings: {prefix}{rules}\r\n".encode()


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
    """The one audit line of a message, and its metrics. The line (its masked addresses, its
    fields) is only built when the configured level keeps it."""
    if log.is_enabled_for(logging.INFO):  # structlog's level filter, as `configure` set it
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
