"""Unsubscribe: every marketing message must let its recipient leave the list (AUP; RFC 2369,
RFC 8058 one-click)."""

from __future__ import annotations

from typing import Iterator

from proxy.message import Message
from proxy.policy.registry import Context, Options, check
from proxy.policy.verdict import Finding


@check("unsubscribe", rules=("unsubscribe.header_missing",), marketing_only=True)
def header(msg: Message, ctx: Context, opts: Options) -> Iterator[Finding]:
    if not any(v.strip() for v in msg.raw_headers("List-Unsubscribe")):
        yield Finding(
            "unsubscribe.header_missing",
            "no List-Unsubscribe header",
            "add List-Unsubscribe: <https://...>, <mailto:...> and List-Unsubscribe-Post: List-Unsubscribe=One-Click",
        )
