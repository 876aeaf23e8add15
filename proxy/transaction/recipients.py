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

from proxy.dns import DnsFailure, Resolver
from proxy.facts.routing import cached_route, route
from proxy.message.mime import Message
from proxy.message.lists import list_id
from proxy.policy.families import consent, frequency, optout
from proxy.policy.families.privacy import privacy_urls
from proxy.policy.families.recipient import RecipientOptions, blocked_findings, recipient_domain, route_findings
from proxy.policy.context import LookupFailed
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
    """Refuse the recipient when a finding's action is reject, defer it when tempfail (and the
    policy enforces), with the same engine and action mapping as for the message; otherwise
    accept it and carry the findings to the message's verdict. A failed lookup is never a
    permanent refusal, whatever its action: the client retries."""
    if not found:  # the common case: nothing to decide
        return Screening()
    verdict = engine.decide(policy, stream, found)
    if verdict.monitor:
        return Screening(None, found)
    refusing = [j.finding for j in verdict.judged if j.action == Action.REJECT and j.rule != "lookup.failed"]
    deferring = [j.finding for j in verdict.judged
                 if j.action == Action.TEMPFAIL or (j.action == Action.REJECT and j.rule == "lookup.failed")]
    if refusing:
        f_opts: frequency.FrequencyOptions = policy.options["frequency"]  # type: ignore[assignment]
        permanent = [f for f in refusing if f.rule != "frequency.exceeded" or f_opts.reply == "permanent"]
        first = (permanent or refusing)[0]
        reason = first.detail.partition(": ")[2] or first.detail
        if not permanent:
            return Screening(Replies.recipient_deferred(first.rule, reason), rule=first.rule)
        if first.rule == "recipient.domain_unroutable":
            return Screening(Replies.recipient_unroutable(first.rule, first.detail), rule=first.rule)
        return Screening(Replies.recipient_refused(first.rule, reason), rule=first.rule)
    if deferring:
        first = deferring[0]
        if first.rule == "lookup.failed":
            return Screening(Replies.recipient_lookup_failed(first.rule, first.detail), rule=first.rule)
        return Screening(Replies.recipient_deferred(first.rule, first.detail.partition(": ")[2] or first.detail), rule=first.rule)
    return Screening(None, found)


async def domain_findings(resolver: Resolver | None, opts: RecipientOptions, address: str, timeout: float) -> list[Finding]:
    """recipient.blocked_destination (pure), then recipient.domain_unroutable from one lookup
    through the resolver (None: not resolved, the upstream routes). A blocked domain is not
    looked up; an address literal or a domain that is no name is left to the store and the MTA."""
    if not opts.enabled:
        return []
    domain = recipient_domain(address)
    if not domain:
        return []
    found = blocked_findings(opts, domain)
    if found or resolver is None:
        return found
    fact: Any = cached_route(resolver, domain)  # the common case: no await, no timer
    if fact is None:
        try:
            async with asyncio.timeout(timeout):
                fact = await route(resolver, domain)
        except DnsFailure as exc:
            fact = LookupFailed(str(exc))
        except TimeoutError:
            fact = LookupFailed(f"no answer within {timeout:g}s")
    return route_findings(fact, domain)


async def screen(deps: JudgingDeps, policy: Policy, p: Plan, stream: str, address: str) -> Screening:
    """The per-RCPT answer for one recipient: its domain, then its state in the store, within
    the policy time budget. Without fact sources (`scan` offline, which says so) the domain is
    screened against the blocked list only and the store is not asked."""
    timeout = deps.policy_timeout
    facts = deps.facts
    resolver = facts.resolver if facts is not None and deps.verify_domains else None
    found = await domain_findings(resolver, policy.options["recipient"], address, timeout)  # type: ignore[arg-type]
    if resolver is not None and facts is not None and facts.metrics is not None:
        facts.metrics.recipient_domains.labels(found[0].rule if found else "ok").inc()
    if found:
        early = decide(policy, stream, found)
        if early.reply is not None:
            return early
    if not p.needed or facts is None:
        return Screening(None, found)
    try:
        # A timeout scope, not wait_for: that wraps the lookup in a task of its own (and a loop
        # turn to start it) on every RCPT.
        async with asyncio.timeout(timeout):
            state = await facts.store.lookup(address, p.query, time.time())
    except InvalidAddress as exc:
        return invalid(policy, stream, str(exc))
    except (StoreError, TimeoutError) as exc:
        reason = str(exc) or "no answer in time"
        log.error("store_unavailable", during="rcpt", error=reason)
        return unavailable(policy, stream, reason)
    return decide(policy, stream, found + findings(policy, p, stream, address, state))


def invalid(policy: Policy, stream: str, reason: str) -> Screening:
    """A recipient the store cannot file (`recipient.invalid`), decided like every RCPT-time
    finding: refused with 553 5.1.3 (the code for a bad address) when the policy rejects it,
    else accepted with the finding going to the message's verdict."""
    finding = Finding("recipient.invalid", f"bad recipient address: {reason}"[:300], "correct or remove the address")
    screening = decide(policy, stream, [finding])
    if screening.reply is None or screening.reply.is_temporary:
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
    scope = token_scope(o.unsubscribe_scope, p.brand, list_id(message, o.list_header))
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
        if not marketing:
            return
        counted = rcpts if p.frequency else []
        # The privacy check's own finder, with the policy's words: what it found is recorded.
        urls = privacy_urls(message, privacy_options)
        # Delivered recipients per sender domain and brand: the complaint rate's denominator.
        domain = sender_domain(message, mail_from)
        await deps.pending_writes.run("delivery", lambda: deps.store.record_delivery(
            now, counted, p.brand, stream, sender_domain=domain, urls=urls, delivered=len(rcpts)))
    except ValueError as exc:
        log.error("store_write_failed", during="after_relay", error=str(exc) or type(exc).__name__)
