"""The parsed, read-only view of one message that every check reads.

The message is parsed once, with the fast `compat32` policy; everything derived from it (decoded
headers, text parts, the HTML tree, links, attachments) is computed on first use and cached, so
a policy whose checks never look at HTML never pays for an HTML parse. Checks must treat the
view as immutable.

Hostile input is the norm here: every accessor degrades to an empty or partial answer instead
of raising, and what could not be looked at is listed in `problems` (the `message.unparseable`
rule reports it), so a check can always judge and nobody is fooled by a partial view.
"""

from __future__ import annotations

import copy
import re
import unicodedata
from dataclasses import dataclass, field
from email import feedparser as _feedparser
from email.message import Message as EmailMessage
from email.parser import BytesHeaderParser, BytesParser
from email.policy import compat32
from email.policy import default as _default_policy
from typing import TYPE_CHECKING, Any, Callable, Hashable, TypeVar

from proxy.message.elide import Elided, skeleton
from proxy.message.decode import MAX_HEADER_CHARS, decode_header, decode_text, header_text, part_charset, part_names, payload_bytes
from proxy.message.htmlview import HtmlView, Link
from proxy.message.lazy import cached_property
from proxy.message.parts import Part

if TYPE_CHECKING:
    from proxy.message.linktable import LinkTable

__all__ = ["Attachment", "HtmlView", "Link", "Message", "decode_header"]

T = TypeVar("T")

# Bounds that keep one hostile message from costing unbounded time or memory.
MAX_PARTS = 500
MAX_DEPTH = 20
MAX_HTML_BYTES = 1_000_000  # Gmail clips HTML past 102 KB; no honest newsletter nears this
MAX_TEXT_CHARS = 2_000_000
# The stdlib parser's cost grows with the square of multipart nesting (100 levels: 0.2 s);
# honest messages have a handful of multipart containers.
MAX_MULTIPARTS = 50
# The stdlib address parser is superlinear: 4 KB of addresses take about 0.1 s, a 1 MB From
# 44 s of event loop. Longer address headers (no real From comes near) count as unparseable.
MAX_ADDRESS_HEADER = 4096
_HEADER_FACTORY = _default_policy.header_factory
# One address in a common, unambiguous shape: atoms-only or simply quoted display name (no
# encoded words, escapes, comments or groups), dot-atom local part and domain.
_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_SIMPLE_ADDRESS = re.compile(
    rf"""\s*(?:(?:"(?P<quoted>[ !#-\[\]-~]*)"|(?P<name>{_ATOM}(?:[ \t]+{_ATOM})*))?[ \t]*"""
    rf"""<(?P<addr>{_ATOM}(?:\.{_ATOM})*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+)>"""
    rf"""|(?P<bare>{_ATOM}(?:\.{_ATOM})*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+))\s*\Z"""
)
# MIME defects after which the body cannot be split into its parts: what a reader's client
# shows is unknowable, so the message cannot be judged on its content.
_STRUCTURAL_DEFECTS = frozenset({
    "NoBoundaryInMultipartDefect",
    "StartBoundaryNotFoundDefect",
    "MultipartInvariantViolationDefect",
    "MultipartConversionError",
})


@dataclass(frozen=True, slots=True)
class Attachment:
    """A non-body MIME part: what it claims to be, and its decoded bytes.

    `names` holds every name the part gives itself (Content-Disposition filename and
    Content-Type name, RFC 2231 and RFC 2047 decoded): a client may show either."""

    filename: str
    content_type: str
    payload: bytes
    names: tuple[str, ...] = ()

    @property
    def size(self) -> int:
        return len(self.payload)


class _TrailingNewline:
    """The stdlib parser's NLCRE_eol, `(\\r\\n|\\r|\\n)\\Z`, answered by looking at the end of the
    text: the regex is searched from the start, so every MIME part's whole payload was scanned
    to find the newline that ends it (4 % of the relay's time on a 30 KB newsletter)."""

    class _Match:
        __slots__ = ("_eol",)

        def __init__(self, eol: str) -> None:
            self._eol = eol

        def group(self, index: int = 0) -> str:
            return self._eol

    pattern = _feedparser.NLCRE_eol.pattern  # type: ignore[attr-defined]
    _CRLF, _CR, _LF = _Match("\r\n"), _Match("\r"), _Match("\n")

    def search(self, text: str) -> "_TrailingNewline._Match | None":
        if text.endswith("\n"):
            return self._CRLF if text.endswith("\r\n") else self._LF
        return self._CR if text.endswith("\r") else None


