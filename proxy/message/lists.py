"""What a message's list headers say: the list it belongs to (RFC 2919 List-Id) and whether
its headers mark it as bulk mail. Read by the opt-out family (late suppressions by list) and by
the transaction code (the scope of an inserted unsubscribe link) alike."""

from __future__ import annotations

import re
from typing import Sequence

from proxy.message.mime import Message

__all__ = ["is_marketing_by_headers", "list_id"]


def list_id(message: Message, header: str) -> str:
    """The list identifier: the part in angle brackets (RFC 2919), else the whole value."""
    value = (message.header(header) or "").strip() if header else ""
    m = re.search(r"<([^<>]+)>", value)
    return (m.group(1) if m else value).strip().lower()[:200]


def is_marketing_by_headers(message: Message, markers: Sequence[str]) -> bool:
    for item in markers:
        name, sep, want = item.partition(":")
        values = message.headers(name.strip())
        if values and (not sep or any(v.strip().lower() == want.strip().lower() for v in values)):
            return True
    return False
