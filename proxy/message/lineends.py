"""Line ends of raw message bytes: SMTP carries CRLF only; a bare CR or LF is what the DATA
reader refuses (or rewrites), and what a held file edited on disk may have gained."""

from __future__ import annotations

import re

__all__ = ["has_bare_line_ends", "normalize_line_endings"]

_BARE = re.compile(rb"\r(?!\n)|(?<!\r)\n")


def has_bare_line_ends(data: bytes) -> bool:
    """Whether any CR or LF stands outside a CRLF pair (three C-level counts, no copy)."""
    crlf = data.count(b"\r\n")
    return data.count(b"\r") != crlf or data.count(b"\n") != crlf


def normalize_line_endings(data: bytes) -> bytes:
    """Rewrite bare CR and bare LF to CRLF."""
    return _BARE.sub(b"\r\n", data)
