"""The URI blocklist fact: every (domain, zone) pair of a message looked up at once through
the one resolver (its cache serves the domains a newsletter links to message after message),
each answer or failure kept apart, so that one slow zone costs a `lookup.failed` for its own
names and the others still count. The whole fact runs under the policy time budget
(proxy/facts/gather.py)."""

from __future__ import annotations

import asyncio
from typing import Any, Awaitable

from proxy.dns import DnsFailure, Resolver
from proxy.message.mime import Message
from proxy.policy.families.blocklist import BlocklistOptions, Zone, ZoneAnswer, lookup_domains
from proxy.policy.context import Context

__all__ = ["blocklist_fact", "look_up"]


async def look_up(resolver: Resolver, domains: list[str], zones: list[Zone], count: Any = None) -> tuple[ZoneAnswer, ...]:
    """A records of DOMAIN.ZONE for each pair, in parallel; `count(zone, result)` when given."""

    def counted(result: ZoneAnswer) -> ZoneAnswer:
        if count is not None:
            count(result.zone, "failed" if result.error else "listed" if result.addresses else "clean")
        return result

    async def one(domain: str, zone: str) -> ZoneAnswer:
        try:
            answer = await resolver.query(f"{domain}.{zone}", "A")
        except DnsFailure as exc:
            return counted(ZoneAnswer(domain, zone, error=str(exc)))
        return counted(ZoneAnswer(domain, zone, tuple(answer.values)))

    # The cache answers most pairs at once (a newsletter links to the same domains message after
    # message): only the others cost a task and a query.
    pairs = [(d, z.zone) for d in domains for z in zones]
    known = [resolver.cached(f"{d}.{z}", "A") for d, z in pairs]
    missing = [one(d, z) for (d, z), k in zip(pairs, known, strict=True) if k is None]
    fetched = iter(await asyncio.gather(*missing)) if missing else iter(())
    return tuple(next(fetched) if k is None else counted(ZoneAnswer(d, z, tuple(k.values)))
                 for (d, z), k in zip(pairs, known, strict=True))


def blocklist_fact(sources: Any, message: Message, ctx: Context,
                   opts: BlocklistOptions) -> tuple[ZoneAnswer, ...] | None | Awaitable[tuple[ZoneAnswer, ...]]:
    """None when no zone is configured, () at once when the message names no domain, else the
    lookups to await."""
    if not opts.zones:
        return None
    domains = lookup_domains(message, opts)
    if not domains:
        return ()
    metrics = getattr(sources, "metrics", None)
    count = (lambda zone, result: metrics.blocklist_lookups.labels(zone, result).inc()) if metrics is not None else None
    return look_up(sources.resolver, domains, opts.zones, count)
