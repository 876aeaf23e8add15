"""Reading DATA in bulk, smuggling-safe.

aiosmtpd reads DATA one line at a time (about 60 % of a bare relay's busy time, NOTES.md). Here
the stream is read in large chunks up to the only end-of-data sequence RFC 5321 allows,
CRLF.CRLF; bare CR or LF inside the content (the SMTP smuggling vector: a downstream MTA that
accepts `\\n.\\n` would see a second message) is refused, or rewritten to CRLF when configured.
"""

from __future__ import annotations

import asyncio
import io
import re
from dataclasses import dataclass

from proxy.message.lineends import normalize_line_endings
from proxy.smtp.inflight import InFlight

END = b"\r\n.\r\n"
# DATA larger than this is checked and unstuffed in a thread, SLICE bytes at a time.
SLICED_ABOVE = 1024 * 1024
SLICE = 256 * 1024


@dataclass(frozen=True, slots=True)
class DataResult:
    """The outcome of reading one DATA section.

    `content` is the message with dot-stuffing removed (None when it was refused); `error`
    names why it was refused: "too_large", "bare_eol", "line_too_long", "in_flight_full" (the
    process's budget for message bytes in flight had no room: a temporary failure).
    """

    content: bytes | None
    size: int
    error: str = ""
    # Bytes reserved in the in-flight budget for this message (given back once it is answered).
    reserved: int = 0


def has_long_line(data: bytes, limit: int, start: int = 0, end: int | None = None) -> bool:
    """Whether any CRLF-delimited line is longer than `limit` octets (`data` has no bare CR or
    LF: the caller checked).

    From the start of a line, the last LF within limit + 2 octets ends every line before it
    within the limit; none there means the line is too long. About one C-level rfind per
    `limit` octets: 5 us for a 30 KB message, where split + map(len) took 28 us and a
    `[^\r\n]{999}` regex search ~50 ms (it retries at every position).
    """
    end = len(data) if end is None else end
    while end - start > limit:
        lf = data.rfind(b"\n", start, start + limit + 2)
        if lf < 0:
            return True
        start = lf + 1
    return False


def unstuff(data: bytes) -> bytes:
    """Undo RFC 5321 4.5.2 transparency on CRLF-delimited content."""
    if data.startswith(b"."):
        data = data[1:]
    return data.replace(b"\r\n..", b"\r\n.")


async def read_data(
    reader: asyncio.StreamReader,
    *,
    max_size: int,
    max_line: int,
    normalize: bool,
    in_flight: InFlight | None = None,
) -> DataResult:
    """Read up to and including CRLF.CRLF; never buffer more than `max_size` (+ one chunk).

    A refused message is still read to its end (and thrown away as it arrives), so the session
    stays in step with the client. Reads stop exactly at the terminator, so commands that a
    pipelining client sent after it stay in the reader.

    The reader searches for ".\r\n" rather than the full terminator: a message whose first
    line is the lone dot (the empty message) has its leading CRLF in the DATA command line, so
    the terminator is recognised by looking at the last bytes already consumed as well.
    """
    # The message is gathered in a BytesIO: it grows in place (an eighth at a time) and
    # getvalue() hands over its buffer without a copy, where a list of chunks and their join
    # held the message twice at the end of DATA.
    buf = io.BytesIO()
    size = 0
    too_large = False
    no_room = False
    reserved = 0
    tail = b"\r\n"  # the DATA command line ended with CRLF
    whole: bytes | None = None  # the message, when it came in one block (not copied into buf)
    while True:
        try:
            block = await reader.readuntil(b".\r\n")
            found = True
        except asyncio.LimitOverrunError as exc:
            block = await reader.read(max(exc.consumed, 1))
            found = False
        except asyncio.IncompleteReadError:
            if in_flight is not None:
                in_flight.give(reserved)
            return DataResult(None, size, "eof")
        if not block:
            if in_flight is not None:
                in_flight.give(reserved)
            return DataResult(None, size, "eof")
        if found and (block.endswith(END) or (len(block) < len(END) and (tail + block).endswith(END))):
            block = block[:-3]  # keep the CRLF that ends the last line, drop ".\r\n"
            size += len(block)
            if not too_large and size <= max_size:
                if no_room or (in_flight is not None and not in_flight.take(len(block))):
                    no_room = True
                    buf = io.BytesIO()
                else:
                    reserved += len(block)
                    if buf.tell():
                        buf.write(block)
                    else:  # all of it in one block: no copy into buf and out again
                        whole = block
            else:
                too_large = True
            break
        size += len(block)
        if too_large or size > max_size:
            too_large = True
            buf = io.BytesIO()
        elif no_room:
            pass
        elif in_flight is not None and not in_flight.take(len(block)):
            no_room = True  # read on to the end, keeping nothing, and make room for the others now
            buf = io.BytesIO()
            in_flight.give(reserved)
            reserved = 0
        else:
            reserved += len(block)
            buf.write(block)
        tail = (tail + block)[-4:] if len(block) < 4 else block[-4:]
    if in_flight is not None and (too_large or no_room):
        in_flight.give(reserved)
        reserved = 0
    if too_large:
        return DataResult(None, size, "too_large")
    if no_room:
        in_flight.refused += 1  # type: ignore[union-attr]
        return DataResult(None, size, "in_flight_full")
    data = whole if whole is not None else buf.getvalue()
    del buf
    if len(data) > SLICED_ABOVE:
        # These C-level passes hold the GIL (about 0.2 s for 20 MB): in a thread, one slice at
        # a time, so that the event loop gets the GIL back between slices.
        return await asyncio.to_thread(finish, data, max_line, normalize, reserved)
    return finish(data, max_line, normalize, reserved)


