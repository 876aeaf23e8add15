"""Bodies kept out of the MIME parser: what the stdlib parser is given instead of a message,
and how a part's payload is read back from the message's own bytes.

The stdlib's parser (the one MIME parser we use, email.parser with compat32) works line by
line in Python (about half a microsecond a line: most of the parse of a 30 KB newsletter),
and holds a message several times over while it works: the bytes decoded to str, its
StringIO, the list of lines of each part, their join (about 8x a 24 MB message at its peak,
measured with tracemalloc), in long C calls that hold the GIL. It cannot stream. What it needs
of a body is only where the body ends; so before parsing, runs of lines where the parser
decides nothing are replaced with one short marker line each, and the parser parses that
skeleton. Two readings find such runs:

- Runs of body lines (proxy/message/bodyruns.py), in any message above BODY_RUNS_ABOVE: from
  the first line after a possible header block to the next line that begins with "--". A
  multipart newsletter reaches the parser as its header blocks, boundaries and one marker line
  per part.
- Runs of inert lines, context-free, in a big message that the first reading does not hold
  for (delivery-status, a VT or FF line break). An inert line ends in CRLF, is not empty, has
  no other CR or LF (nor VT, FF, FS, GS, RS, where str.splitlines also breaks), no colon, and
  starts with neither a blank, nor "-", nor "From " (base64 lines, and most lines of prose and
  quoted-printable, are inert). It is never a header (the stdlib's headerRE needs a colon, a
  leading blank or "From "), a header continuation, a boundary (those start with "--"), a
  Unix From line or the empty line that ends the headers or a delivery-status block.

The marker line is inert too (letters and digits), so at its place the parser takes the same
turn as at the run's first line (a line of body, or the end of a header block, with the same
defect), and nothing in a run could change the structure. What does change is the payload
string of the part that held the run; `Elided.payload_bytes` puts the run back (a base64 body
is decoded straight from the message's bytes, window by window, with the stdlib's result)
before any check sees it.
"""

from __future__ import annotations

import binascii
import copy
import io
import re
import secrets
from dataclasses import dataclass
from email.message import Message as EmailMessage
from typing import Iterator

from proxy.message.bodyruns import body_runs
from proxy.message.decode import payload_bytes

__all__ = ["BODY_RUNS_ABOVE", "ELIDE_ABOVE", "MIN_BODY_RUN", "MIN_RUN", "Elided", "skeleton"]

# In a message larger than this, runs of body lines at least MIN_BODY_RUN long are elided:
# the parser's work per line (about half a microsecond) against the search for the runs and
# putting a part's payload back (about 15 and 4 microseconds): a loss for a 3 KB message, a
# third of the parse of a 12 KB one (bench/bench_mime.py).
BODY_RUNS_ABOVE = 8 * 1024
MIN_BODY_RUN = 1024
# Otherwise only messages larger than this are looked at, and only runs of inert lines at
# least this long are elided.
ELIDE_ABOVE = 256 * 1024
MIN_RUN = 32 * 1024
_WINDOW = 256 * 1024  # the message is scanned a window at a time: no long C call holds the GIL
_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
# The stdlib splits lines with str.splitlines, which also breaks at VT, FF and FS, GS, RS: an
# inert line has none of them either (each would start a line the parser looks at).
_RUN = re.compile(rb"(?m)^(?:(?!From )[^\r\n:\t \-\x0b\x0c\x1c-\x1e][^\r\n:\x0b\x0c\x1c-\x1e]*\r\n)+")
_NOT_INERT = (b":", b"\x0b", b"\x0c", b"\x1c", b"\x1d", b"\x1e")


def _inert(window: bytes) -> bool:
    """Whether a window of whole lines is inert lines only: single-octet searches (memchr) for
    the common case, base64, where no line can start with a blank or "-" since there is none."""
    if not window.endswith(b"\r\n") or window.startswith(b"\r\n") or any(c in window for c in _NOT_INERT):
        return False
    crlf = window.count(b"\r\n")
    if window.count(b"\r") != crlf or window.count(b"\n") != crlf or b"\n\r\n" in window:
        return False
    if b" " not in window and b"\t" not in window and b"-" not in window:
        return True
    return not window.startswith((b" ", b"\t", b"-", b"From ")) and not any(
        s in window for s in (b"\n ", b"\n\t", b"\n-", b"\nFrom "))
