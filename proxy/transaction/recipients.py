"""Recipient state in the relay: the per-RCPT screening, and what is written once the upstream
accepted a message (frequency counts, privacy links). The after-DATA suppression lookup is a
fact provider (proxy/facts/suppressions.py).

The store is asked once per RCPT, within the policy time budget; the pure functions of the
optout, consent and frequency check modules turn its answer into findings, and the policy maps
each to an action. `reject` refuses that recipient; `quarantine`/`relay` accept it and carry the
finding to the message's verdict. A store that cannot answer in time means 451 4.3.0: marketing
is never sent unchecked.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

import structlog

from proxy.message.mime import Message
from proxy.policy.checks import consent, frequency, optout
from proxy.policy.checks.privacy import privacy_urls
from proxy.policy import engine
from proxy.policy.loader import Policy
from proxy.policy.verdict import Action, Finding
from proxy.replies import Replies, Reply
from proxy.store.base import InvalidAddress, Query, StoreError
from proxy.transaction.deps import JudgingDeps, TransactionDeps
from proxy.unsubscribe.headers import list_unsubscribe, token_scope, why_not


log = structlog.get_logger("sendwarden.recipients")
# Privacy-policy link words (multilingual); the content-rules work supplies the real finder.


@dataclass(frozen=True, slots=True)
class Plan:
    """What to ask the store for each recipient of one transaction (fixed at the first RCPT)."""

    brand: str
    suppression: bool
    consent_scope: str | None
    frequency: bool
    query: Query

    @property
    def needed(self) -> bool:
        return self.suppression or self.consent_scope is not None or self.frequency


@dataclass
class Screening:
    """The outcome for one recipient: a refusal, or acceptance with findings to carry."""

    reply: Reply | None = None
    findings: list[Finding] = field(default_factory=list)
    rule: str = ""  # the refusing rule, for metrics


def plan(policy: Policy, stream_name: str, mail_from: str, auth_user: str | None) -> Plan:
    stream = policy.streams.get(stream_name) or policy.streams[policy.default_stream]
    o: optout.OptoutOptions = policy.options["optout"]  # type: ignore[assignment]
    c: consent.ConsentOptions = policy.options["consent"]  # type: ignore[assignment]
    f: frequency.FrequencyOptions = policy.options["frequency"]  # type: ignore[assignment]
    brand = optout.rcpt_brand(o, stream.name, mail_from, auth_user)
    suppression = o.enabled and stream.marketing
    scope = consent.required_scope(c, stream.name, brand)
    freq = frequency.applies(f, stream.name, stream.marketing)
    query = Query(
        scopes=optout.rcpt_scopes(brand) if suppression else (),
        consent_scope=scope,
        windows=frequency.windows(f, brand, stream.name) if freq else (),
        overrides=freq and f.overrides,
    )
    return Plan(brand, suppression, scope, freq, query)


def findings(policy: Policy, p: Plan, stream: str, address: str, state: Any) -> list[Finding]:
    out = optout.findings(state, address) if p.suppression else []
    if p.consent_scope is not None:
        out += consent.findings(state, address, p.consent_scope)
    if p.frequency:
        out += frequency.findings(state, address, policy.options["frequency"], p.brand, stream)  # type: ignore[arg-type]
    return out


def decide(policy: Policy, stream: str, found: list[Finding]) -> Screening:
    """Refuse the recipient when the engine's verdict on its findings is reject (and the policy
    enforces): the same engine and action mapping as for the message. Other actions go with the
    message, whose verdict then includes these findings."""
    if not found:  # the common case: nothing to decide
        return Screening()
    verdict = engine.decide(policy, stream, found)
    if verdict.effective != Action.REJECT:
        return Screening(None, found)
    refusing = [j.finding for j in verdict.deciding()]
    f_opts: frequency.FrequencyOptions = policy.options["frequency"]  # type: ignore[assignment]
    permanent = [f for f in refusing if f.rule != "frequency.exceeded" or f_opts.reply == "permanent"]
    first = (permanent or refusing)[0]
    reason = first.detail.partition(": ")[2] or first.detail
    if permanent:
        return Screening(Replies.recipient_refused(first.rule, reason), rule=first.rule)
    return Screening(Replies.recipient_deferred(first.rule, reason), rule=first.rule)


async def screen(deps: JudgingDeps, policy: Policy, p: Plan, stream: str, address: str) -> Screening:
    """The per-RCPT answer for one recipient, within the policy time budget."""
    if not p.needed or deps.facts is None:  # nothing to ask, or `scan` offline (it says so)
        return Screening()
    try:
        state = await asyncio.wait_for(deps.facts.store.lookup(address, p.query, time.time()), deps.policy_timeout)
    except InvalidAddress as exc:
        return invalid(policy, stream, str(exc))
    except (StoreError, TimeoutError) as exc:
        reason = str(exc) or "no answer in time"
        log.error("store_unavailable", during="rcpt", error=reason)
        return unavailable(policy, stream, reason)
    return decide(policy, stream, findings(policy, p, stream, address, state))


def invalid(policy: Policy, stream: str, reason: str) -> Screening:
    """A recipient the store cannot file (`recipient.invalid`), decided like every RCPT-time
    finding: refused with 553 5.1.3 (the code for a bad address) when the policy rejects it,
    else accepted with the finding going to the message's verdict."""
    finding = Finding("recipient.invalid", f"bad recipient address: {reason}"[:300], "correct or remove the address")
    screening = decide(policy, stream, [finding])
    if screening.reply is None:
        return screening
    return Screening(Replies.bad_recipient(reason), rule="recipient.invalid")


