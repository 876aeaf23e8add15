"""What one transaction's way needs from the running relay, and nothing more.

The relay and the milter hand the transaction code (evaluate, outcome, recipients) a
`TransactionDeps` instead of the whole service: what judging needs (`JudgingDeps`: the fact
sources, the unsubscribe keys, the policy time budget; all that `scan` needs), where held
messages and after-relay writes go, and the audit outlets. The service rebuilds it at start
and at each reload (a reload may change the masker, the budget or the resolver); a test builds
one from the few real parts it exercises.
"""

from __future__ import annotations

from dataclasses import dataclass

from proxy.audit import AddressMasker
from proxy.facts.providers import PROVIDERS
from proxy.facts.sources import FactSources, Provider
from proxy.metrics import Metrics
from proxy.quarantine.files import Quarantine
from proxy.quarantine.notify import Notifier
from proxy.store.base import RecipientStore
from proxy.store.pending import PendingWrites
from proxy.unsubscribe.headers import Endpoints
from proxy.unsubscribe.token import TokenKeys

__all__ = ["JudgingDeps", "TransactionDeps"]


@dataclass(frozen=True, slots=True)
class JudgingDeps:
    """What judging one message needs: the fact lookups and the List-Unsubscribe keys. `scan`
    without --online has no fact sources (it looks nothing up) and says which it skipped."""

    facts: FactSources | None  # the resolver, the recipient store and the clock; None: no lookups
    unsubscribe_keys: TokenKeys | None  # None: no List-Unsubscribe tokens can be made
    endpoints: Endpoints
    token_days: int
    policy_timeout: float  # the budget of the store and fact lookups
    providers: tuple[Provider, ...] = PROVIDERS
    verify_domains: bool = False  # [recipients] verify_domains: resolve recipient domains at RCPT


@dataclass(frozen=True, slots=True)
class TransactionDeps:
    judging: JudgingDeps
    pending_writes: PendingWrites  # after-relay store writes, replayed when the store is back
    quarantine: Quarantine
    notifier: Notifier  # quarantine events for people
    masker: AddressMasker
    metrics: Metrics
    worker: int | None = None  # named in the audit line when several workers share the ports

    @property
    def store(self) -> RecipientStore:
        assert self.judging.facts is not None, "the relay always has its store"
        return self.judging.facts.store
