"""Opt-out (AUP: no sending to people who unsubscribed or objected).

Suppressions are looked up per recipient at RCPT time by the shell (proxy/transaction/recipients.py), which
calls the pure functions here to turn the store's answer into findings. What RCPT time cannot
know is settled after DATA by the `late` check (proxy/policy/checks/optout.py): the brand or list a header names, and a
message that its headers reveal as marketing although its stream is not.

The options also choose the transaction's brand for the whole recipient-state group (opt-out,
consent, frequency) and whether sendwarden inserts List-Unsubscribe headers.
"""

from __future__ import annotations

import re
import time
from typing import Literal

from pydantic import Field, field_validator

from proxy.message.lists import is_marketing_by_headers, list_id
from proxy.message.mime import Message
from proxy.policy.context import Context
from proxy.policy.registry import Options, options
from proxy.policy.verdict import Finding
from proxy.policy.recipientstate import GLOBAL, RecipientState, Scope, Suppression

LATE_FACT = "suppressions_after_data"
_HEADER_NAME = re.compile(r"^[!-9;-~]+$")


@options("optout")
class OptoutOptions(Options):
    # Where a transaction's brand comes from (for brand-scoped suppressions, consent, caps):
    # the stream's name, the envelope sender's domain, or the authenticated user, each mapped
    # through `brands` when listed there.
    brand_from: Literal["stream", "sender_domain", "auth_user"] = "stream"
    brands: dict[str, str] = Field(default_factory=dict)
    # A header naming the brand (e.g. "X-Brand"); known only after DATA, so a suppression
    # found through it holds the whole message (optout.suppressed_after_data).
    brand_header: str = ""
    # The header naming the mailing list, for list-scoped suppressions (RFC 2919 List-Id).
    list_header: str = "List-Id"
    # On a non-marketing stream, these headers ("Name" or "Name: value") make a message
    # marketing after all: its recipients are then checked against the suppression list.
    marketing_headers: list[str] = Field(default_factory=lambda: ["List-Id", "Precedence: bulk", "Precedence: list"])
    # Insert List-Unsubscribe (https + mailto) and List-Unsubscribe-Post into marketing
    # messages that lack them (single-recipient messages only; see proxy/unsubscribe).
    insert_list_unsubscribe: bool = False
    # What the inserted link unsubscribes from. The AUP: every channel and project unless a
    # preference centre exists, hence global. "list" falls back to "brand" without a list.
    unsubscribe_scope: Literal["global", "brand", "list"] = "global"

    @field_validator("brand_header", "list_header")
    @classmethod
    def _name(cls, v: str) -> str:
        if v and not _HEADER_NAME.match(v):
            raise ValueError(f"{v!r} is not a header name")
        return v

    @field_validator("marketing_headers")
    @classmethod
    def _markers(cls, v: list[str]) -> list[str]:
        for item in v:
            name = item.partition(":")[0].strip()
            if not _HEADER_NAME.match(name):
                raise ValueError(f"{item!r}: expected 'Header-Name' or 'Header-Name: value'")
        return v


def rcpt_brand(opts: OptoutOptions, stream: str, mail_from: str, auth_user: str | None) -> str:
    """The transaction's brand as known at MAIL FROM."""
    if opts.brand_from == "sender_domain":
        key = mail_from.rpartition("@")[2].lower()
    elif opts.brand_from == "auth_user":
        key = auth_user or ""
    else:
        key = stream
    return opts.brands.get(key, key)


def rcpt_scopes(brand: str) -> tuple[Scope, ...]:
    return (GLOBAL, Scope("brand", brand)) if brand else (GLOBAL,)


def _when(ts: float) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(ts)) if ts else "unknown date"


def describe(s: Suppression) -> str:
    return f"recipient opted out ({s.reason}, {s.scope}, since {_when(s.created)})"


def findings(state: RecipientState, address: str) -> list[Finding]:
    """One finding per suppression that applies to the recipient."""
    return [
        Finding("optout.suppressed", f"{address}: {describe(s)}", "remove the recipient from your list; do not send marketing to them")
        for s in state.suppressions
    ]


def late_scopes(opts: OptoutOptions, message: Message, ctx: Context) -> tuple[Scope, ...]:
    """The suppression scopes to check after DATA, beyond what RCPT time checked already."""
    brand = rcpt_brand(opts, ctx.stream, ctx.mail_from, ctx.auth_user)
    extra: list[Scope] = []
    header_brand = (message.header(opts.brand_header) or "").strip()[:200] if opts.brand_header else ""
    if header_brand and header_brand != brand:
        extra.append(Scope("brand", header_brand))
    lid = list_id(message, opts.list_header)
    if lid:
        extra.append(Scope("list", lid))
    if ctx.marketing:
        return tuple(extra)
    if is_marketing_by_headers(message, opts.marketing_headers):
        return (*rcpt_scopes(brand), *extra)
    return ()

