"""The opt-out check after DATA (AUP: no sending to people who unsubscribed or objected):
suppressions that only the message's headers revealed. The family's options, its RCPT-time
findings and the scopes to look up live in proxy/policy/families/optout.py."""

from __future__ import annotations

from typing import Iterator, Mapping

from proxy.message.mime import Message
from proxy.policy.context import Context, LookupFailed
from proxy.policy.families.optout import LATE_FACT, OptoutOptions, describe
from proxy.policy.recipientstate import Suppression
from proxy.policy.registry import check
from proxy.policy.verdict import Finding


@check("optout", rules=("optout.suppressed_after_data", "lookup.failed"), marketing_only=False)
def late(msg: Message, ctx: Context, opts: OptoutOptions) -> Iterator[Finding]:
    """Suppressions that only the message's headers revealed: the whole message takes the
    policy's action (default quarantine), so no recipient is dropped silently."""
    fact = (ctx.facts or {}).get(LATE_FACT)
    if fact is None:
        return
    if isinstance(fact, LookupFailed):
        yield Finding("lookup.failed", f"suppression lookup after DATA failed: {fact.reason}")
        return
    found: Mapping[str, list[Suppression]] = fact
    for address, sups in found.items():
        for s in sups:
            yield Finding(
                "optout.suppressed_after_data",
                f"{address}: {describe(s)}; known only from the message headers",
                "remove the recipient from your list, or send marketing on a marketing stream so RCPT refuses them",
            )
