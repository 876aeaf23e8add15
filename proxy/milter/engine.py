"""The policy engine behind the milter: the same streams, recipient state, checks, quarantine,
DKIM signing, audit log and metrics as the SMTP relay, through proxy/transaction/outcome.py.

In milter mode the MTA owns the SMTP session and the queue; sendwarden answers per recipient at
RCPT and once at end of message:
  reject     the MTA refuses the message with our 5xx reply and text
  tempfail   the MTA answers our 4xx (a lookup failed: the client retries)
  quarantine `[milter] quarantine` decides: "mta" holds it in the MTA's hold queue
             (SMFIR_QUARANTINE, `postsuper -H` releases it), "sendwarden" keeps it in
             sendwarden's quarantine (fsynced) and tells the MTA to discard its copy, "both"
             does both (release from one place only)
  relay      accept, with header edits: inserted List-Unsubscribe headers, the findings tag,
             and the DKIM-Signature on top, computed over the message as it will leave.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Protocol

import structlog

from proxy.transaction import outcome, recipients
from proxy.transaction.evaluate import Judgement, evaluate
from proxy.milter.application import AddHeader, Decision, InsertHeader, Macros, MilterApplication
from proxy.milter.application import MilterTransaction
from proxy.milter.wire import Family
from proxy.transaction.envelope import Transaction, new_queue_id
from proxy.transaction.outcome import findings_header
from proxy.replies import Replies, Reply
from proxy.outbound.upstream import Recipient

if TYPE_CHECKING:
    from proxy.audit import AddressMasker
    from proxy.config import Config
    from proxy.metrics import Metrics
    from proxy.policy.loader import Policy
    from proxy.transaction.deps import TransactionDeps

log = structlog.get_logger("sendwarden.milter")


def split_headers(block: bytes) -> list[tuple[str, str]]:
    """'Name: value\\r\\n\\tfolded\\r\\n...' → [(name, value)], folds kept as LF + whitespace
    (the form a milter hands header values to the MTA in)."""
    out: list[tuple[str, str]] = []
    for line in block.decode("utf-8", "surrogateescape").split("\r\n"):
        if not line:
            continue
        if line[0] in " \t" and out:
            name, value = out[-1]
            out[-1] = (name, value + "\n" + line)
        else:
            name, _, value = line.partition(":")
            out.append((name, value.lstrip(" ")))
    return out


def refused(reply: Reply) -> tuple[Decision, Reply]:
    """A reject or tempfail verdict as the milter's answer to the MTA."""
    return (Decision.tempfail(reply) if reply.is_temporary else Decision.reject(reply)), reply


def with_headers(decision: Decision, top: bytes) -> Decision:
    """The decision with our header block inserted at the very top of the message."""
    if not top:
        return decision
    # InsertHeader(0) puts a header at the very top: insert bottom-up to keep the order.
    edits = tuple(InsertHeader(0, name, value) for name, value in reversed(split_headers(top)))
    return Decision(decision.outcome, decision.reply, decision.reason, edits)


class MilterRelay(Protocol):
    """What the milter uses of the running relay (proxy/runtime/service.py's `Service`)."""

    config: "Config"
    policy: "Policy"
    masker: "AddressMasker"
    metrics: "Metrics"
    deps: "TransactionDeps"

    async def dkim_signature(self, head: bytes, content: bytes) -> tuple[bytes, str]: ...