_B64_TEXT = re.compile(r"[A-Za-z0-9+/]*")


def _runs(raw: bytes) -> list[tuple[int, int]]:
    """The (start, end) of every run of inert lines of at least MIN_RUN octets, each from a
    line start through its last CRLF."""
    found: list[tuple[int, int]] = []
    start, size = 0, len(raw)
    while start < size:
        cut = raw.find(b"\r\n", start + _WINDOW) if start + _WINDOW < size else -1
        end = size if cut < 0 else cut + 2  # windows are whole lines (but the last)
        window = raw[start:end]
        whole = _inert(window)
        spans = [(start, end)] if whole else [(start + m.start(), start + m.end()) for m in _RUN.finditer(window)]
        for s, e in spans:
            if found and found[-1][1] == s:
                found[-1] = (found[-1][0], e)
            else:
                found.append((s, e))
        start = end
    return [(s, e) for s, e in found if e - s >= MIN_RUN]


def _windows(raw: bytes, start: int, end: int) -> Iterator[tuple[int, int]]:
    """[start, end) of `raw` in windows of about _WINDOW octets, each ending after a CRLF (but
    the last), so that no C call works on more than a window while holding the GIL."""
    while start < end:
        cut = raw.find(b"\r\n", start + _WINDOW, end) if start + _WINDOW < end else -1
        stop = end if cut < 0 else cut + 2
        yield start, stop
        start = stop


