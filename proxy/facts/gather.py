"""Facts: what checks need from outside (DNS answers, DKIM results, a virus scan, recipient
state), looked up by the shell before the pure checks run, and handed to them in
`Context.facts`.

The providers are listed in proxy/facts/providers.py; each serves a check family and runs only
when that family is enabled for the transaction's stream, with the `FactSources` it may use.
It answers at once when it can (unsigned mail needs no DKIM lookup, a message without
attachments no scan) or hands back an awaitable: the lookups of one message then run
concurrently under the policy time budget. Answering at once spares each
message a task per provider (~20 us each) when there is nothing to look up, the common case. A
provider that fails or runs out of time yields a `LookupFailed` fact, which the check turns
into a finding (STYLE.md: a fact that could not be fetched is itself a fact).
"""

from __future__ import annotations

import asyncio
import inspect
from typing import Any, Awaitable, Sequence

import structlog

from proxy.facts.providers import PROVIDERS
from proxy.facts.sources import FactSources, Provider
from proxy.message.mime import Message
from proxy.policy.context import Context, LookupFailed
from proxy.policy.loader import Policy

__all__ = ["FactSources", "LookupFailed", "PROVIDERS", "Provider", "gather", "wanted"]

log = structlog.get_logger("sendwarden.facts")


def wanted(policy: Policy, stream: str, providers: Sequence[Provider] = PROVIDERS) -> list[Provider]:
    """The providers whose check family is enabled on `stream`: the lookups judging needs."""
    enabled = {chk.family for chk, _ in policy.checks.get(stream, ())}
    return [p for p in providers if p.family in enabled]


def _failed(p: Provider, exc: Exception) -> LookupFailed:
    log.warning("fact_failed", fact=p.name, error=repr(exc))
    return LookupFailed(f"{p.name}: {type(exc).__name__}: {exc}")


async def gather(sources: FactSources, policy: Policy, message: Message, ctx: Context, timeout: float,
                 providers: Sequence[Provider] = PROVIDERS) -> dict[str, Any]:
    """Every provider whose family is enabled on the stream: the answers given at once, and
    the lookups awaited concurrently within `timeout`."""
    facts: dict[str, Any] = {}
    lookups: dict[str, tuple[Provider, Awaitable[Any]]] = {}
    for p in wanted(policy, ctx.stream, providers):
        try:
            answer = p.fn(sources, message, ctx, policy.options[p.family])
        except Exception as exc:
            facts[p.name] = _failed(p, exc)
            continue
        if inspect.isawaitable(answer):
            lookups[p.name] = (p, answer)
        else:
            facts[p.name] = answer
    if not lookups:
        return facts

    async def one(p: Provider, lookup: Awaitable[Any]) -> Any:
        try:
            return await lookup
        except Exception as exc:
            return _failed(p, exc)

    tasks = {name: asyncio.ensure_future(one(p, lookup)) for name, (p, lookup) in lookups.items()}
    done, pending = await asyncio.wait(tasks.values(), timeout=timeout)
    for task in pending:
        task.cancel()
    for name, task in tasks.items():
        facts[name] = task.result() if task in done else LookupFailed(f"{name}: no answer within {timeout:g}s")
    return facts
