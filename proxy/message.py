"""The parsed, read-only view of one message that every check reads.

The message is parsed once, with the fast `compat32` policy; everything derived from it (decoded
headers, text parts, the HTML tree, links, attachments) is computed on first use and cached, so
a policy whose checks never look at HTML never pays for an HTML parse. Checks must treat the
view as immutable.

Hostile input is the norm here: every accessor degrades to an empty or partial answer and
records a defect instead of raising, so a check can always judge. Where the view had to leave
part of a message unseen (the parser gave up, or a bound below stopped the walk),
`unjudgeable` says so, and the `message.unparseable` rule turns that into a finding: hiding
content below the bounds must not get it past the checks.
"""

from __future__ import annotations

import email.errors
import email.header
from dataclasses import dataclass, field
from email import message_from_bytes
from email.parser import BytesParser
from email.message import Message as EmailMessage
from email.policy import compat32
from email.policy import default as _default_policy
from functools import cached_property
from typing import Iterator

# Bounds that keep one hostile message from costing unbounded time or memory.
MAX_PARTS = 500
MAX_DEPTH = 20
MAX_HTML_BYTES = 2_000_000
MAX_TEXT_CHARS = 2_000_000
# The stdlib address parser is superlinear: 4 KB of addresses take about 0.1 s, 200 KB six
# seconds of event loop. Longer address headers (no real From comes near) count as unparseable.
MAX_ADDRESS_HEADER = 4096
# One header value as decoded for checks; decoding costs about a microsecond a character. A
# longer header (a 1 MB Subject) is cut to this, and the message counts as not judged in full.
MAX_HEADER_CHARS = 65_536
# The stdlib parser recurses per nested multipart and compiles a pattern per boundary (about a
# millisecond a level, up to the recursion limit): a message that names more boundaries than
# this is not parsed past its header section (a real message has a handful). Counted the cheap
# way (two literal scans); odd casings still meet the recursion bound.
MAX_BOUNDARIES = 100
_HEADER_FACTORY = _default_policy.header_factory


@dataclass(frozen=True, slots=True)
class Link:
    """One hyperlink: where it goes and what the reader sees."""

    href: str
    text: str
    source: str  # "html" or "text"


@dataclass(frozen=True, slots=True)
class Attachment:
    """A non-body MIME part: what it claims to be, and its decoded bytes."""

    filename: str
    content_type: str
    payload: bytes

    @property
    def size(self) -> int:
        return len(self.payload)


@dataclass(frozen=True, slots=True)
class HtmlView:
    """What checks need from the HTML body, extracted in one walk of the tree."""

    anchors: tuple[Link, ...]
    visible_text: str
    password_inputs: int
    forms: int


def decode_header(value: str | None) -> str:
    """Decode an RFC 2047 header value to text; undecodable pieces are replaced, never raised."""
    if value is None:
        return ""
    value = str(value)[:MAX_HEADER_CHARS]
    if "=?" not in value:
        return " ".join(value.split())
    try:
        parts = email.header.decode_header(value)
    except (ValueError, LookupError, AssertionError, email.errors.MessageError):  # bad base64 in an encoded word
        return " ".join(value.split())
    out = []
    for chunk, charset in parts:
        if isinstance(chunk, bytes):
            try:
                out.append(chunk.decode(charset or "ascii", errors="replace"))
            except LookupError:
                out.append(chunk.decode("latin-1"))
        else:
            out.append(chunk)
    return " ".join("".join(out).split())


def _utf8(value: str) -> str:
    """The parser keeps non-ASCII header bytes as surrogate escapes; read them as UTF-8."""
    value = str(value)
    if value.isascii():
        return value
    return value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def _decode_payload(part: EmailMessage) -> bytes:
    try:
        payload = part.get_payload(decode=True)
    except Exception:  # broken base64/qp in the wild: judge what we can
        return b""
    return payload if isinstance(payload, bytes) else b""


def _part_text(part: EmailMessage, limit: int) -> str:
    raw = _decode_payload(part)[: limit * 4]
    charset = part.get_content_charset() or "utf-8"
    try:
        return raw.decode(charset, errors="replace")[:limit]
    except LookupError:
        return raw.decode("utf-8", errors="replace")[:limit]


