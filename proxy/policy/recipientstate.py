"""The recipient state the optout, consent and frequency checks read: suppressions, consent
records, frequency overrides and the answer to one RCPT lookup (`RecipientState`).

Defined in the pure core and produced by the shell (the stores in proxy/store/ file and read
these records), so that a check never imports a store.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

__all__ = [
    "CONSENT_STATUSES", "ConsentRecord", "FREQUENCY_SCOPES", "FrequencyOverride", "GLOBAL", "REASONS",
    "RecipientState", "SUPPRESSION_SCOPES", "Scope", "Suppression",
]

SUPPRESSION_SCOPES = ("global", "brand", "list")
FREQUENCY_SCOPES = ("global", "brand", "stream")
REASONS = ("unsubscribe", "complaint", "manual", "import")
CONSENT_STATUSES = ("granted", "withdrawn")


@dataclass(frozen=True, slots=True, order=True)
class Scope:
    """What a suppression, a frequency cap or a counter applies to: `global`, `brand:NAME`,
    `list:NAME` or (caps only) `stream:NAME`."""

    kind: str
    value: str = ""

    @classmethod
    def parse(cls, text: str, kinds: Sequence[str] = SUPPRESSION_SCOPES) -> "Scope":
        kind, _, value = text.strip().partition(":")
        kind = kind.strip().lower()
        value = value.strip()
        if kind not in kinds:
            raise ValueError(f"unknown scope {text!r} (expected {', '.join(k if k == 'global' else k + ':NAME' for k in kinds)})")
        if (kind == "global") != (not value):
            raise ValueError(f"bad scope {text!r}: 'global' takes no name, the others need one")
        return cls(kind, value)

    def __str__(self) -> str:
        return self.kind if self.kind == "global" else f"{self.kind}:{self.value}"


GLOBAL = Scope("global")


@dataclass(frozen=True, slots=True)
class Suppression:
    """One opt-out. `address` is the normalised key in records read back from the store."""

    address: str
    scope: Scope = GLOBAL
    reason: str = "manual"
    source: str = ""
    created: float = 0.0

    def __post_init__(self) -> None:
        if self.reason not in REASONS:
            raise ValueError(f"unknown reason {self.reason!r} (expected {', '.join(REASONS)})")
        if self.scope.kind not in SUPPRESSION_SCOPES:
            raise ValueError(f"a suppression cannot be scoped to {self.scope}")


@dataclass(frozen=True, slots=True)
class ConsentRecord:
    """One consent (or its withdrawal) as given: for which scope (brand or brand/use), when,
    where it was collected, and a reference to the proof (signed form, double opt-in message
    id). Records are never changed: a newer record for the same address and scope supersedes
    the older one, which stays as the audit trail."""

    address: str
    scope: str
    consented_at: float
    source: str
    proof: str = ""
    status: str = "granted"
    recorded_at: float = 0.0
    id: int = 0
    superseded_by: int | None = None

    def __post_init__(self) -> None:
        if self.status not in CONSENT_STATUSES:
            raise ValueError(f"unknown consent status {self.status!r} (expected granted or withdrawn)")
        if not self.scope.strip():
            raise ValueError("consent needs a scope (the brand or use it was given for)")
        if not self.source.strip():
            raise ValueError("consent needs a source (where it was collected)")


@dataclass(frozen=True, slots=True)
class FrequencyOverride:
    """A recipient's own cap for one scope: at most `max_count` messages per `window` seconds."""

    address: str
    scope: Scope
    max_count: int
    window: float
    source: str = ""
    set_at: float = 0.0

    def __post_init__(self) -> None:
        if self.scope.kind not in FREQUENCY_SCOPES:
            raise ValueError(f"a frequency cap cannot be scoped to {self.scope}")
        if self.max_count < 0 or self.window <= 0:
            raise ValueError("a frequency cap needs max >= 0 and a positive window")


@dataclass(frozen=True, slots=True)
class RecipientState:
    """The answer to one `lookup`."""

    address: str  # normalised
    suppressions: tuple[Suppression, ...] = ()
    consent: ConsentRecord | None = None  # the current record for the asked scope
    consent_scopes: tuple[str, ...] = ()  # scopes with current granted consent
    overrides: tuple[FrequencyOverride, ...] = ()
    sends: dict[tuple[Scope, float], int] = field(default_factory=dict)
