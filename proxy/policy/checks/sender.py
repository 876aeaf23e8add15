"""Sender identity: the From line must name exactly one real address (AUP: the From line
identifies your organisation accurately)."""

from __future__ import annotations

from typing import Iterator

from proxy.message import Message
from proxy.policy.registry import Context, Options, check
from proxy.policy.verdict import Finding


@check("sender", rules=("sender.from_invalid",))
def from_header(msg: Message, ctx: Context, opts: Options) -> Iterator[Finding]:
    count = msg.count("From")
    if count != 1:
        yield Finding(
            "sender.from_invalid",
            f"{count} From headers",
            "send exactly one From header naming your organisation's address",
        )
        return
    pairs = msg.from_addresses
    if len(pairs) != 1:
        yield Finding(
            "sender.from_invalid",
            f"From holds {len(pairs)} addresses",
            "use a single address in From (RFC 5322 then requires a Sender header)",
        )
        return
    _, addr = pairs[0]
    local, at, domain = addr.rpartition("@")
    if not at or not local or "." not in domain or domain.startswith(".") or domain.endswith("."):
        yield Finding(
            "sender.from_invalid",
            f"From address {addr!r} is not a valid address",
            "put a complete address (name@example.com) in From",
        )