@dataclass(frozen=True)
class Message:
    """A received message: the exact bytes, and lazily derived views of them."""

    raw: bytes
    _msg: EmailMessage = field(repr=False, compare=False)
    parse_problem: str = ""  # why the parser could not take the whole message ("" if it could)

    @classmethod
    def from_bytes(cls, raw: bytes) -> "Message":
        if raw.count(b"oundary") + raw.count(b"OUNDARY") > MAX_BOUNDARIES:
            problem = f"more than {MAX_BOUNDARIES} MIME boundaries"
        else:
            try:
                return cls(raw=raw, _msg=message_from_bytes(raw, policy=compat32))
            except RecursionError:
                problem = "MIME parts nested too deep to parse"
            except Exception as exc:  # the stdlib parser records defects; this is a last resort
                problem = f"the parser failed: {type(exc).__name__}"
        try:  # keep what can be had: the header section
            msg = BytesParser(policy=compat32).parsebytes(raw, headersonly=True)
        except Exception:
            msg = EmailMessage(policy=compat32)
        return cls(raw=raw, _msg=msg, parse_problem=problem)

    # -- headers -----------------------------------------------------------------------------

    def header(self, name: str) -> str | None:
        """The first value of a header, decoded, or None when absent."""
        value = self._msg.get(name)
        return None if value is None else decode_header(value)

    def headers(self, name: str) -> list[str]:
        """Every value of a header, decoded, in order."""
        return [decode_header(v) for v in (self._msg.get_all(name) or [])]

    def raw_headers(self, name: str) -> list[str]:
        """Every value of a header exactly as sent (unfolded only), for strict parsers. Raw
        UTF-8 (RFC 6532, SMTPUTF8 mail) stays text: `x@bücher.example`, not replacement marks."""
        key = name.lower()
        return [_utf8(v) for k, v in self._msg.raw_items() if k.lower() == key]

    def items(self) -> list[tuple[str, str]]:
        """Every header as (name, value as sent, unfolded only), in order."""
        return [(name, str(value)) for name, value in self._msg.items()]

    def count(self, name: str) -> int:
        return len(self._msg.get_all(name) or [])

    @cached_property
    def subject(self) -> str:
        return self.header("Subject") or ""

    def addresses(self, name: str) -> list[tuple[str, str]]:
        """(display name, addr-spec) pairs of every address in the header `name`, parsed with
        the stdlib's RFC 5322 parser; an unparseable group yields an empty address."""
        out: list[tuple[str, str]] = []
        for value in self.raw_headers(name):
            if len(value) > MAX_ADDRESS_HEADER:
                out.append(("", ""))
                continue
            try:
                parsed = _HEADER_FACTORY(name, value)
                addrs = parsed.addresses  # type: ignore[attr-defined]
            except Exception:  # the parser can fail on hostile input; judge it as invalid
                out.append(("", ""))
                continue
            out.extend((a.display_name, a.addr_spec if a.domain else a.username) for a in addrs)
        return out

    @cached_property
    def from_addresses(self) -> list[tuple[str, str]]:
        """(display name, address) pairs of every From header."""
        return self.addresses("From")

    @cached_property
    def defects(self) -> tuple[str, ...]:
        found = []
        for part in self._walk():
            found.extend(type(d).__name__ for d in getattr(part, "defects", ()))
        return tuple(found)

    # -- body --------------------------------------------------------------------------------

    @cached_property
    def _parts(self) -> tuple[tuple[EmailMessage, ...], str]:
        """Every MIME part, bounded in number and depth against hostile nesting, and why the
        walk stopped short ("" when it saw every part)."""
        parts: list[EmailMessage] = []
        stopped = ""
        stack: list[tuple[EmailMessage, int]] = [(self._msg, 0)]
        while stack:
            if len(parts) >= MAX_PARTS:
                stopped = f"more than {MAX_PARTS} MIME parts"
                break
            part, depth = stack.pop()
            parts.append(part)
            if part.is_multipart():
                payload = part.get_payload()
                if isinstance(payload, list) and payload:
                    if depth >= MAX_DEPTH:
                        stopped = f"MIME parts nested deeper than {MAX_DEPTH} levels"
                        continue
                    stack.extend((p, depth + 1) for p in reversed(payload) if isinstance(p, EmailMessage))
        return tuple(parts), stopped

    def _walk(self) -> Iterator[EmailMessage]:
        return iter(self._parts[0])

    @cached_property
    def unjudgeable(self) -> str:
        """Why part of the message stayed unseen by the checks ("" when none did)."""
        if any(len(value) > MAX_HEADER_CHARS for _, value in self._msg.raw_items()):
            return f"a header longer than {MAX_HEADER_CHARS} characters"
        return self.parse_problem or self._parts[1]

    @cached_property
    def _bodies(self) -> tuple[list[EmailMessage], list[EmailMessage], list[EmailMessage]]:
        """Split leaves into text/plain bodies, text/html bodies and attachments."""
        texts: list[EmailMessage] = []
        htmls: list[EmailMessage] = []
        attachments: list[EmailMessage] = []
        for part in self._walk():
            if part.is_multipart():
                continue
            ctype = part.get_content_type()
            # str(): compat32 hands back a Header object when the value has 8-bit bytes
            disposition = str(part.get("Content-Disposition") or "").split(";")[0].strip().lower()
            if disposition == "attachment" or (part.get_filename() and disposition != "inline"):
                attachments.append(part)
            elif ctype == "text/plain":
                texts.append(part)
            elif ctype == "text/html":
                htmls.append(part)
            elif ctype.startswith("text/") or ctype == "message/rfc822":
                continue
            else:
                attachments.append(part)
        return texts, htmls, attachments

    @cached_property
    def text(self) -> str:
        """The decoded text/plain bodies, joined."""
        return "\n".join(_part_text(p, MAX_TEXT_CHARS) for p in self._bodies[0])[:MAX_TEXT_CHARS]

    @cached_property
    def html(self) -> str:
        """The decoded text/html bodies, joined (empty when there are none)."""
        return "\n".join(_part_text(p, MAX_HTML_BYTES) for p in self._bodies[1])[:MAX_HTML_BYTES]

    @cached_property
    def html_view(self) -> HtmlView:
        from proxy.htmlview import extract

        return extract(self.html)

    @cached_property
    def visible_text(self) -> str:
        """What a reader sees: the text part and the HTML's visible text."""
        return "\n".join(t for t in (self.text, self.html_view.visible_text) if t)

    @cached_property
    def attachments(self) -> tuple[Attachment, ...]:
        out = []
        for part in self._bodies[2]:
            try:
                filename = decode_header(part.get_filename() or "")
            except Exception:
                filename = ""
            out.append(Attachment(filename, part.get_content_type(), _decode_payload(part)))
        return tuple(out)

    @cached_property
    def links(self) -> tuple[Link, ...]:
        """Every link in the HTML anchors, then every URL in the text part."""
        from proxy.htmlview import text_links

        return self.html_view.anchors + text_links(self.text)