# the stdlib as we know it (3.11-3.13): a private pattern of email.feedparser
if _feedparser.NLCRE_eol.pattern == r"(\r\n|\r|\n)\Z":  # type: ignore[attr-defined]
    _feedparser.NLCRE_eol = _TrailingNewline()  # type: ignore[attr-defined]


class _TooManyParts(Exception):
    pass


def _part_counter() -> Any:
    """A message factory for the stdlib parser that stops it at part MAX_PARTS + 1: the limit
    acts while parsing (150,000 empty parts once took the parser 2 s before the limit was
    applied to what it had built)."""
    made = -1  # the parser calls its factory once at start, to see what it takes

    def factory(policy: Any = compat32) -> EmailMessage:
        nonlocal made
        made += 1
        if made > MAX_PARTS:
            raise _TooManyParts()
        return Part(policy=policy)

    return factory


def _containers(raw: bytes) -> int:
    """How many times `raw` names a multipart type (any case), a window at a time: no copy of
    a big message in one piece."""
    pattern, width = b"multipart/", 256 * 1024
    return sum(raw[i:i + width + len(pattern) - 1].lower().count(pattern) for i in range(0, len(raw), width))


def _parse(raw: bytes) -> tuple[EmailMessage, str, Elided | None]:
    """Parse the whole message (the parser is given its skeleton, proxy/message/elide.py, and
    how to read the elided runs back comes with it); when the body defeats the parser (absurd
    nesting blows the recursion limit), fall back to the headers alone and say why."""
    source, elided = skeleton(raw)
    msg, problem = _parse_source(source, raw)
    return msg, problem, elided


def _parse_source(source: bytes, raw: bytes) -> tuple[EmailMessage, str]:
    # Every multipart container but the outermost begins after a boundary line ("--..."), so
    # a message with few of those cannot nest deeply: the full count (over the message itself,
    # whose elided runs may name types too) is only taken when there are many. A skeleton
    # keeps every line that begins with "--".
    containers = 0 if source.count(b"\n--") < MAX_MULTIPARTS else _containers(raw)
    if containers > MAX_MULTIPARTS:
        problem = f"more than {MAX_MULTIPARTS} multipart containers ({containers})"
        try:
            return BytesHeaderParser(policy=compat32).parsebytes(source), problem
        except Exception:
            return EmailMessage(policy=compat32), problem
    try:
        return BytesParser(_class=_part_counter(), policy=compat32).parsebytes(source), ""
    except _TooManyParts:
        problem = f"more than {MAX_PARTS} MIME parts"
    except (RecursionError, MemoryError) as exc:
        problem = f"the MIME structure could not be parsed ({type(exc).__name__})"
    except Exception as exc:
        problem = f"the message could not be parsed ({type(exc).__name__})"
    try:
        return BytesHeaderParser(policy=compat32).parsebytes(source), problem
    except Exception:
        return EmailMessage(policy=compat32), problem


# Besides the MIME headers, the headers a cached view reads; prepending one would change it.
_VIEWED_HEADERS = frozenset({"mime-version", "subject", "from"})
# What a view with headers prepended does not take over from the view it came from: its own
# fields, `problems` (it measures every header), the index of headers by name and the memo of
# outside code (which may have read any header). Every other cached view is carried over.
_NOT_CARRIED = frozenset({"raw", "_msg", "parse_problem", "problems", "_memo", "_elided", "_by_name"})


