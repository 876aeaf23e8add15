"""Store-derived facts every marketing message may need: privacy links marked dead by `links
check`, and complaint rates per sender domain and brand. Both change slowly and are shared by a
fleet through the store, so each relay keeps them in memory and re-reads them every `refresh`
seconds: judging a message costs a dictionary look-up, never a store round trip.

When the store cannot answer, the last snapshot stays in force (logged, and counted in
`sendwarden_reputation_refresh_failures_total`); a relay that never read one judges without
these two rules until it can, and says so at every failed refresh.
"""

from __future__ import annotations

import time
from typing import Any

import structlog

from proxy.message.mime import Message
from proxy.policy.families import optout
from proxy.policy.families.complaints import ComplaintRateOptions, Rate, rates
from proxy.message.urls import normalise_url
from proxy.policy.families.privacy import PrivacyOptions, dead_links
from proxy.policy.context import Context
from proxy.store.base import DeadLink, RecipientStore, StoreError

__all__ = ["Reputation", "complaint_rate_fact", "privacy_dead_fact"]

log = structlog.get_logger("sendwarden.reputation")
LEVELS = {"low_volume": 0, "ok": 0, "warning": 1, "limit": 2}


class Reputation:
    """The snapshot. `refresh` reads the store; the providers below read the snapshot."""

    def __init__(self, metrics: Any = None, announce: bool = True) -> None:
        self.metrics = metrics
        self.announce = announce  # log level changes (the relay); a one-off reader (scan) does not
        self.dead: dict[str, str] = {}  # normalised URL → why
        self.dead_links: list[DeadLink] = []
        self.rates: dict[str, Rate] = {}
        self.levels: dict[str, str] = {}
        self.loaded_at = 0.0
        self.optout: Any = None  # the policy's OptoutOptions: they name a transaction's brand
        self._exported_domains: set[str] = set()  # label values last set in the metrics
        self._exported_scopes: set[str] = set()

    def rate_for(self, domain: str, brand: str = "") -> Rate | None:
        """The sender domain's rate, or the brand's when only the brand is over the limit."""
        mine = self.rates.get(f"domain:{domain}") if domain else None
        theirs = self.rates.get(f"brand:{brand}") if brand else None
        if theirs is not None and self.levels.get(theirs.scope) == "limit" and self.levels.get(f"domain:{domain}") != "limit":
            return theirs
        return mine

    async def refresh(self, store: RecipientStore, opts: ComplaintRateOptions, now: float | None = None) -> bool:
        """Re-read marks and counts; False (the old snapshot kept) when the store cannot answer."""
        now = time.time() if now is None else now
        try:
            dead = await store.dead_privacy_links()
            counts = await store.sender_counts(now - opts.window_days * 86400) if opts.enabled else []
        except StoreError as exc:
            if not self.announce:
                raise
            log.warning("reputation_refresh_failed", error=str(exc), snapshot_age=round(now - self.loaded_at) if self.loaded_at else None)
            if self.metrics is not None:
                self.metrics.reputation_failures.inc()
            return False
        self.dead_links = dead
        self.dead = {normalise_url(d.url): f"{d.reason or 'dead'}, since {time.strftime('%Y-%m-%d', time.gmtime(d.since))}"
                     for d in dead}
        self.rates = rates(counts)
        self._judge_rates(opts)
        self.loaded_at = now
        self._export()
        return True

    def _judge_rates(self, opts: ComplaintRateOptions) -> None:
        levels = {scope: r.level(opts) for scope, r in self.rates.items()}
        for scope in set(levels) | set(self.levels):
            before, after = self.levels.get(scope, "ok"), levels.get(scope, "ok")
            if LEVELS.get(before, 0) == LEVELS.get(after, 0) or not self.announce:
                continue
            r = self.rates.get(scope)
            fields: dict[str, Any] = {"scope": scope, "level": after, "was": before}
            if r is not None:
                fields.update(rate=round(r.rate, 5), complaints=r.complaints, delivered=r.delivered)
            if after == "limit":
                log.error("complaint_rate_over_limit", limit=opts.limit, **fields)
            elif after == "warning":
                log.warning("complaint_rate_warning", warning=opts.warning, **fields)
            else:
                log.info("complaint_rate_cleared", **fields)
        self.levels = levels

    def _export(self) -> None:
        m = self.metrics
        if m is None:
            return
        per_domain: dict[str, int] = {}
        for d in self.dead_links:
            per_domain[d.sender_domain] = per_domain.get(d.sender_domain, 0) + 1
        # A domain or scope that is gone is set to 0, not removed: prometheus_client cannot clear
        # labels in multiprocess mode (the workers of one host share their metrics).
        for domain in self._exported_domains - per_domain.keys():
            m.privacy_links_dead.labels(domain).set(0)
        for domain, n in per_domain.items():
            m.privacy_links_dead.labels(domain).set(n)
        for scope in self._exported_scopes - self.rates.keys():
            m.complaint_rate.labels(scope).set(0)
            m.complaint_rate_level.labels(scope).set(0)
        for scope, r in self.rates.items():
            m.complaint_rate.labels(scope).set(r.rate)
            m.complaint_rate_level.labels(scope).set(LEVELS.get(self.levels.get(scope, "ok"), 0))
        self._exported_domains = set(per_domain)
        self._exported_scopes = set(self.rates)


def privacy_dead_fact(sources: Any, message: Message, ctx: Context, opts: PrivacyOptions) -> dict[str, str] | None:
    """The message's privacy URLs marked dead, at once from the snapshot."""
    reputation: Reputation | None = getattr(sources, "reputation", None)
    if reputation is None or not reputation.dead:
        return None
    return dead_links(message, opts, reputation.dead) or None


def complaint_rate_fact(sources: Any, message: Message, ctx: Context, opts: ComplaintRateOptions) -> Rate | None:
    """The sender (From) domain's complaint rate (or its brand's, when the brand is over the
    limit and the domain is not), at once from the snapshot."""
    reputation: Reputation | None = getattr(sources, "reputation", None)
    if reputation is None or not ctx.marketing:
        return None
    # The transaction's brand, as the recipient checks and the delivery counts name it.
    o = reputation.optout
    brand = optout.rcpt_brand(o, ctx.stream, ctx.mail_from, ctx.auth_user) if o is not None else ""
    return reputation.rate_for(message.from_domain or ctx.mail_from.rpartition("@")[2].lower(), brand)
