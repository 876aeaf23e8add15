"""The complaint-rate check: a sender domain or brand over its limit. Options and rates (shared
with the shell that keeps them in memory): proxy/policy/families/complaints.py."""

from __future__ import annotations

from typing import Iterator

from proxy.message.mime import Message
from proxy.policy.context import Context
from proxy.policy.families.complaints import FACT, ComplaintRateOptions, Rate
from proxy.policy.registry import check
from proxy.policy.verdict import Finding


@check("complaint_rate", rules=("compliance.complaint_rate",), marketing_only=True)
def complaint_rate(msg: Message, ctx: Context, opts: ComplaintRateOptions) -> Iterator[Finding]:
    fact = (ctx.facts or {}).get(FACT)
    if not isinstance(fact, Rate) or fact.level(opts) != "limit":
        return
    name = fact.scope.partition(":")[2]
    yield Finding(
        "compliance.complaint_rate",
        f"{name}: {fact.complaints} spam complaints on {fact.delivered} delivered in {opts.window_days} days "
        f"({fact.rate:.2%}, limit {opts.limit:.2%})",
        "mail only people who asked for it and make unsubscribing easy; marketing resumes once the rate falls",
    )
