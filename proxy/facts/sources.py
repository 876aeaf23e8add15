"""What fact providers may use, and what a provider is.

A provider receives `FactSources`, the few things a lookup needs (the resolver, the recipient
store, the clock), never the whole running service: so each provider is tested with just
those, and the release command builds them without starting a relay. clamd's address and
budget come with the attachment family's policy options.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable

from proxy.dns import Resolver
from proxy.message.mime import Message
from proxy.policy.context import Context
from proxy.store.base import RecipientStore

__all__ = ["FactSources", "Provider", "ProviderFn"]


@dataclass(frozen=True, slots=True)
class FactSources:
    """The resolver, the recipient store and the clock the providers look things up with."""

    resolver: Resolver
    store: RecipientStore
    clock: Callable[[], float] = time.time
    # proxy.facts.reputation.Reputation: dead privacy links and complaint rates, as last read
    # from the store (None: not known here, those rules stay silent).
    reputation: Any = None
    metrics: Any = None  # proxy.metrics.Metrics, for the lookups' own counters


# provider(sources, message, context, family options) -> the fact, or an awaitable of it
ProviderFn = Callable[[FactSources, Message, Context, Any], Any]


@dataclass(frozen=True, slots=True)
class Provider:
    """A fact's name, the check family that reads it (the provider runs only when that family
    is enabled for the stream), and the function that looks it up."""

    name: str
    family: str
    fn: ProviderFn
