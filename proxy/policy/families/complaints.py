"""The complaint-rate guard (Gmail and Yahoo hold bulk senders under 0.3 % spam complaints).

Complaints (the ARF reports the intake acts on) divided by delivered marketing recipients, per
sender domain and per brand, over a sliding window (7 days by default, counted in whole
hours), once the window holds at least `min_delivered` recipients. Above `warning` a metric
and a log line; above `limit`, `compliance.complaint_rate` on that sender domain's marketing
messages, and on the marketing of a brand over its limit (tempfail by default: nothing is lost,
and the sender sees why). It clears itself when the rate falls back under the limit.

Pure: `rates` turns the store's counts into `Rate`s; the shell keeps them in memory
(proxy/facts/reputation.py, refreshed from the store a fleet shares) and hands the sender
domain's `Rate` to the check as the `complaint_rate` fact.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable

from pydantic import Field, model_validator

from proxy.policy.registry import Options, options

__all__ = ["FACT", "ComplaintRateOptions", "Rate", "rates"]

FACT = "complaint_rate"


@options("complaint_rate")
class ComplaintRateOptions(Options):
    """`[checks.complaint_rate]`."""

    window_days: int = Field(default=7, ge=1, le=30)
    min_delivered: int = Field(default=1000, ge=1)
    warning: float = Field(default=0.001, gt=0, lt=1)
    limit: float = Field(default=0.003, gt=0, lt=1)

    @model_validator(mode="after")
    def _order(self) -> "ComplaintRateOptions":
        if self.warning > self.limit:
            raise ValueError("warning must not be above limit")
        return self


@dataclass(frozen=True, slots=True)
class Rate:
    """Complaints and deliveries of one scope ("domain:NAME" or "brand:NAME") over the window."""

    scope: str
    delivered: int
    complaints: int

    @property
    def rate(self) -> float:
        return self.complaints / self.delivered if self.delivered else 0.0

    def level(self, opts: ComplaintRateOptions) -> str:
        """"low_volume" under the minimum, else "limit", "warning" or "ok"."""
        if self.delivered < opts.min_delivered:
            return "low_volume"
        if self.rate > opts.limit:
            return "limit"
        if self.rate > opts.warning:
            return "warning"
        return "ok"


def rates(counts: Iterable[Any]) -> dict[str, Rate]:
    """Per sender domain and per brand, from (sender_domain, brand, delivered, complaints) rows."""
    totals: dict[str, list[int]] = {}
    for c in counts:
        for scope in (f"domain:{c.sender_domain}", f"brand:{c.brand}" if c.brand else ""):
            if scope:
                t = totals.setdefault(scope, [0, 0])
                t[0] += c.delivered
                t[1] += c.complaints
    return {scope: Rate(scope, d, n) for scope, (d, n) in sorted(totals.items())}

