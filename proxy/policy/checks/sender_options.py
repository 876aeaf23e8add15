"""`[checks.sender]`: who may send as which domain, how strictly domains must align, which
brands are protected, and how DKIM results count. Everything is normalised and compiled here,
at load, so that the checks only look things up.

    [checks.sender]
    alignment = "relaxed"            # or "strict": the same domain, not just the same organisation
    domains = ["example.com", "*.example.com"]       # From domains anybody may use
    [checks.sender.streams]                           # ... or per stream
    transactional = ["receipts.example.com"]
    [checks.sender.users]                             # ... or per authenticated user
    billing-app = ["billing.example.com"]
    [checks.sender.protected_brands]
    PayPal = ["paypal.com"]

The most specific list decides: the user's, else the stream's, else `domains`. With no list at
all, `sender.domain_not_allowed` cannot know the customer's domains and stays silent.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import Field, PrivateAttr, field_validator

from proxy.message.domains import domain_name, Alignment, org_domain, registrable_label, skeleton, skeletons, to_ulabel
from proxy.policy.registry import Options, options

__all__ = ["DomainList", "SenderOptions"]


def _domain_pattern(value: str) -> str:
    wild = value.startswith("*.")
    return ("*." if wild else "") + domain_name(value[2:] if wild else value)


@dataclass(frozen=True, slots=True)
class DomainList:
    """Domains a sender may use: exact names, and `*.name` for any subdomain of name."""

    exact: frozenset[str]
    parents: tuple[str, ...]

    @classmethod
    def of(cls, patterns: list[str]) -> "DomainList":
        return cls(frozenset(p for p in patterns if not p.startswith("*.")),
                   tuple("." + p[2:] for p in patterns if p.startswith("*.")))

    def permits(self, domain: str) -> bool:
        return domain in self.exact or any(domain.endswith(p) for p in self.parents)

    def describe(self) -> str:
        return ", ".join(sorted(self.exact) + sorted("*" + p for p in self.parents))


@dataclass(frozen=True, slots=True)
class Brand:
    name: str
    orgs: frozenset[str]  # organisational domains that are the brand's own


@options("sender")
class SenderOptions(Options):
    alignment: Alignment = "relaxed"
    domains: list[str] = Field(default_factory=list)
    streams: dict[str, list[str]] = Field(default_factory=dict)
    users: dict[str, list[str]] = Field(default_factory=dict)
    # Which identities must align with From: the envelope sender, Sender, Reply-To.
    align: list[Literal["mail_from", "sender", "reply_to"]] = Field(
        default_factory=lambda: ["mail_from", "sender", "reply_to"])  # type: ignore[arg-type]
    # Brand names a display name may only carry when From is one of the brand's domains; the
    # domains are also guarded against look-alikes (homoglyphs, other suffixes).
    protected_brands: dict[str, list[str]] = Field(default_factory=dict)
    dkim_verify: bool = True
    dkim_max_signatures: int = Field(default=5, ge=1, le=50)
    # A verifying signature whose d= does not align with From is a finding, unless d= is one of
    # these (an ESP that signs as itself).
    dkim_require_aligned: bool = True
    dkim_third_party: list[str] = Field(default_factory=list)
    # What a DNS failure while verifying becomes: a `lookup.failed` finding (whose action the
    # policy sets; default tempfail → 451 4.4.3), a `sender.dkim_fail`, or nothing.
    dns_failure: Literal["lookup_failed", "dkim_fail", "ignore"] = "lookup_failed"

    _lists: dict[tuple[str, str], DomainList] = PrivateAttr(default_factory=dict)
    _brands: dict[str, Brand] = PrivateAttr(default_factory=dict)  # name skeleton → brand
    _brand_re: re.Pattern[str] | None = PrivateAttr(default=None)
    _labels: dict[str, Brand] = PrivateAttr(default_factory=dict)  # domain label skeleton → brand
    _owns: tuple[tuple[str, Brand], ...] = PrivateAttr(default=())  # (".own-org-domain.", brand)
    _third_party: frozenset[str] = PrivateAttr(default_factory=frozenset)

    @field_validator("domains")
    @classmethod
    def _domains(cls, v: list[str]) -> list[str]:
        return [_domain_pattern(d) for d in v]

    @field_validator("streams", "users")
    @classmethod
    def _per(cls, v: dict[str, list[str]]) -> dict[str, list[str]]:
        return {k: [_domain_pattern(d) for d in ds] for k, ds in v.items()}

    @field_validator("protected_brands")
    @classmethod
    def _brands_valid(cls, v: dict[str, list[str]]) -> dict[str, list[str]]:
        out = {}
        for name, ds in v.items():
            if not skeleton(name):
                raise ValueError(f"brand name {name!r} has no letters or digits")
            if not ds:
                raise ValueError(f"brand {name!r}: list at least one of its domains")
            out[name] = [domain_name(d) for d in ds]
        return out

    @field_validator("dkim_third_party")
    @classmethod
    def _third(cls, v: list[str]) -> list[str]:
        return [domain_name(d) for d in v]

    def model_post_init(self, context: Any) -> None:
        self._lists = {("", ""): DomainList.of(self.domains)} if self.domains else {}
        self._lists.update({("stream", k): DomainList.of(v) for k, v in self.streams.items()})
        self._lists.update({("user", k): DomainList.of(v) for k, v in self.users.items()})
        names: dict[str, Brand] = {}
        owns: list[tuple[str, Brand]] = []
        for name, ds in self.protected_brands.items():
            brand = Brand(name, frozenset(org_domain(d) for d in ds))
            owns.extend((f".{own}.", brand) for own in sorted(brand.orgs))
            variants = set(skeletons(name)) | set(skeletons(re.sub(r"[\W_]+", "", name)))
            names.update({v: brand for v in variants if v})
            for d in ds:
                label = registrable_label(d)
                if label:
                    self._labels[skeleton(to_ulabel(label))] = brand
        self._brands = names
        self._owns = tuple(owns)
        if names:
            alternatives = "|".join(re.escape(n) for n in sorted(names, key=len, reverse=True))
            self._brand_re = re.compile(rf"(?<!\w)(?:{alternatives})(?!\w)")
        self._third_party = frozenset(self.dkim_third_party)

    # -- what the checks ask ---------------------------------------------------------------------

    def allowed(self, stream: str, user: str | None) -> DomainList | None:
        """The From domains allowed for this transaction, or None when nothing is configured."""
        if user and ("user", user) in self._lists:
            return self._lists[("user", user)]
        return self._lists.get(("stream", stream)) or self._lists.get(("", ""))

    def brands_named(self, text: str) -> list[Brand]:
        """Protected brands that `text` (a display name) names, in any look-alike spelling."""
        if self._brand_re is None:
            return []
        found: dict[str, Brand] = {}
        for variant in skeletons(text):
            for m in self._brand_re.finditer(variant):
                brand = self._brands[m.group(0)]
                found[brand.name] = brand
        return list(found.values())

    def imitated_brand(self, domain: str) -> tuple[Brand, str] | None:
        """The brand whose domain `domain` (A-label) imitates, and how; None when it is one of
        the brand's own or imitates none."""
        org = org_domain(domain)
        label = registrable_label(domain)
        brand = self._labels.get(skeleton(to_ulabel(label))) if label else None
        if brand is not None and org not in brand.orgs:
            return brand, f"{to_ulabel(org)} looks like {', '.join(sorted(brand.orgs))}"
        dotted = f".{domain}."
        for own, b in self._owns:
            if own in dotted and org not in b.orgs:
                return b, f"{domain} carries {own.strip('.')} in front of another domain ({org})"
        return None

    def third_party(self, domain: str) -> bool:
        return domain in self._third_party or org_domain(domain) in self._third_party