def rate_exceeded(policy: Policy, stream: str, reason: str) -> Screening:
    """A rate limit reached (`rate.exceeded`), with the action the policy gives it: tempfail
    answers 451 4.7.1 and the client retries later, reject refuses for good, quarantine or
    relay let the message or recipient in and carry the finding to the message's verdict (held,
    or tagged). Rate limits protect the node and the upstream, so they hold in monitor mode too."""
    action = policy.action(stream, "rate.exceeded")
    if action == Action.TEMPFAIL:
        return Screening(Replies.rate_limited(reason), rule="rate.exceeded")
    if action == Action.REJECT:
        return Screening(Replies.rate_refused(reason), rule="rate.exceeded")
    return Screening(None, [Finding("rate.exceeded", f"rate limit reached: {reason}"[:300], "send more slowly")])


def unavailable(policy: Policy, stream: str, reason: str) -> Screening:
    """The store cannot answer: 451 4.3.0, unless the policy gives `lookup.failed` a relay or
    quarantine action on a stream that is not marketing; then the recipient is accepted and the
    finding goes with the message (in its findings tag). Marketing is never sent unchecked."""
    s = policy.streams.get(stream) or policy.streams[policy.default_stream]
    if not s.marketing and policy.action(stream, "lookup.failed") in (Action.RELAY, Action.QUARANTINE):
        return Screening(None, [Finding("lookup.failed", f"recipient store unavailable: {reason}"[:300])])
    return Screening(Replies.store_unavailable(reason), rule="lookup.failed")


def list_unsubscribe_block(deps: JudgingDeps, policy: Policy, p: Plan, marketing: bool, rcpts: list[str],
                           message: Message) -> tuple[bytes, str]:
    """The List-Unsubscribe headers to prepend (b"" for none) and, when none, why not."""
    o: optout.OptoutOptions = policy.options["optout"]  # type: ignore[assignment]
    if not (o.insert_list_unsubscribe and marketing):
        return b"", ""
    keys = deps.unsubscribe_keys
    reason = why_not(message, len(rcpts), deps.endpoints) if keys else "no unsubscribe key"
    if reason or keys is None:
        return b"", reason or ""
    scope = token_scope(o.unsubscribe_scope, p.brand, optout.list_id(message, o.list_header))
    expires = int(time.time()) + deps.token_days * 86400
    return list_unsubscribe(keys, deps.endpoints, rcpts[0], scope, expires), ""


def sender_domain(message: Message, mail_from: str) -> str:
    addrs = [a for _, a in message.from_addresses if "@" in a]
    return (addrs[0] if addrs else mail_from).rpartition("@")[2].lower()


async def after_relay(deps: TransactionDeps, p: Plan, stream: str, marketing: bool, mail_from: str,
                      rcpts: list[str], message: Message, privacy_options: Any = None) -> None:
    """Once the upstream accepted a message: count it for frequency, note its privacy links.
    A write the store cannot take now is kept and replayed (proxy/store/pending.py), never
    turned into a failure for a message already delivered."""
    now = time.time()
    try:
        counted = rcpts if marketing and p.frequency else []
        # The privacy check's own finder, with the policy's words: what it found is recorded.
        urls = privacy_urls(message, privacy_options) if marketing else ()
        if counted or urls:
            domain = sender_domain(message, mail_from) if urls else ""
            await deps.pending_writes.run("delivery", lambda: deps.store.record_delivery(
                now, counted, p.brand, stream, sender_domain=domain, urls=urls))
    except ValueError as exc:
        log.error("store_write_failed", during="after_relay", error=str(exc) or type(exc).__name__)
