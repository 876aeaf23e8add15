"""The URI blocklist check: turns the zones' answers (the `blocklist` fact the shell looked up)
into findings. Zones, options and the reading of answers: proxy/policy/families/blocklist.py."""

from __future__ import annotations

from typing import Iterator

from proxy.message.mime import Message
from proxy.policy.context import Context, LookupFailed
from proxy.policy.families.blocklist import FACT, BlocklistOptions, answer_findings
from proxy.policy.registry import check
from proxy.policy.verdict import Finding


@check("blocklist", rules=("content.blocklisted_link", "lookup.failed"))
def blocklisted_link(msg: Message, ctx: Context, opts: BlocklistOptions) -> Iterator[Finding]:
    fact = (ctx.facts or {}).get(FACT)
    if fact is None:
        return  # not looked up (offline scan, no zones)
    if isinstance(fact, LookupFailed):
        yield Finding("lookup.failed", f"URI blocklist lookups: {fact.reason}", "a DNS lookup failed; try again later")
        return
    yield from answer_findings(opts, fact)
