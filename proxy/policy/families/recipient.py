"""Recipient domains at RCPT time (AUP: no harvesting, no mailing of unknown addresses; export
controls and sanctions).

`recipient.blocked_destination`: the recipient domain, or a parent of it, is one of the
policy's blocked domains or TLDs (compared in A-label form, so `bücher.example` and
`xn--bcher-kva.example` are one name). Pure: nothing to look up.

`recipient.domain_unroutable`: the domain cannot receive mail (RFC 5321 5.1): it does not
exist (NXDOMAIN), publishes a null MX (RFC 7505 `0 .`), or has neither MX nor A/AAAA records.
The shell looks the domain up through the one resolver (proxy/facts/routing.py) and hands the
answer, a `Route`, to `route_findings`; a lookup that gave no definite answer is a
`lookup.failed` finding, never a pass and never a permanent refusal.

Both run per recipient, so a refusal concerns that recipient only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import Field, PrivateAttr, field_validator, model_validator

from proxy.message.domains import to_alabel
from proxy.policy.registry import Options, options
from proxy.policy.verdict import Finding

__all__ = ["RecipientOptions", "Route", "blocked_findings", "recipient_domain", "route_findings"]


def _alabel(value: str) -> str:
    a = to_alabel(value.lstrip("."))
    if a is None:
        raise ValueError(f"{value!r} is not a domain name")
    return a


@options("recipient")
class RecipientOptions(Options):
    """`[checks.recipient]`."""

    # Export controls and sanctions: recipient domains refused with their subdomains, and
    # whole top-level domains ("ru", ".ir", "xn--p1ai"); given in any form, compared as A-labels.
    blocked_domains: list[str] = Field(default_factory=list)
    blocked_tlds: list[str] = Field(default_factory=list)
    _blocked: frozenset[str] = PrivateAttr(default=frozenset())

    @field_validator("blocked_domains", "blocked_tlds")
    @classmethod
    def _names(cls, value: list[str]) -> list[str]:
        for name in value:
            _alabel(name)
        return value

    @model_validator(mode="after")
    def _compile(self) -> "RecipientOptions":
        self._blocked = frozenset(_alabel(n) for n in [*self.blocked_domains, *self.blocked_tlds])
        return self

    def blocked(self, domain: str) -> str:
        """The blocked name that `domain` (A-label form) is or lies under, or ""."""
        if not self._blocked:
            return ""
        name = domain
        while name:
            if name in self._blocked:
                return name
            name = name.partition(".")[2]
        return ""


def recipient_domain(address: str) -> str | None:
    """The A-label form of an address's domain; "" for an address literal ([192.0.2.1]),
    which names no domain to judge; None when the domain is not a valid name."""
    domain = address.strip().strip("<>").rpartition("@")[2]
    if domain.startswith("["):
        return ""
    return to_alabel(domain)


def blocked_findings(opts: RecipientOptions, domain: str) -> list[Finding]:
    hit = opts.blocked(domain) if domain else ""
    if not hit:
        return []
    what = f"the top-level domain .{hit}" if "." not in hit else f"the domain {hit}"
    return [Finding("recipient.blocked_destination", f"{domain}: mail to {what} is blocked (export controls, sanctions)",
                    "remove the recipient: this relay does not deliver to that destination")]


@dataclass(frozen=True, slots=True)
class Route:
    """What the DNS says about a recipient domain: its MX records as (preference, host), its
    addresses when it has no MX, and whether the name exists at all."""

    domain: str
    mx: tuple[tuple[int, str], ...] = ()
    addresses: tuple[str, ...] = ()
    nxdomain: bool = False

    @property
    def null_mx(self) -> bool:
        """RFC 7505: a single MX `0 .` says the domain accepts no mail."""
        return len(self.mx) == 1 and self.mx[0][1] in (".", "")

    @property
    def routable(self) -> bool:
        return not self.nxdomain and not self.null_mx and bool(self.mx or self.addresses)


def route_findings(route: Any, domain: str) -> list[Finding]:
    """Findings from the routing fact: a `Route`, or a failed lookup (anything with a `reason`)."""
    if isinstance(route, Route):
        if route.routable:
            return []
        if route.nxdomain:
            why = "does not exist (NXDOMAIN)"
        elif route.null_mx:
            why = "accepts no mail (null MX, RFC 7505)"
        else:
            why = "has no MX and no A/AAAA records"
        return [Finding("recipient.domain_unroutable", f"{domain}: the recipient domain {why}",
                        "remove the address from your list: mail to it cannot be delivered")]
    reason = getattr(route, "reason", "") or "no answer"
    return [Finding("lookup.failed", f"{domain}: recipient domain lookup failed: {reason}",
                    "a DNS lookup failed; try again later")]
