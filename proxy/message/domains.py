"""Domain names as sendwarden compares them: A-labels, organisational domains, alignment, and
the Unicode skeletons that expose look-alikes.

- Internationalised names are compared in A-label form (IDNA 2008 with UTS 46 mapping, the
  `idna` package), so `Bücher.example` and `xn--bcher-kva.example` are the same domain.
- The organisational domain is the registrable domain under the public suffix list (the
  `publicsuffixlist` package ships the list; nothing is downloaded at run time): the one of
  `news.example.co.uk` is `example.co.uk`; `co.uk` itself has none and stands for itself.
  Relaxed alignment (DMARC, RFC 7489 3.1) means the same organisational domain; strict, the
  same domain.
- A skeleton (Unicode TR 39) maps every character to the prototype it can be confused with,
  using Unicode's confusables.txt as shipped by `confusable-homoglyphs`: `pаypal` (Cyrillic а),
  `paypa1` and `PayPaI` all have the skeleton of `paypal`, `rnicrosoft` that of `microsoft`.

Everything is computed from small strings and cached per name; the list loads once at import.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache
from typing import Literal

import idna
from confusable_homoglyphs.confusables import confusables_data
from publicsuffixlist import PublicSuffixList

Alignment = Literal["relaxed", "strict"]

_PSL = PublicSuffixList()
_LDH_LABEL = re.compile(r"^(?!-)[a-z0-9_-]{1,63}(?<!-)$")
# A domain-looking token in free text (display names): labels of letters/digits/hyphens in any
# script, at least one dot. Whether it is a domain is then decided by the public suffix list.
_DOMAIN_TOKEN = re.compile(r"(?<![\w@.-])((?:[^\W_](?:[\w-]{0,61}[^\W_])?\.)+[^\W\d_][\w-]{0,61})(?![\w-])")
_ADDRESS_TOKEN = re.compile(r"[^\s<>\"'@,;:()\[\]]+@[^\s<>\"'@,;:()\[\]]+\.[^\s<>\"'@,;:()\[\]]+")

__all__ = [
    "Alignment", "addresses_in", "aligned", "domain_of", "domains_in", "org_domain", "registrable_label",
    "known_suffix", "skeleton", "skeletons", "to_alabel", "to_ulabel",
]


@lru_cache(maxsize=16384)
def to_alabel(domain: str) -> str | None:
    """The domain in lower-case A-label form without a final dot, or None when it is not a
    valid domain name (so that callers can tell a finding from a comparison)."""
    d = domain.strip().rstrip(".")
    if not d or len(d) > 253:
        return None
    if not d.isascii():
        try:
            d = idna.encode(d, uts46=True).decode("ascii")
        except (idna.IDNAError, UnicodeError, ValueError):
            return None
    d = d.lower()
    labels = d.split(".")
    if not all(_LDH_LABEL.match(label) for label in labels):
        return None
    for label in labels:
        if label.startswith("xn--"):
            try:
                idna.decode(label)
            except (idna.IDNAError, UnicodeError, ValueError):
                return None  # a bogus A-label: not something a reader could be shown
    return d


@lru_cache(maxsize=16384)
def to_ulabel(domain: str) -> str:
    """The domain as a reader sees it (U-labels), for look-alike comparisons; labels that do
    not decode stay as they are."""
    out = []
    for label in domain.lower().rstrip(".").split("."):
        if label.startswith("xn--"):
            try:
                label = idna.decode(label)
            except (idna.IDNAError, UnicodeError, ValueError):
                pass
        out.append(label)
    return ".".join(out)


@lru_cache(maxsize=16384)
def org_domain(domain: str) -> str:
    """The organisational (registrable) domain of an A-label domain; a public suffix, or a name
    the list knows nothing registrable under, stands for itself."""
    return _PSL.privatesuffix(domain) or domain


def known_suffix(host: str) -> bool:
    """Whether an A-label host ends in a public suffix that the list knows (a real TLD)."""
    return bool(host) and _PSL.privatesuffix(host, accept_unknown=False) is not None


@lru_cache(maxsize=16384)
def registrable_label(domain: str) -> str:
    """The label left of the public suffix in the organisational domain: `paypal` for
    `www.paypal.co.uk`. Empty for a bare public suffix."""
    org = org_domain(domain)
    suffix = _PSL.publicsuffix(org) or ""
    return org[: -len(suffix) - 1] if suffix and org != suffix else ""


def aligned(a: str, b: str, mode: Alignment = "relaxed") -> bool:
    """Whether two A-label domains align: the same domain (strict) or the same organisational
    domain (relaxed)."""
    if a == b:
        return True
    return mode == "relaxed" and org_domain(a) == org_domain(b)


def domain_of(address: str) -> str:
    """The domain part of an address, as written (no normalisation)."""
    return address.rpartition("@")[2].strip().strip(">").rstrip(".")


def addresses_in(text: str) -> list[str]:
    """Every address-looking token in free text (a display name)."""
    return _ADDRESS_TOKEN.findall(text)


@lru_cache(maxsize=4096)
def domains_in(text: str) -> tuple[str, ...]:
    """Every domain named in free text, in A-label form: tokens such as `shop.example.com` or
    `pаypal.com` whose last labels are a known public suffix (so `Mr.Smith` or `v2.0` are not).
    Remembered: a sender's display name comes back message after message."""
    out = []
    for token in _DOMAIN_TOKEN.findall(_ADDRESS_TOKEN.sub(" ", text)):
        a = to_alabel(token)
        if a and _PSL.publicsuffix(a, accept_unknown=False) and _PSL.privatesuffix(a, accept_unknown=False):
            out.append(a)
    return tuple(out)


def _prototypes() -> dict[str, str]:
    """character → prototype, from confusable-homoglyphs' data (which lists each confusables.txt
    pair in both directions). A character with exactly one partner that in turn has others is a
    source mapped to that partner; a multi-character partner is always a prototype; a pair that
    only know each other maps both to the smaller, so that their skeletons agree."""
    out: dict[str, str] = {}
    for char, entries in confusables_data.items():
        if len(char) != 1 or len(entries) != 1:
            continue
        target = entries[0]["c"]
        if len(target) > 1 or len(confusables_data.get(target, ())) > 1:
            out[char] = target
        else:
            out[char] = min(char, target)
    return out


_PROTOTYPE = _prototypes()


def _map(text: str) -> str:
    decomposed = unicodedata.normalize("NFD", text)
    mapped = "".join(_PROTOTYPE.get(ch, ch) for ch in decomposed)
    return "".join(ch for ch in unicodedata.normalize("NFD", mapped).casefold() if not unicodedata.combining(ch))


@lru_cache(maxsize=16384)
def skeleton(text: str) -> str:
    """The TR 39 skeleton of `text`, case-folded: equal skeletons mean the strings can be
    confused by a reader. TR 39 is case-sensitive (`I` looks like `l`, `M` unlike `rn`), so the
    mapping runs again after folding. Separators collapse to one space (`ABN-AMRO` → `abn arnro`)."""
    return " ".join(re.split(r"[\W_]+", _map(_map(text)))).strip()


@lru_cache(maxsize=4096)
def skeletons(text: str) -> frozenset[str]:
    """The skeletons of `text` as written and as lower case: a reader may take `ING` for `lNG`
    or for `ing`, so both readings count when matching protected names."""
    return frozenset((skeleton(text), skeleton(text.casefold())))


def domain_name(value: str) -> str:
    """`value` in A-label form; ValueError when it is not a domain name (with at least one dot)."""
    a = to_alabel(value)
    if a is None or "." not in a:
        raise ValueError(f"{value!r} is not a domain name")
    return a
