"""The recipient-state store: the records it keeps and the one async interface every backend
implements (SQLite for one machine, PostgreSQL for a fleet). The records the checks read
(suppressions, consent, frequency overrides, `RecipientState`) are defined in the policy core
(proxy/policy/recipientstate.py) and re-exported here.

What the relay needs for one RCPT comes back from one call, `lookup`: the recipient's
suppressions that apply, their consent, and their recent sends with any frequency overrides.
Everything else serves the unsubscribe loop, the CLI and the privacy-link ledger.

Addresses go in as given; every backend files them under the configured normalised form
(proxy.store.address). Exceptions, as a tree:

    StoreError            the store cannot answer (unreachable, locked, disk full, corrupt)
    InvalidAddress        (a ValueError) not an address the store can file
    ValueError            a record that breaks the rules (unknown scope kind or reason)
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Any, AsyncIterator, Sequence

from proxy.policy.recipientstate import (
    CONSENT_STATUSES, FREQUENCY_SCOPES, GLOBAL, REASONS, SUPPRESSION_SCOPES, ConsentRecord, FrequencyOverride,
    RecipientState, Scope, Suppression,
)
from proxy.store.address import AddressNormalizer, InvalidAddress

PRIVACY_DAYS = 30


class StoreError(Exception):
    """The store could not answer or write; the relay answers 451 4.3.0."""


@dataclass(frozen=True, slots=True)
class Query:
    """What the relay asks about one recipient of one transaction."""

    scopes: tuple[Scope, ...] = (GLOBAL,)  # suppression scopes that apply
    consent_scope: str | None = None  # None: consent is not needed
    windows: tuple[tuple[Scope, float], ...] = ()  # send counts wanted: (scope, seconds)
    overrides: bool = False  # also fetch overrides (and count their windows)


@dataclass(frozen=True, slots=True)
class PrivacyLink:
    """A privacy-policy URL that went out, for the 30-day reachability duty."""

    url: str
    sender_domain: str
    first_sent: float
    last_sent: float
    messages: int


@dataclass(frozen=True, slots=True)
class DeadLink:
    """A privacy URL (normalised) that `links check` found dead inside its window, per sender
    domain that used it; the mark stays until a later probe finds the URL alive."""

    url: str
    sender_domain: str
    since: float  # first found dead (kept while it stays dead)
    checked_at: float  # the latest probe that found it dead
    reason: str = ""


@dataclass(frozen=True, slots=True)
class SenderCount:
    """Marketing recipients delivered and complaints received for one sender domain and brand
    over a window (the complaint-rate guard)."""

    sender_domain: str
    brand: str
    delivered: int
    complaints: int


HOUR = 3600
SENDER_COUNTS_KEPT = 30 * 86400  # complaint-rate windows are 7 days; a month stays for `complaints show`


# The column order both backends select records in, and the records made from such rows.
SUPPRESSION_COLS = "address, scope_kind, scope_value, reason, source, created"
CONSENT_COLS = "id, address, scope, status, consented_at, source, proof, recorded_at, superseded_by"


def suppression_row(row: Sequence[Any]) -> "Suppression":
    return Suppression(row[0], Scope(row[1], row[2]), row[3], row[4], row[5])


def consent_row(row: Sequence[Any]) -> "ConsentRecord":
    return ConsentRecord(row[1], row[2], row[4], row[5], row[6], row[3], row[7], row[0], row[8])


def count_sends(rows: Sequence[Sequence[Any]], windows: Sequence[tuple[Scope, float]], now: float) -> dict[tuple[Scope, float], int]:
    """Sends per (scope, window) from a recipient's (at, brand, stream) rows: the one counting
    rule of every backend, so that a cap means the same on one node and on a fleet."""
    sends: dict[tuple[Scope, float], int] = {}
    for scope, seconds in windows:
        start = now - seconds
        column = {"brand": 1, "stream": 2}.get(scope.kind)
        sends[(scope, seconds)] = sum(1 for r in rows if r[0] > start and (column is None or r[column] == scope.value))
    return sends


class RecipientStore(abc.ABC):
    """The interface. Every method may raise StoreError; writes are atomic per call."""

    def __init__(self, normalize: AddressNormalizer) -> None:
        self.normalize = normalize

    # -- life cycle -------------------------------------------------------------------------------
    @abc.abstractmethod
    async def open(self) -> None:
        """Connect; create or migrate the schema. Idempotent."""

    @abc.abstractmethod
    async def close(self) -> None: ...

    # -- the relay's questions --------------------------------------------------------------------
    @abc.abstractmethod
    async def lookup(self, address: str, query: Query, now: float) -> RecipientState:
        """Everything about one recipient for one RCPT, in one call."""

    @abc.abstractmethod
    async def suppressions_for(self, addresses: Sequence[str], scopes: Sequence[Scope]) -> dict[str, list[Suppression]]:
        """For each given address (as given) that has any: its suppressions in `scopes`."""

    @abc.abstractmethod
    async def record_sends(self, addresses: Sequence[str], brand: str, stream: str, at: float) -> None:
        """Count one accepted message for each recipient."""

    @abc.abstractmethod
    async def record_privacy_links(self, sender_domain: str, urls: Sequence[str], at: float) -> None:
        """Note that a message with these privacy-policy URLs went out at `at`."""

    async def record_delivery(self, at: float, addresses: Sequence[str] = (), brand: str = "", stream: str = "",
                              sender_domain: str = "", urls: Sequence[str] = (), delivered: int = 0) -> None:
        """The after-relay writes of one message (send counts when `addresses`, privacy links
        when `urls`, `delivered` recipients counted for `sender_domain` and `brand`); a backend
        may do them in one round trip."""
        if addresses:
            await self.record_sends(addresses, brand, stream, at)
        if urls:
            await self.record_privacy_links(sender_domain, urls, at)
        if delivered:
            await self.count_delivered(sender_domain, brand, delivered, at)

    @abc.abstractmethod
    async def count_delivered(self, sender_domain: str, brand: str, count: int, at: float) -> None:
        """Add `count` delivered marketing recipients to the sender domain's and brand's hour."""

    @abc.abstractmethod
    async def record_complaint(self, sender_domain: str, at: float) -> str:
        """Count one complaint against the sender domain, in the hour of `at`, under the brand
        that domain delivered the most for in the last 7 days ("" when none); returns the brand."""

    @abc.abstractmethod
    async def sender_counts(self, since: float) -> list[SenderCount]:
        """Delivered and complaints per sender domain and brand, from `since` on (whole hours)."""

    @abc.abstractmethod
    async def mark_privacy_links(self, dead: Sequence[DeadLink], alive: Sequence[tuple[str, str]], at: float) -> None:
        """After a probe round: mark `dead` links (keeping the first `since` of a link already
        marked), clear the marks of `alive` (sender_domain, url) pairs, in one transaction."""

    @abc.abstractmethod
    async def dead_privacy_links(self) -> list[DeadLink]:
        """Every privacy link marked dead, by sender domain and URL."""

    @abc.abstractmethod
    async def privacy_links_within(self, now: float, days: int = PRIVACY_DAYS) -> list[PrivacyLink]:
        """Privacy URLs last sent within `days` of `now`: the ones that must still work."""

    # -- suppressions -----------------------------------------------------------------------------
    @abc.abstractmethod
    async def suppress(self, entries: Sequence[Suppression]) -> int:
        """Add suppressions in one transaction; existing ones stay as they are. Returns how many
        were new."""

    @abc.abstractmethod
    async def unsuppress(self, address: str, scope: Scope | None = None) -> int:
        """Remove one address's suppression in `scope` (all scopes when None)."""

    @abc.abstractmethod
    async def suppressions(self, address: str) -> list[Suppression]: ...

    @abc.abstractmethod
    def iter_suppressions(self, batch: int = 5000, scope: Scope | None = None,
                          reason: str | None = None) -> AsyncIterator[list[Suppression]]:
        """Every suppression, in batches, in a stable order (address, scope)."""

    # -- consent ----------------------------------------------------------------------------------
    @abc.abstractmethod
    async def add_consent(self, records: Sequence[ConsentRecord], now: float) -> int:
        """Add records in one transaction, each superseding the current record of its address
        and scope (or, when it is older than the current one, joining the history). A record
        identical to one already kept is not added again, so a re-run import is harmless. Returns how many were added."""

    @abc.abstractmethod
    async def consent_history(self, address: str) -> list[ConsentRecord]:
        """Every record of the address, oldest first, superseded ones included."""

    @abc.abstractmethod
    def iter_consent(self, batch: int = 5000, history: bool = False) -> AsyncIterator[list[ConsentRecord]]: ...

    # -- frequency --------------------------------------------------------------------------------
    @abc.abstractmethod
    async def set_frequency_override(self, override: FrequencyOverride) -> None: ...

    @abc.abstractmethod
    async def clear_frequency_override(self, address: str, scope: Scope | None = None) -> int: ...

    @abc.abstractmethod
    async def prune(self, now: float, keep_sends: float) -> int:
        """Forget sends older than `keep_sends` seconds. Returns how many rows went."""

    @abc.abstractmethod
    async def counts(self) -> dict[str, int]:
        """Rows per table, for people and tests."""


__all__ = [
    "CONSENT_STATUSES", "ConsentRecord", "DeadLink", "HOUR", "SENDER_COUNTS_KEPT", "SenderCount", "FREQUENCY_SCOPES", "FrequencyOverride", "GLOBAL", "InvalidAddress",
    "PRIVACY_DAYS", "PrivacyLink", "Query", "REASONS", "RecipientState", "RecipientStore", "SUPPRESSION_SCOPES",
    "CONSENT_COLS", "SUPPRESSION_COLS", "Scope", "StoreError", "Suppression", "consent_row", "count_sends",
    "suppression_row",
]