def _windows(data: bytes, size: int) -> list[tuple[int, int]]:
    """`data` cut into windows of about `size`, each cut made just before a CRLF, so that no
    CRLF, no line and no CRLF.. (dot-stuffing) is ever split between two windows."""
    out, start = [], 0
    while start < len(data):
        cut = data.find(b"\r\n", start + size) if start + size < len(data) else -1
        end = len(data) if cut < 0 else cut
        out.append((start, end))
        start = end
    return out


def _bare_in(data: bytes, start: int, end: int) -> bool:
    crlf = data.count(b"\r\n", start, end)
    return data.count(b"\r", start, end) != crlf or data.count(b"\n", start, end) != crlf


# A bare LF, or a CRLF that starts a line with a dot; a bare CR. re finds a pattern whose first
# byte is a literal with a tight loop over the bytes and tries a match at each LF (or CR):
# ~10 us each for a 30 KB message, where bytes.count with two-byte needles took 45 us for the
# three counts and find(CRLF..) 14 us more. A match tried at every line end costs more when
# lines are empty (2.3 ms for 256 KB of them, against 0.8 ms), so messages of more than one
# window are counted as before.
_LF_OR_DOT_LINE = re.compile(rb"\n(?:(?<!\r\n)|\.)")
_BARE_LF = re.compile(rb"\n(?<!\r\n)")
_BARE_CR = re.compile(rb"\r(?!\n)")


def _scan(data: bytes) -> tuple[bool, bool]:
    """(whether `data` has a bare CR or LF, whether a line after the first starts with a dot;
    when there are bare line ends, the second is True as well: the caller rewrites then)."""
    found = _LF_OR_DOT_LINE.search(data)
    if found is None:
        return _BARE_CR.search(data) is not None, False
    if found.end() - found.start() == 1:  # the first alternative: a bare LF
        return True, True
    return _BARE_LF.search(data, found.end()) is not None or _BARE_CR.search(data) is not None, True


def finish(data: bytes, max_line: int, normalize: bool, reserved: int = 0) -> DataResult:
    """The checks and the unstuffing of complete DATA, window by window (see _windows); the
    bytes are copied only where something must change (a leading dot, CRLF.., bare line ends).
    `reserved`: the in-flight bytes held for it, carried in the result."""
    windows = _windows(data, SLICE) if len(data) > SLICE else [(0, len(data))]
    if len(windows) == 1:
        bare, dot_lines = _scan(data)
    else:
        bare = any(_bare_in(data, s, e) for s, e in windows)
        dot_lines = bare or any(data.find(b"\r\n..", s, e) >= 0 for s, e in windows)
    if bare and not normalize:
        return DataResult(None, len(data), "bare_eol", reserved)
    # A line that starts with one dot is rewritten to itself (only CRLF.. loses a dot): the
    # same bytes, one copy more.
    if bare or dot_lines or data.startswith(b"."):
        pieces = []
        for s, e in windows:
            p = data[s:e]
            if s == 0 and p.startswith(b"."):
                p = p[1:]
            p = p.replace(b"\r\n..", b"\r\n.")
            pieces.append(normalize_line_endings(p) if bare else p)
        data = pieces[0] if len(pieces) == 1 else b"".join(pieces)
        del pieces
        windows = _windows(data, SLICE) if len(data) > SLICE else [(0, len(data))]
    if any(has_long_line(data, max_line, s, e) for s, e in windows):
        return DataResult(None, len(data), "line_too_long", reserved)
    return DataResult(data, len(data), reserved=reserved)