@dataclass(frozen=True, slots=True)
class Elided:
    """Which runs of the message were replaced by which marker line (marker + index + "Z")."""

    marker: str
    runs: tuple[tuple[int, int], ...]

    def shifted(self, by: int) -> "Elided":
        """The same runs in the message with `by` bytes put in front (prepended headers)."""
        return Elided(self.marker, tuple((s + by, e + by) for s, e in self.runs))

    def _pieces(self, payload: str, raw: bytes) -> list[str | tuple[int, int]]:
        """The payload as text pieces and (start, end) spans of `raw`. A marker that ends the
        payload lost its CRLF to the boundary after it, as the run's last line would have."""
        out: list[str | tuple[int, int]] = []
        marker, pos = self.marker, 0
        # str.find, not a regex: the marker is new in every message, and compiling a pattern
        # for it cost more than the parse it saves (the stdlib caches patterns by text)
        at = payload.find(marker)
        while at >= 0:
            if at > pos:
                out.append(payload[pos:at])
            digits = at + len(marker)
            z = payload.index("Z", digits)
            s, e = self.runs[int(payload[digits:z])]
            ended = payload.startswith("\r\n", z + 1)
            out.append((s, e if ended else e - 2))
            pos = z + 3 if ended else z + 1
            at = payload.find(marker, pos)
        if pos < len(payload):
            out.append(payload[pos:])
        return out

    def restore(self, payload: str, raw: bytes, limit: int | None = None) -> str:
        """The payload as the parser would have held it (its first `limit` characters, at least,
        when a limit is given)."""
        return self.restored_bytes(payload, raw, limit).decode("ascii", "surrogateescape")

    def restored_bytes(self, payload: str, raw: bytes, limit: int | None = None) -> bytes:
        """`restore` as the message's bytes: the parser's text is those bytes decoded as ASCII
        with surrogate escapes, one character an octet."""
        out: list[bytes] = []
        length = 0
        for piece in self._pieces(payload, raw):
            if isinstance(piece, str):
                chunk = piece.encode("ascii", "surrogateescape")
            else:
                s, e = piece
                chunk = raw[s:e if limit is None else min(e, s + limit - length)]
            out.append(chunk)
            length += len(chunk)
            if limit is not None and length >= limit:
                break
        return b"".join(out)

    def _base64(self, payload: str, raw: bytes) -> bytes | None:
        """A base64 payload decoded from the message's bytes a window at a time; None unless it
        is plain base64 (only the alphabet, CRLF line ends, padding only at the very end, a
        whole number of quanta), where the stdlib's strict decoding gives the same bytes.
        Anything else is left to the stdlib (restore, then its own decoding and defects)."""
        pieces = self._pieces(payload, raw)
        texts = [p.replace("\r\n", "") for p in pieces if isinstance(p, str)]
        last_text = texts[-1].rstrip("=") if texts and isinstance(pieces[-1], str) else None
        pad = len(texts[-1]) - len(last_text) if last_text is not None else 0
        if pad > 2 or not all(_B64_TEXT.fullmatch(t) for t in (texts[:-1] + [last_text] if last_text is not None else texts)):
            return None
        total = sum(len(t) for t in texts) + sum(
            (e - s) - 2 * raw.count(b"\r\n", s, e) for p in pieces if not isinstance(p, str) for s, e in _windows(raw, *p))
        if total % 4:
            return None
        out = io.BytesIO()  # grows in place; getvalue() hands over its buffer without a copy
        carry = b""
        padded = False  # "=" or "==" seen: nothing may follow
        for piece in pieces:
            if isinstance(piece, str):
                chunks: Iterator[bytes] = iter([piece.replace("\r\n", "").encode("ascii")])
            else:
                chunks = (raw[s:e].replace(b"\r\n", b"") for s, e in _windows(raw, *piece))
            for chunk in chunks:
                if padded:
                    return None
                rest = chunk.translate(None, _ALPHABET)
                if rest:
                    if rest not in (b"=", b"==") or not chunk.endswith(rest):
                        return None  # not plain base64 after all: the stdlib's way
                    padded = True
                buf = carry + chunk if carry else chunk
                whole = len(buf) - len(buf) % 4
                out.write(binascii.a2b_base64(buf[:whole]))
                carry = buf[whole:]
        if carry:
            out.write(binascii.a2b_base64(carry))
        return out.getvalue()

    def payload_bytes(self, part: EmailMessage, raw: bytes, limit: int | None = None) -> bytes:
        """decode.payload_bytes of the part as it was before eliding. `limit`: only the first
        `limit` octets are needed (text that is cut there anyway)."""
        # The parsed text itself: get_payload() would hand back a charset-decoded copy of a
        # payload with 8-bit bytes in it.
        payload = getattr(part, "_payload", None)
        if not isinstance(payload, str) or self.marker not in payload:
            return payload_bytes(part)
        cte = str(part.get("content-transfer-encoding", "")).lower()
        if cte == "base64":
            decoded = self._base64(payload, raw)
            if decoded is not None:
                return decoded
        if cte not in ("base64", "quoted-printable", "x-uuencode", "uuencode", "uue", "x-uue"):
            # what the stdlib's get_payload(decode=True) returns for these: the text encoded
            # back to the octets it was decoded from
            return self.restored_bytes(payload, raw, limit)
        whole = copy.copy(part)  # shares headers and defects with the parsed part
        whole.set_payload(self.restore(payload, raw))
        return payload_bytes(whole)


def skeleton(raw: bytes) -> tuple[bytes, Elided | None]:
    """What to give the parser: `raw` with each run of body lines (proxy/message/bodyruns.py)
    of at least MIN_BODY_RUN octets, or, for a big message that reading does not hold for,
    each long run of inert lines, replaced by a marker line; and how to read the runs back.
    `raw` itself (and None) when nothing is elided."""
    runs = body_runs(raw) if len(raw) > BODY_RUNS_ABOVE else None
    if runs is not None:
        runs = [(s, e) for s, e in runs if e - s >= MIN_BODY_RUN]
    elif len(raw) > ELIDE_ABOVE:
        runs = _runs(raw)
    if not runs:
        return raw, None
    marker = "SWELIDED" + secrets.token_hex(16) + "N"  # letters and digits: an inert line
    pieces: list[bytes | memoryview] = []
    view = memoryview(raw)
    pos = 0
    for i, (s, e) in enumerate(runs):
        pieces.append(view[pos:s])
        pieces.append(f"{marker}{i}Z\r\n".encode("ascii"))
        pos = e
    pieces.append(view[pos:])
    return b"".join(pieces), Elided(marker, tuple(runs))
