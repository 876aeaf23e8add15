"""Decoding the pieces of a MIME message without ever raising: header values (RFC 2047,
raw 8-bit UTF-8), body bytes in their declared charset, attachment names (RFC 2231 and
RFC 2047). Hostile charsets and encodings degrade to replacement characters, never to an
exception, so the message view above them can always answer.
"""

from __future__ import annotations

import email.header
import email.utils
from email.message import Message as EmailMessage
from email.policy import compat32
from typing import Any

__all__ = ["decode_header", "decode_text", "header_text", "part_charset", "part_names", "payload_bytes"]
# One header value as decoded for checks; decoding encoded words costs about a microsecond a
# character. A longer value (a 1 MB Subject) is decoded this far (Message.problems says so).
MAX_HEADER_CHARS = 65_536


def header_text(value: Any) -> str:
    """A header value as text: compat32 hands back a `Header` object for raw 8-bit (SMTPUTF8)
    values, and a str that may carry surrogate escapes; both become proper Unicode here."""
    if isinstance(value, email.header.Header):
        chunks = email.header.decode_header(value)
        return "".join(c.decode("utf-8", "replace") if isinstance(c, bytes) else c for c, _ in chunks)
    text = str(value)
    if not text.isascii():
        try:
            text = text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
        except UnicodeError:
            pass
    return text


def decode_header(value: Any) -> str:
    """Decode an RFC 2047 header value to text; undecodable pieces are replaced, never raised."""
    if value is None:
        return ""
    value = header_text(value)[:MAX_HEADER_CHARS]
    if "=?" not in value:
        return " ".join(value.split())
    try:
        parts = email.header.decode_header(value)
    except Exception:  # the stdlib raises several kinds on broken encoded words
        return " ".join(value.split())
    out = []
    for chunk, charset in parts:
        if isinstance(chunk, bytes):
            try:
                out.append(chunk.decode(charset or "ascii", errors="replace"))
            except Exception:  # unknown charset, or a codec such as idna that cannot replace
                out.append(chunk.decode("latin-1"))
        else:
            out.append(chunk)
    return " ".join("".join(out).split())


def payload_bytes(part: EmailMessage) -> bytes:
    try:
        payload = part.get_payload(decode=True)
    except Exception:  # broken base64/qp in the wild: judge what we can
        return b""
    return payload if isinstance(payload, bytes) else b""


def part_charset(part: EmailMessage) -> str:
    try:
        return part.get_content_charset() or "utf-8"
    except Exception:
        return "utf-8"


def decode_text(raw: bytes, charset: str, limit: int) -> str:
    """Bytes in a declared charset to text. A wrong or hostile charset (unknown names, codecs
    that cannot replace errors such as idna, non-text codecs) falls back to UTF-8."""
    raw = raw[: limit * 4]
    try:
        return raw.decode(charset, errors="replace")[:limit]
    except Exception:
        return raw.decode("utf-8", errors="replace")[:limit]


def part_names(part: EmailMessage) -> tuple[str, ...]:
    """Every name a part gives itself (Content-Disposition filename, Content-Type name)."""
    headers = [str(v) for v in (part.get("Content-Disposition"), part.get("Content-Type")) if v is not None]
    if not any("name" in h.lower() for h in headers):
        return ()  # most parts name nothing: no parameter parsing (filename*0*, NAME: all say "name")
    found: list[str] = []
    if any(isinstance(part.get(h), email.header.Header) for h in ("Content-Disposition", "Content-Type")):
        # Raw 8-bit (UTF-8) parameters: compat32 would render them as U+FFFD, hiding e.g. a
        # right-to-left override in a file name. Re-read them from properly decoded text.
        decoded = EmailMessage(policy=compat32)
        for h in ("Content-Disposition", "Content-Type"):
            if part.get(h) is not None:
                decoded[h] = header_text(part.get(h))
        part = decoded
    for getter in (lambda: part.get_filename(), lambda: part.get_param("name")):
        try:
            value = getter()  # type: ignore[no-untyped-call]
            if isinstance(value, tuple):  # an RFC 2231 value the stdlib could not collapse
                value = email.utils.collapse_rfc2231_value(value)
        except Exception:
            continue
        name = decode_header(value) if value else ""
        if name and name not in found:
            found.append(name)
    return tuple(found)
