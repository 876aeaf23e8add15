"""Links checked against DNS URI blocklists (what Rspamd's SURBL module and SpamAssassin's URIBL
do): the registrable domains of the message's web links, and its From domain, looked up as
`DOMAIN.ZONE` A records in each configured zone (Spamhaus DBL, SURBL, URIBL style lists).

`content.blocklisted_link`: a domain is listed; the zone's return code says why (`codes` maps
exact addresses, `bits` the bits of the last octet for lists that add reasons up, as SURBL and
URIBL do). A zone's "query refused" codes (Spamhaus's 127.255.255.254 for queries through a
public resolver, URIBL's 127.0.0.1...) and answers outside 127.0.0.0/8 (a resolver that
rewrites NXDOMAIN) say nothing about the domain: they are `lookup.failed`, never a hit and
never a pass. Off by default: the public lists need a registration for commercial use.

Pure: the shell (proxy/facts/blocklist.py) looks the names up in parallel through the one
resolver and hands the answers over as `ZoneAnswer`s.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator

from proxy.message.mime import Message
from proxy.message.domains import domain_name
from proxy.message.urls import ip_host, known_suffix, registrable, scheme_and_host
from proxy.policy.registry import Options, options
from proxy.policy.verdict import Finding

__all__ = ["BlocklistOptions", "FACT", "Zone", "ZoneAnswer", "answer_findings", "lookup_domains"]

FACT = "blocklist"
MAX_FINDINGS = 5
_LOOPBACK = ipaddress.ip_network("127.0.0.0/8")


class Zone(BaseModel):
    """One DNS blocklist zone and what its answers mean."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    zone: str
    # Return address → reason, e.g. {"127.0.1.2" = "spam domain"}.
    codes: dict[str, str] = Field(default_factory=dict)
    # Bit of the last octet → reason, for lists whose answers add reasons up (SURBL, URIBL).
    bits: dict[int, str] = Field(default_factory=dict)
    # Return addresses that mean the query was refused or mistyped, not a listing.
    refused: list[str] = Field(default_factory=list)

    @field_validator("zone")
    @classmethod
    def _zone(cls, value: str) -> str:
        return domain_name(value)

    @field_validator("codes")
    @classmethod
    def _codes(cls, value: dict[str, str]) -> dict[str, str]:
        for address in value:
            ipaddress.IPv4Address(address)
        return value

    @field_validator("refused")
    @classmethod
    def _refused(cls, value: list[str]) -> list[str]:
        for address in value:
            ipaddress.IPv4Address(address)
        return value

    @field_validator("bits")
    @classmethod
    def _bits(cls, value: dict[int, str]) -> dict[int, str]:
        for bit in value:
            if bit <= 0 or bit > 255 or bit & (bit - 1):
                raise ValueError(f"{bit}: a bit of the last octet is 1, 2, 4, ... 128")
        return value

    def meaning(self, address: str) -> tuple[str, str]:
        """("listed", reason), ("refused", why) or ("", "") for an answer that lists nothing."""
        try:
            ip = ipaddress.IPv4Address(address)
        except ValueError:
            return "refused", f"{self.zone} answered {address!r}, not an address"
        if address in self.refused:
            return "refused", f"{self.zone} refused the query (answer {address})"
        if ip not in _LOOPBACK:
            return "refused", f"{self.zone} answered {address}, outside 127.0.0.0/8 (a resolver rewriting NXDOMAIN?)"
        if address in self.codes:
            return "listed", self.codes[address]
        if self.bits:
            reasons = [why for bit, why in sorted(self.bits.items()) if int(ip) & 0xFF & bit]
            return ("listed", ", ".join(reasons)) if reasons else ("", "")
        return "listed", f"listed ({address})"


@options("blocklist")
class BlocklistOptions(Options):
    """`[checks.blocklist]`."""

    enabled: bool = False
    zones: list[Zone] = Field(default_factory=list)
    check_from: bool = True  # the From domain is looked up too
    max_domains: int = Field(default=20, ge=1, le=200)  # per message: domains beyond are not looked up
    # Registrable domains never looked up (your own, your ESP's click tracker).
    skip_domains: list[str] = Field(default_factory=list)
    _skip: frozenset[str] = PrivateAttr(default=frozenset())

    @model_validator(mode="after")
    def _compile(self) -> "BlocklistOptions":
        self._skip = frozenset(registrable(d) for d in self.skip_domains)
        if self.enabled and not self.zones:
            raise ValueError("enabled = true needs at least one zone")
        return self

    def skips(self, domain: str) -> bool:
        return domain in self._skip


@dataclass(frozen=True, slots=True)
class ZoneAnswer:
    """The A records of DOMAIN.ZONE (empty: not listed), or why there was no answer."""

    domain: str
    zone: str
    addresses: tuple[str, ...] = ()
    error: str = ""


def lookup_domains(msg: Message, opts: BlocklistOptions) -> list[str]:
    """The registrable domains to look up, in order of first appearance: web links, then From."""
    out: dict[str, None] = {}
    for link in msg.distinct_links:
        scheme, host = scheme_and_host(link.href)
        if scheme in ("http", "https") and host and not ip_host(host) and known_suffix(host):
            out.setdefault(registrable(host), None)
    if opts.check_from and msg.from_domain and known_suffix(msg.from_domain):
        out.setdefault(registrable(msg.from_domain), None)
    return [d for d in out if d and not opts.skips(d)][: opts.max_domains]


def answer_findings(opts: BlocklistOptions, answers: tuple[ZoneAnswer, ...]) -> list[Finding]:
    zones = {z.zone: z for z in opts.zones}
    listed: list[str] = []
    failed: list[str] = []
    for a in answers:
        if a.error:
            failed.append(f"{a.domain} in {a.zone}: {a.error}")
            continue
        zone = zones.get(a.zone)
        if zone is None:
            continue
        for address in a.addresses:
            kind, why = zone.meaning(address)
            if kind == "listed":
                listed.append(f"{a.domain} is listed on {a.zone}: {why}")
            elif kind == "refused":
                failed.append(f"{a.domain}: {why}")
    found = [Finding("content.blocklisted_link", d, "remove links to listed domains, or have the listing reviewed by the list's operator")
             for d in dict.fromkeys(listed)][:MAX_FINDINGS]
    if failed:
        found.append(Finding("lookup.failed", "URI blocklist lookup failed: " + "; ".join(failed[:3]), "a DNS lookup failed; try again later"))
    return found

