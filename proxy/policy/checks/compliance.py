"""The complaints address the AUP asks every sender to publish.

`compliance.complaint_address_missing`: when the policy names a complaints address, it must
appear in the message (visible text or a mailto link).
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Iterator
from urllib.parse import unquote

from pydantic import Field, field_validator

from proxy.message.mime import Message
from proxy.policy.context import Context
from proxy.policy.registry import Options, check, options
from proxy.policy.verdict import Finding

_ADDRESS = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


@lru_cache(maxsize=256)
def _shown(address: str) -> re.Pattern[str]:
    """The address as a whole word of text (not inside a longer address)."""
    return re.compile(rf"(?<![\w.+\-]){re.escape(address)}(?![\w\-]|\.\w)")


@options("compliance")
class ComplianceOptions(Options):
    """`[checks.compliance]`."""

    # The complaints address every marketing message must show ("" = no requirement).
    complaints_address: str = ""
    # Per sender (From) domain, its own complaints address, instead of the one above.
    complaints_by_domain: dict[str, str] = Field(default_factory=dict)

    @field_validator("complaints_address")
    @classmethod
    def _address(cls, value: str) -> str:
        if value and not _ADDRESS.match(value):
            raise ValueError(f"{value!r} is not an email address")
        return value.lower()

    @field_validator("complaints_by_domain")
    @classmethod
    def _addresses(cls, value: dict[str, str]) -> dict[str, str]:
        for domain, addr in value.items():
            if not _ADDRESS.match(addr):
                raise ValueError(f"{domain}: {addr!r} is not an email address")
        return {d.lower(): a.lower() for d, a in value.items()}

    def address_for(self, domain: str) -> str:
        return self.complaints_by_domain.get(domain.lower(), self.complaints_address)


@check("compliance", rules=("compliance.complaint_address_missing",), marketing_only=True)
def complaint_address(msg: Message, ctx: Context, opts: ComplianceOptions) -> Iterator[Finding]:
    if not (opts.complaints_address or opts.complaints_by_domain):
        return
    address = opts.address_for(msg.from_domain)
    if not address:
        return
    if _shown(address).search(msg.folded_text):
        return
    for link in msg.links:
        if link.href.lower().startswith("mailto:") and unquote(link.href[7:].split("?", 1)[0]).strip().lower() == address:
            return
    yield Finding(
        "compliance.complaint_address_missing",
        f"the complaints address {address} does not appear in the message",
        f"show the complaints address {address} in a clearly visible place in the message",
    )
