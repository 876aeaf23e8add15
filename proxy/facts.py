"""Facts: what checks need from outside (DNS answers, DKIM results, a virus scan, recipient
state), looked up by the shell before the pure checks run, and handed to them in
`Context.facts`.

A provider is an async function registered for a check family; it runs only when that family is
enabled for the transaction's stream. All providers of one message run concurrently under the
policy time budget. A provider that fails or runs out of time yields a `LookupFailed` fact, which
the check turns into a finding (STYLE.md: a fact that could not be fetched is itself a fact).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Awaitable, Callable

import structlog

from proxy.message import Message
from proxy.policy.loader import Policy
from proxy.policy.registry import Context

if TYPE_CHECKING:
    from proxy.service import Service

log = structlog.get_logger("sendwarden.facts")


@dataclass(frozen=True, slots=True)
class LookupFailed:
    """A fact that could not be looked up, and why (timeout, DNS failure, store down...)."""

    reason: str
    temporary: bool = True


ProviderFn = Callable[["Service", Message, Context, Any], Awaitable[Any]]


@dataclass(frozen=True, slots=True)
class Provider:
    name: str
    family: str
    fn: ProviderFn


PROVIDERS: dict[str, Provider] = {}


def provider(name: str, family: str) -> Callable[[ProviderFn], ProviderFn]:
    """Register `fn(service, message, ctx, family_options)` as the source of fact `name`."""

    def register(fn: ProviderFn) -> ProviderFn:
        PROVIDERS[name] = Provider(name, family, fn)
        return fn

    return register


async def gather(service: "Service", policy: Policy, message: Message, ctx: Context, timeout: float) -> dict[str, Any]:
    """Run every provider whose family is enabled on the stream, concurrently, within `timeout`."""
    enabled = {chk.family for chk, _ in policy.checks.get(ctx.stream, ())}
    wanted = [p for p in PROVIDERS.values() if p.family in enabled]
    if not wanted:
        return {}

    async def one(p: Provider) -> Any:
        try:
            return await p.fn(service, message, ctx, policy.options[p.family])
        except Exception as exc:
            log.warning("fact_failed", fact=p.name, error=repr(exc))
            return LookupFailed(f"{p.name}: {type(exc).__name__}: {exc}")

    tasks = {p.name: asyncio.ensure_future(one(p)) for p in wanted}
    done, pending = await asyncio.wait(tasks.values(), timeout=timeout)
    for task in pending:
        task.cancel()
    facts: dict[str, Any] = {}
    for name, task in tasks.items():
        facts[name] = task.result() if task in done else LookupFailed(f"{name}: no answer within {timeout:g}s")
    return facts