@dataclass(frozen=True)
class Message:
    """A received message: the exact bytes, and lazily derived views of them."""

    raw: bytes
    _msg: EmailMessage = field(repr=False, compare=False)
    parse_problem: str = field(default="", compare=False)
    # The long runs of inert lines the parser did not see (proxy/message/elide.py), or None.
    _elided: Elided | None = field(default=None, repr=False, compare=False)

    @classmethod
    def from_bytes(cls, raw: bytes) -> "Message":
        msg, problem, elided = _parse(raw)
        return cls(raw=raw, _msg=msg, parse_problem=problem, _elided=elided)

    def _payload(self, part: EmailMessage, limit: int | None = None) -> bytes:
        """A leaf part's decoded bytes (decode.payload_bytes), elided runs put back; `limit`:
        only that many octets are needed."""
        if self._elided is None:
            return payload_bytes(part)
        return self._elided.payload_bytes(part, self.raw, limit)

    def with_headers_prepended(self, block: bytes) -> "Message":
        """This message with the header lines of `block` (complete lines, CRLF-terminated)
        in front, as the relay prepends List-Unsubscribe: the message is not parsed again.
        Only `block` is parsed; its headers go in front of the parsed ones, and the views of
        the body (parts, text, HTML, links, attachments), built already or not, are shared.
        Headers that the views read (Content-*, MIME-Version, Subject, From) cannot be
        prepended: what they would change only a new parse could show."""
        head = BytesHeaderParser(policy=compat32).parsebytes(block)
        names = [name.lower() for name in head.keys()]
        if not block.endswith(b"\n") or head.get_payload() or head.defects or not names:
            raise ValueError("not a block of complete header lines")
        if any(n.startswith("content-") or n in _VIEWED_HEADERS for n in names):
            raise ValueError("a header the views read cannot be prepended without a new parse")
        msg = copy.copy(self._msg)
        # The stdlib has no public way to put a header in front; its header list is the
        # attribute `_headers` (the same in every Python 3), set on the copy only.
        vars(msg)["_headers"] = [*vars(head)["_headers"], *vars(self._msg)["_headers"]]
        # The elided runs (a big message's) are spans of `raw`: they move by the block's length.
        elided = self._elided.shifted(len(block)) if self._elided is not None else None
        out = Message(raw=block + self.raw, _msg=msg, parse_problem=self.parse_problem, _elided=elided)
        out.__dict__.update({k: v for k, v in self.__dict__.items() if k not in _NOT_CARRIED})
        return out

    def memo(self, key: Hashable, compute: Callable[[], T]) -> T:
        """A value derived from this message by code outside it (a check's finder that the
        relay asks again after relaying), computed once per message and key."""
        memo = self.__dict__.setdefault("_memo", {})
        if key not in memo:
            memo[key] = compute()
        return memo[key]  # type: ignore[no-any-return]

    # -- headers -----------------------------------------------------------------------------

    @cached_property
    def _by_name(self) -> dict[str, list[Any]]:
        """Every header's values as the stdlib's get_all hands them back, by lower-case name:
        the checks ask for a dozen names, and get_all walks every header for each."""
        index: dict[str, list[Any]] = {}
        policy = self._msg.policy
        fetch = policy.header_fetch_parse
        # compat32 hands back a str value as it is unless it holds surrogates (undecodable
        # bytes), which an ASCII one cannot: asked only of the others (str.isascii is a flag
        # read; the stdlib's test encodes the value).
        plain = policy is compat32
        for name, value in self._msg.raw_items():
            index.setdefault(name.lower(), []).append(
                value if plain and type(value) is str and value.isascii() else fetch(name, value))
        return index

    def _all(self, name: str) -> list[Any]:
        return self._by_name.get(name.lower(), [])

    def header(self, name: str) -> str | None:
        """The first value of a header, decoded, or None when absent."""
        values = self._all(name)
        return decode_header(values[0]) if values else None

    def headers(self, name: str) -> list[str]:
        """Every value of a header, decoded, in order."""
        return [decode_header(v) for v in self._all(name)]

    def raw_headers(self, name: str) -> list[str]:
        """Every value of a header exactly as sent (unfolded only), for strict parsers."""
        return [header_text(v) for v in self._all(name)]

    def items(self) -> list[tuple[str, str]]:
        """Every header as (name, value as sent, unfolded only), in order."""
        return [(name, str(value)) for name, value in self._msg.items()]

    def count(self, name: str) -> int:
        return len(self._all(name))

    @cached_property
    def subject(self) -> str:
        return self.header("Subject") or ""

    def addresses(self, name: str) -> list[tuple[str, str]]:
        """(display name, addr-spec) pairs of every address in the header `name`, parsed with
        the stdlib's RFC 5322 parser; an unparseable group yields an empty address.

        The full parser costs about half a millisecond a header; the common shapes (`a@b`,
        `Name <a@b>`, `"Name" <a@b>` with plain ASCII names) are read by one regex that gives
        the same answer, and everything else goes to the parser."""
        out: list[tuple[str, str]] = []
        for value in self.raw_headers(name):
            if len(value) > MAX_ADDRESS_HEADER:
                out.append(("", ""))
                continue
            simple = None if "=?" in value else _SIMPLE_ADDRESS.match(value)
            if simple is not None:
                display = simple.group("quoted") or simple.group("name") or ""
                out.append((" ".join(display.split()), simple.group("addr") or simple.group("bare")))
                continue
            try:
                parsed = _HEADER_FACTORY(name, value)
                addrs = parsed.addresses
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
    def from_domain(self) -> str:
        """The domain of the (first) From address, lower case, or ""."""
        for _, addr in self.from_addresses:
            if "@" in addr:
                return addr.rpartition("@")[2].lower()
        return ""

    @cached_property
    def defects(self) -> tuple[str, ...]:
        found: list[str] = []
        for part in self._tree[0]:
            found.extend(type(d).__name__ for d in getattr(part, "defects", ()))
        return tuple(found)

    @cached_property
    def problems(self) -> tuple[str, ...]:
        """Why this view is not the whole message: what a check could not see. Empty for
        every ordinary message."""
        out = [self.parse_problem] if self.parse_problem else []
        if any(len(value) > MAX_HEADER_CHARS for _, value in self._msg.raw_items()):
            out.append(f"a header longer than {MAX_HEADER_CHARS} characters (decoded only that far)")
        if self._tree[1]:
            out.append(self._tree[1])
        broken = sorted(_STRUCTURAL_DEFECTS.intersection(self.defects))
        if broken:
            out.append("broken MIME structure: " + ", ".join(broken))
        if self._bodies[3]:
            out.append(self._bodies[3])
        if self.html and self.html_view.problem:
            out.append(self.html_view.problem)
        return tuple(out)

    # -- body --------------------------------------------------------------------------------

    @cached_property
    def _tree(self) -> tuple[tuple[EmailMessage, ...], str]:
        """Every MIME part in document order, bounded in parts and depth against hostile
        nesting; and what the bounds cut off ("" when nothing)."""
        parts: list[EmailMessage] = []
        stack: list[tuple[EmailMessage, int]] = [(self._msg, 0)]
        problem = ""
        while stack:
            if len(parts) >= MAX_PARTS:
                problem = f"more than {MAX_PARTS} MIME parts"
                break
            part, depth = stack.pop()
            parts.append(part)
            if part.is_multipart():
                payload = part.get_payload()
                if not isinstance(payload, list):
                    continue
                if depth >= MAX_DEPTH:
                    problem = f"MIME parts nested deeper than {MAX_DEPTH}"
                    continue
                stack.extend((p, depth + 1) for p in reversed(payload) if isinstance(p, EmailMessage))
        return tuple(parts), problem

    @cached_property
    def _bodies(self) -> tuple[list[EmailMessage], list[EmailMessage], list[EmailMessage], str]:
        """Split leaves into text/plain bodies, text/html bodies and attachments (every other
        leaf, text/javascript and text/x-shellscript included: what it is gets inspected)."""
        texts: list[EmailMessage] = []
        htmls: list[EmailMessage] = []
        attachments: list[EmailMessage] = []
        problem = ""
        for part in self._tree[0]:
            if part.is_multipart():
                continue
            ctype = part.get_content_type()
            disposition = str(part.get("Content-Disposition") or "").split(";")[0].strip().lower()
            if disposition == "attachment" or (part_names(part) and disposition != "inline"):
                attachments.append(part)
            elif ctype == "text/plain":
                texts.append(part)
            elif ctype == "text/html":
                htmls.append(part)
            elif ctype == "message/rfc822" or ctype.startswith("multipart/"):
                # A multipart that did not parse as one, or an embedded message the parser
                # left as text: its content is out of sight.
                if not isinstance(part.get_payload(), list) and ctype.startswith("multipart/"):
                    problem = f"a {ctype} part whose parts could not be read"
            else:
                attachments.append(part)
        return texts, htmls, attachments, problem

    @cached_property
    def text(self) -> str:
        """The decoded text/plain bodies, joined."""
        return "\n".join(decode_text(self._payload(p, MAX_TEXT_CHARS * 4), part_charset(p), MAX_TEXT_CHARS)
                         for p in self._bodies[0])[:MAX_TEXT_CHARS]

    @cached_property
    def html(self) -> str:
        """The decoded text/html bodies, joined (empty when there are none)."""
        return "\n".join(decode_text(self._payload(p, MAX_HTML_BYTES * 4), part_charset(p), MAX_HTML_BYTES)
                         for p in self._bodies[1])[:MAX_HTML_BYTES]

    @cached_property
    def html_view(self) -> HtmlView:
        from proxy.message.html import extract

        view = extract(self.html)
        if len(self.html) >= MAX_HTML_BYTES and not view.problem:
            from dataclasses import replace

            view = replace(view, problem=f"HTML body larger than {MAX_HTML_BYTES} characters, only the start was read")
        return view

    @cached_property
    def visible_text(self) -> str:
        """What a reader sees: the text part and the HTML's visible text."""
        return "\n".join(t for t in (self.text, self.html_view.visible_text) if t)

    @cached_property
    def folded_text(self) -> str:
        """Subject and visible text in lower case with whitespace collapsed: what the word
        lists (proxy.message.patterns) scan, computed once for all of them."""
        return self._folded[0]

    @cached_property
    def folded_words(self) -> frozenset[str]:
        """The distinct words of `folded_text`: the word lists' literal prefilter."""
        return self._folded[1]

    @cached_property
    def unmasked_text(self) -> tuple[str, ...]:
        """The passages of `folded_text` that read differently once cheap disguises are taken
        off (`v1agra`, `c-a-s-i-n-o`, a Cyrillic а, a soft hyphen: proxy.message.unmask), read
        so; empty for ordinary messages. Computed once, for every list that scans."""
        from proxy.message.unmask import unmasked

        return unmasked(self.folded_text, self._folded[2])

    @cached_property
    def _folded(self) -> tuple[str, frozenset[str], set[str]]:
        from proxy.message.patterns import APOSTROPHE, words_of

        # The HTML's visible text has its whitespace collapsed already (single spaces, none
        # at the ends) and its distinct tokens known: lower-cased here, not split again (the
        # longest text). Lower-casing the tokens joined gives the tokens of the lower-cased text:
        # str.lower never makes or takes whitespace, and its one context rule (final sigma)
        # does not look past whitespace.
        plain = (self.subject + "\n" + self.text).lower().split()
        view = self.html_view
        text = " ".join(t for t in (" ".join(plain), view.visible_text.lower()) if t)
        tokens = {*plain, *" ".join(view.tokens).lower().split()}
        if APOSTROPHE in text:  # as patterns.normalise writes it
            text = text.replace(APOSTROPHE, "'")
            tokens = {t.replace(APOSTROPHE, "'") for t in tokens}
        if not text.isascii() and not unicodedata.is_normalized("NFC", text):
            # Accents written as combining marks (e + U+0301) read as the letters the lists hold.
            text = unicodedata.normalize("NFC", text)
            tokens = {unicodedata.normalize("NFC", t) for t in tokens}
        return text, words_of(tokens), tokens

    @cached_property
    def attachments(self) -> tuple[Attachment, ...]:
        out = []
        for part in self._bodies[2]:
            names = part_names(part)
            out.append(Attachment(names[0] if names else "", part.get_content_type(), self._payload(part), names))
        return tuple(out)

    @cached_property
    def links(self) -> tuple[Link, ...]:
        """Every link in the HTML anchors, then every URL in the text part."""
        from proxy.message.html import text_links

        return self.html_view.anchors + text_links(self.text)

    @cached_property
    def distinct_links(self) -> tuple[Link, ...]:
        """`links` with each (href, text, source) once, in order: what the link checks go through."""
        return tuple(dict.fromkeys(self.links))

    @cached_property
    def link_table(self) -> LinkTable:
        """`distinct_links` as every link check reads them: schemes, hosts and URL words found
        for all links at once (proxy/message/linktable.py)."""
        from proxy.message.linktable import LinkTable

        return LinkTable(self.distinct_links)
