"""Where in a message the stdlib MIME parser can decide nothing: the runs of body lines that
proxy/message/elide.py may hand it as one marker line, at any size of message.

The parser (email.feedparser, compat32) takes a decision at a line in four places only: in a
header block (headerRE: "From ", a leading blank, or a colon after printable characters; the
first other line ends the block, a blank one consumed, any other one read again as body), at a
line that begins with "--" (every boundary the parser waits for, of any enclosing multipart,
starts so), at a blank line inside message/delivery-status (blocks of headers, one per
paragraph), and at the first line of a message/* body (a nested header block). Everywhere
else it appends the line to the payload, preamble or epilogue it is collecting, whatever the
line holds. Lines are what the parser splits: CRLF, bare CR or bare LF (StringIO with
newline="": not VT, FF, FS, GS or RS since Python 3.5; messages holding one of those are left
to elide.py's context-free scan all the same, in case a parser splits there).

So the message is read as zones and runs. A zone (where a header block may be) starts at the
first line and after every line that begins with "--", and goes on over header-like and blank
lines: it holds every line the parser can read as a header, and more (a blank line keeps the
zone open since a message/* body starts with headers). The first other line ends it, and from
there to the next line that begins with "--" is a run: the parser reads the run's first line
as body (or as the non-header line that ends a header block, a marker line does the same) and
every line after it as body, so a marker line in the run's place leads it to the same parts,
headers and defects. Blank lines in a run would matter inside message/delivery-status only:
when a zone names that type (its header must sit in one), there are no runs.
"""

from __future__ import annotations

import re

__all__ = ["MAX_DASH_LINES", "MAX_ZONE", "body_runs"]

# The lines of a possible header block: header-like (the stdlib's headerRE) or blank, each
# ended as the parser ends lines (the last one maybe not at all).
_ZONE = re.compile(rb"(?:(?:From |[\x21-\x39\x3b-\x7e]*:|[\t ])[^\r\n]*(?:\r\n|\r|\n|\Z)|\r\n|\r|\n)*")
# "--" at the start of a line, after LF or a bare CR (a CR before "-" is never half a CRLF):
# the literal first keeps the search on sre's fast literal scan.
_DASHES = re.compile(rb"--(?<=[\r\n]--)")
_ODD = (b"\x0b", b"\x0c", b"\x1c", b"\x1d", b"\x1e")
_WINDOW = 256 * 1024  # searched a window at a time: no long C call holds the GIL
_PROBES = 4
# Honest messages have a few boundary lines and header blocks of a few KB; past these bounds
# (hostile shapes: a million "--" lines, megabytes of header) the search would cost more than
# the parse it spares, and the message is left to the parser whole.
MAX_DASH_LINES = 200
MAX_ZONE = 64 * 1024


def _dash_line(raw: bytes, pos: int) -> int:
    """Where the first line at or after `pos` (a line start) that begins with "--" begins;
    len(raw) when none does."""
    if raw.startswith(b"--", pos):
        return pos
    # Most bodies hold few "-": jump from one to the next (memchr, a few microseconds for
    # 30 KB); CSS-heavy HTML holds hundreds, and the regex scan takes over.
    at = raw.find(b"-", pos)
    for _ in range(_PROBES):
        if at < 0:
            return len(raw)
        if raw.startswith(b"--", at) and raw[at - 1] in (10, 13):  # at > pos: no "--" at pos
            return at
        at = raw.find(b"-", at + 1)
    if at < 0:
        return len(raw)
    for start in range(at, len(raw), _WINDOW):
        # one octet past the window: a "--" across its end is found in it
        found = _DASHES.search(raw, start, start + _WINDOW + 1)
        if found is not None:
            return found.start()
    return len(raw)


def _line_end(raw: bytes, at: int) -> int:
    """Where the next line begins after the line that begins at `at` (the parser's lines end
    with CRLF, LF or a bare CR); len(raw) for the last line."""
    lf = raw.find(b"\n", at)
    cr = raw.find(b"\r", at, len(raw) if lf < 0 else lf)
    if cr >= 0 and cr + 1 != lf:
        return cr + 1
    return len(raw) if lf < 0 else lf + 1


def body_runs(raw: bytes) -> list[tuple[int, int]] | None:
    """The (start, end) of every run of body lines of `raw` (each from a line start through a
    CRLF), in order; None when the message is not one this reading holds for (a line break
    some parser might see in VT, FF, FS, GS or RS; a zone that names delivery-status; more
    than MAX_DASH_LINES lines that begin with "--", a zone longer than MAX_ZONE)."""
    if any(c in raw for c in _ODD):
        return None
    runs: list[tuple[int, int]] = []
    pos, size, seen = 0, len(raw), 0
    while True:
        zone = _ZONE.match(raw, pos, pos + MAX_ZONE + 1)
        assert zone is not None  # the pattern matches the empty string
        if zone.end() - pos > MAX_ZONE or b"delivery-status" in raw[pos:zone.end()].lower():
            return None
        pos = zone.end()
        at = _dash_line(raw, pos)
        # The run ends with a CRLF (the marker line's own, put back from the message); a tail
        # of lines ended otherwise, before the next "--" line, stays for the parser.
        last = at - 2 if at - 2 >= pos and raw.startswith(b"\r\n", at - 2) else raw.rfind(b"\r\n", pos, at)
        if last >= pos:
            runs.append((pos, last + 2))
        if at == size:
            return runs
        seen += 1
        if seen > MAX_DASH_LINES:
            return None
        pos = _line_end(raw, at)
        if pos == size:
            return runs