class PolicyMilter(MilterApplication):
    """One per MTA connection."""

    # It answers only at RCPT and at end of message: the MTA need not wait at these stages.
    NEVER_REFUSES = frozenset({"connect", "helo", "mail"})

    def __init__(self, service: MilterRelay, listener: str = "milter") -> None:
        self.service = service
        self.listener = listener
        self.client_ip = ""
        self.helo_name = ""
        self.tx: Transaction | None = None

    async def connect(self, host: str, family: Family, port: int, address: str, macros: Macros) -> Reply | None:
        self.client_ip = macros.get("client_addr") or address
        return None

    async def helo(self, name: str, macros: Macros) -> Reply | None:
        self.helo_name = name
        return None

    async def mail_from(self, sender: str, args: tuple[str, ...], macros: Macros) -> Reply | None:
        service = self.service
        policy = service.policy
        user = macros.get("auth_authen") or None
        listener = macros.get("daemon_name") or self.listener
        stream = policy.resolve_stream(listener=listener, user=user, sender=sender)
        upper = {a.upper() for a in args}
        self.tx = Transaction(
            macros.get("i") or new_queue_id(), sender, policy, stream.name, time.monotonic(), listener=listener,
            client_ip=self.client_ip, helo=self.helo_name, auth_user=user, proto="ESMTP" + ("A" if user else ""),
            smtputf8="SMTPUTF8" in upper, body_8bit="BODY=8BITMIME" in upper,
        )
        structlog.contextvars.bind_contextvars(queue_id=self.tx.queue_id)
        return None

    async def rcpt(self, recipient: str, args: tuple[str, ...], macros: Macros) -> Reply | None:
        tx = self.tx
        if tx is None:
            return None
        screening = await recipients.screen(self.service.deps.judging, tx.policy, tx.ensure_plan(), tx.stream, recipient)
        if screening.reply is not None:
            self.service.metrics.rcpt_refusals.labels(screening.rule).inc()
            log.info("rcpt_refused", rcpt=self.service.masker(recipient), reply=str(screening.reply))
            return screening.reply
        tx.rcpt_findings.extend(screening.findings)
        tx.recipients.append(Recipient(recipient))
        return None

    async def end_of_message(self, transaction: MilterTransaction) -> Decision:
        service = self.service
        tx = self.tx
        if tx is None:  # no MAIL event (should not happen): judge with what the MTA says
            await self.mail_from(transaction.sender, transaction.sender_args, transaction.macros)
            tx = self.tx
            assert tx is not None
            tx.recipients = [Recipient(r) for r in transaction.recipients]
        if transaction.queue_id:
            tx.queue_id = transaction.queue_id
        record: dict[str, Any] = {"front": "milter"}
        t0 = time.perf_counter()
        judgement = await evaluate(service.deps.judging, tx, transaction.message, record)
        verdict = judgement.verdict
        message = transaction.message

        async def held() -> tuple[Decision, Reply]:
            decision, reply = await self._quarantine(tx, judgement, message, record)
            return with_headers(decision, judgement.inserted), reply

        async def relayed() -> tuple[Decision, Reply]:
            top = judgement.inserted
            if verdict.judged and tx.policy.tag_header:
                top += findings_header(verdict)
            # DKIM over the message as the MTA will send it: our headers on top of what came in.
            signature, note = await service.dkim_signature(top, message)
            if note:
                record["dkim"] = note
            await outcome.accepted(service.deps, tx, judgement)
            return with_headers(Decision.accept(), signature + top), Replies.milter_accepted()

        decision, reply = await outcome.act(verdict, refuse=refused, hold=held, relay=relayed)
        outcome.audit(service.deps, tx, reply, verdict, len(transaction.message), record, t0)
        structlog.contextvars.unbind_contextvars("queue_id")
        self.tx = None
        return decision

    async def _quarantine(self, tx: Transaction, judgement: Judgement, original: bytes,
                          record: dict[str, Any]) -> tuple[Decision, Reply]:
        mode = self.service.config.file.milter.quarantine
        rules = ", ".join(sorted({j.rule for j in judgement.verdict.deciding()}))
        if mode == "mta":
            return Decision.quarantine(f"sendwarden: {rules}"), Replies.held_by_mta(rules)
        reply = await outcome.hold(self.service.deps, tx, judgement, original, record)
        if not reply.is_success:  # not on disk: the MTA must keep it and the client retry
            return Decision.tempfail(reply), reply
        if mode == "sendwarden":
            return Decision.discard(), reply
        return Decision.quarantine(f"sendwarden: {rules} id={record.get('hold_id', '')}"), reply

    async def abort(self) -> None:
        self.tx = None
        structlog.contextvars.unbind_contextvars("queue_id")


__all__ = ["PolicyMilter", "split_headers", "AddHeader", "Replies"]
