"""Judging one message: parse once, insert List-Unsubscribe where the policy asks, look up
the facts, run the engine. The same for the relay, the milter, the release recheck and `scan`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Any

import structlog

from proxy.facts.gather import gather
from proxy.message.mime import Message
from proxy.policy.context import Context
from proxy.policy.verdict import Verdict
from proxy.transaction import heavy, recipients
from proxy.transaction.deps import JudgingDeps
from proxy.transaction.envelope import Transaction

__all__ = ["Judgement", "evaluate"]

log = structlog.get_logger("sendwarden.pipeline")


@dataclass
class Judgement:
    message: Message
    content: bytes  # the message as it will leave: `inserted` + what arrived
    inserted: bytes  # headers sendwarden prepended before judging (List-Unsubscribe), or b""
    verdict: Verdict


async def evaluate(deps: JudgingDeps, tx: Transaction, content: bytes, record: dict[str, Any]) -> Judgement:
    """Parse once, insert List-Unsubscribe where the policy asks, gather facts, judge."""
    t0 = time.perf_counter()
    # A heavy message is parsed and judged in a worker thread (transaction/heavy.py); whether it
    # is heavy is one pass over its bytes, made once for both.
    weight = heavy.is_heavy(content)
    message = await heavy.parse(content, weight)
    plan = tx.ensure_plan()
    rcpt_addresses = [r.address for r in tx.recipients]
    head, why_not = recipients.list_unsubscribe_block(deps, tx.policy, plan, tx.marketing, rcpt_addresses, message)
    if head:
        # Prepended only: the message itself is never re-serialised, nor parsed again (the
        # parsed view takes the new headers in front). Judged as it will go out.
        message = message.with_headers_prepended(head)
        content = message.raw  # head + content, joined once (a big message is not copied twice)
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
    facts = await gather(deps.facts, tx.policy, message, ctx, deps.policy_timeout, deps.providers) if deps.facts else None
    if facts:
        ctx = replace(ctx, facts=facts)
    try:
        verdict = await heavy.judge_message(tx.policy, message, ctx, tx.rcpt_findings, weight)
    except Exception as exc:  # the engine itself failed: never relay unjudged
        log.error("engine_failed", queue_id=tx.queue_id, error=repr(exc), exc_info=True)
        verdict = Verdict(tx.policy.action(tx.stream, "check.error"), (), tx.policy.monitor, tx.stream, (repr(exc),))
    record["policy_ms"] = round((time.perf_counter() - t0) * 1000, 3)
    return Judgement(message, content, head or b"", verdict)
