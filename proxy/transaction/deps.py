"""What one transaction's way needs from the running relay, and nothing more.

The relay, the milter and the release command hand the transaction code (evaluate, outcome, recipients)
a `TransactionDeps` instead of the whole service: the fact sources, where held messages and
after-relay writes go, the unsubscribe keys, the policy time budget and the audit outlets. The
service rebuilds it at start and at each reload (a reload may change the masker, the budget or
the resolver); a test builds one from the few real parts it exercises.
"""

from __future__ import annotations

from dataclasses import dataclass

from proxy.audit import AddressMasker
from proxy.facts.sources import FactSources
from proxy.metrics import Metrics
from proxy.quarantine.files import Quarantine
from proxy.quarantine.notify import Notifier
from proxy.store.base import RecipientStore
from proxy.store.pending import PendingWrites
from proxy.unsubscribe.headers import Endpoints
from proxy.unsubscribe.token import TokenKeys

__all__ = ["TransactionDeps"]


@dataclass(frozen=True, slots=True)
class TransactionDeps:
    facts: FactSources  # the resolver, the recipient store and the clock of the fact lookups
    pending_writes: PendingWrites  # after-relay store writes, replayed when the store is back
    quarantine: Quarantine
    notifier: Notifier  # quarantine events for people
    unsubscribe_keys: TokenKeys | None  # None: no List-Unsubscribe tokens can be made
    endpoints: Endpoints
    token_days: int
    policy_timeout: float  # the budget of the store and fact lookups
    masker: AddressMasker
    metrics: Metrics
    worker: int | None = None  # named in the audit line when several workers share the ports
    verify_domains: bool = False  # [recipients] verify_domains: resolve recipient domains at RCPT

    @property
    def store(self) -> RecipientStore:
        return self.facts.store
