"""Recipient addresses → the key the store files them under.

Two spellings of one mailbox must find the same suppression: `Reader@Example.ORG`,
`reader+news@example.org` and, at providers that ignore dots, `re.ader@gmail.com`. The domain is
always lower-cased and turned into its IDNA A-label (`bücher.example` → `xn--bcher-kva.example`);
local-part case folding, plus-tag stripping and dot removal are configurable, per domain.

Changing these rules later changes keys: addresses stored under the old rules are no longer
found under the new ones. Choose them before the first import.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Mapping

import idna

MAX_ADDRESS = 320  # 64 octets of local part, 255 of domain, and the '@'
_BAD_DOMAIN = re.compile(r"[\x00-\x20\x7f@<>(),\[\]]|\.\.|^\.")
_BAD_LOCAL = re.compile(r"[\x00-\x1f\x7f]")


class InvalidAddress(ValueError):
    """Not something the store can file a recipient under."""


@dataclass(frozen=True, slots=True)
class DomainRule:
    """How local parts are folded at one domain."""

    fold_case: bool = True
    plus_tag: str = "+"  # the sub-address separator; "" keeps sub-addresses distinct
    ignore_dots: bool = False


def a_label(domain: str) -> str:
    """A domain in its lower-case ASCII (A-label) form; raises InvalidAddress."""
    domain = domain.strip().rstrip(".").lower()
    if not domain:
        raise InvalidAddress("empty domain")
    if domain.startswith("[") and domain.endswith("]"):
        return domain  # an address literal
    if domain.isascii():
        if _BAD_DOMAIN.search(domain):
            raise InvalidAddress(f"bad domain {domain!r}")
        return domain
    try:
        return idna.encode(domain, uts46=True).decode("ascii")
    except idna.IDNAError as exc:
        raise InvalidAddress(f"bad internationalised domain {domain!r}: {exc}") from None


class AddressNormalizer:
    """Callable: address → normalised key. One instance per configuration."""

    def __init__(self, default: DomainRule = DomainRule(), domains: Mapping[str, DomainRule] | None = None) -> None:
        self.default = default
        self.domains = {a_label(d): r for d, r in (domains or {}).items()}

    @classmethod
    def from_config(cls, cfg: Any) -> "AddressNormalizer":
        """From the service config's `[addresses]` model (proxy.config.Addresses)."""
        default = DomainRule(cfg.fold_local_case, cfg.plus_tag, cfg.ignore_dots)
        domains = {}
        for name, d in cfg.domains.items():
            domains[name] = DomainRule(
                default.fold_case if d.fold_local_case is None else d.fold_local_case,
                default.plus_tag if d.plus_tag is None else d.plus_tag,
                default.ignore_dots if d.ignore_dots is None else d.ignore_dots,
            )
        return cls(default, domains)

    def __call__(self, address: str) -> str:
        text = address.strip()
        if text.startswith("<") and text.endswith(">"):
            text = text[1:-1].strip()
        if len(text) > MAX_ADDRESS:
            raise InvalidAddress(f"address longer than {MAX_ADDRESS} characters")
        local, at, domain = text.rpartition("@")
        if not at or not local:
            raise InvalidAddress(f"not an address: {address!r}")
        if _BAD_LOCAL.search(local) or (" " in local and not local.startswith('"')):
            raise InvalidAddress(f"bad local part in {address!r}")
        domain = a_label(domain)
        rule = self.domains.get(domain, self.default)
        if not local.startswith('"'):  # a quoted local part is kept exactly
            if rule.fold_case:
                local = local.lower()
            if rule.plus_tag and rule.plus_tag in local[1:]:
                local = local[: local.index(rule.plus_tag, 1)]
            if rule.ignore_dots:
                local = local.replace(".", "") or local
        return f"{local}@{domain}"

    def try_normalize(self, address: str) -> str | None:
        try:
            return self(address)
        except InvalidAddress:
            return None


__all__ = ["AddressNormalizer", "DomainRule", "InvalidAddress", "a_label"]
