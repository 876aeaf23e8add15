"""Facts: what checks need from outside (DNS answers, DKIM results, a virus scan, recipient
state), looked up by the shell before the pure checks run, and handed to them in
`Context.facts`.

A provider is a function registered for a check family; it runs only when that family is
enabled for the transaction's stream. It answers at once when it can (unsigned mail needs no
DKIM lookup, a message without attachments no scan) or hands back an awaitable: the lookups of
one message then run concurrently under the policy time budget. Answering at once spares each
message a task per provider (~20 us each) when there is nothing to look up, the common case. A
provider that fails or runs out of time yields a `LookupFailed` fact, which the check turns
into a finding (STYLE.md: a fact that could not be fetched is itself a fact).
"""

from __future__ import annotations

import asyncio
import inspect
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Awaitable, Callable

import structlog

from proxy.message.mime import Message
from proxy.policy.loader import Policy
from proxy.policy.registry import Context

if TYPE_CHECKING:
    from proxy.runtime.service import Service

log = structlog.get_logger("sendwarden.facts")


@dataclass(frozen=True, slots=True)
class LookupFailed:
    """A fact that could not be looked up, and why (timeout, DNS failure, store down...)."""

    reason: str
    temporary: bool = True


# provider(service, message, context, family options) -> the fact, or an awaitable of it
ProviderFn = Callable[["Service", Message, Context, Any], Any]


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


def _failed(p: Provider, exc: Exception) -> LookupFailed:
    log.warning("fact_failed", fact=p.name, error=repr(exc))
    return LookupFailed(f"{p.name}: {type(exc).__name__}: {exc}")


async def gather(service: "Service", policy: Policy, message: Message, ctx: Context, timeout: float) -> dict[str, Any]:
    """Every provider whose family is enabled on the stream: the answers given at once, and
    the lookups awaited concurrently within `timeout`."""
    enabled = {chk.family for chk, _ in policy.checks.get(ctx.stream, ())}
    facts: dict[str, Any] = {}
    lookups: dict[str, tuple[Provider, Awaitable[Any]]] = {}
    for p in PROVIDERS.values():
        if p.family not in enabled:
            continue
        try:
            answer = p.fn(service, message, ctx, policy.options[p.family])
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
