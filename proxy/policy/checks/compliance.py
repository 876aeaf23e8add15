"""Message hygiene: RFC 5322 header counts, a message the view cannot judge, and the
complaints address the AUP asks every sender to publish.

`message.header_count`: From, Date, Message-ID and Subject each exactly once (RFC 5322 3.6
requires From and Date, allows at most one of each of the four; the 2024 bulk-sender rules
require RFC 5322 conformance and a Message-ID).
`message.unparseable`: what the parsed view could not read (broken MIME structure, absurd
nesting, bodies past the size bounds): a check that sees only part of a message must not
pass it as if it had seen all of it.
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
from proxy.policy.registry import Context, Options, check, options
from proxy.policy.verdict import Finding

_ADDRESS = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


@lru_cache(maxsize=256)
def _shown(address: str) -> re.Pattern[str]:
    """The address as a whole word of text (not inside a longer address)."""
    return re.compile(rf"(?<![\w.+\-]){re.escape(address)}(?![\w\-]|\.\w)")


@options("message")
class MessageOptions(Options):
    """`[checks.message]`."""

    # Headers that must appear exactly once.
    exactly_once: list[str] = Field(default_factory=lambda: ["From", "Date", "Message-ID", "Subject"])


@check("message", rules=("message.header_count",))
def header_count(msg: Message, ctx: Context, opts: MessageOptions) -> Iterator[Finding]:
    wrong = [(name, msg.count(name)) for name in opts.exactly_once if msg.count(name) != 1]
    if wrong:
        yield Finding(
            "message.header_count",
            ", ".join(f"{n} {name} headers" for name, n in wrong),
            "send exactly one of each of " + ", ".join(opts.exactly_once) + " (RFC 5322 3.6)",
        )


@check("message", rules=("message.unparseable",))
def unparseable(msg: Message, ctx: Context, opts: MessageOptions) -> Iterator[Finding]:
    if msg.problems:
        yield Finding(
            "message.unparseable",
            "; ".join(msg.problems)[:500],
            "send well-formed MIME (RFC 2045/2046) within the size bounds",
        )


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
