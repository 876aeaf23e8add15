"""A held message as a reviewer reads it: headers, the body as plain text, its links and its
attachments, with recipient addresses masked.

beautifulsoup4 renders the HTML here, where its convenience matters and speed does not (the
inline path uses lxml.html directly, proxy/message/html.py). Masking covers the envelope
recipients wherever they appear (headers, body, links, also percent-encoded in URLs) and every
address in the recipient headers.
"""

from __future__ import annotations

import re
import urllib.parse
from dataclasses import dataclass
from typing import Any, Iterable, Iterator

from bs4 import BeautifulSoup, Tag
from bs4.element import NavigableString

from proxy.message.html import HIDDEN_MARK, HIDDEN_TEXT_TAG, mark_hidden, text_links
from proxy.message.mime import Message, decode_header

# Elements that start a new line, and those that also stand apart by a blank line.
_LINE = frozenset({
    "address", "article", "aside", "br", "dd", "div", "dt", "figcaption", "footer", "form", "header",
    "li", "main", "nav", "section", "tr",
})
_PARAGRAPH = frozenset({"blockquote", "dl", "fieldset", "figure", "h1", "h2", "h3", "h4", "h5", "h6", "hr", "ol", "p",
                        "pre", "table", "ul"})
_SKIP = frozenset({"script", "style", "head", "title", "template", "noscript"})
_RECIPIENT_HEADERS = frozenset({"to", "cc", "bcc", "delivered-to", "x-original-to", "resent-to", "resent-cc", "envelope-to"})
_ADDRESS = re.compile(r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?")
MAX_BODY_CHARS = 200_000
# The view is total: whatever the HTML, it is rendered from at most MAX_HTML_CHARS of it (parse
# time and memory stay bounded; 100,000 nested <div> once crashed the recursive walk), at most
# MAX_BODY_CHARS of text and MAX_LINKS links come out, and the walk keeps its own stack.
MAX_HTML_CHARS = 300_000  # bs4 builds about 30,000 tags a second here; newsletters are < 100 KB
MAX_LINKS = 1_000


def mask_address(address: str) -> str:
    """reader@example.org → r***@example.org: enough to tell recipients apart by domain."""
    local, at, domain = address.rpartition("@")
    if not at:
        return "***"
    return f"{local[:1]}***@{domain}"


class Masker:
    """Replaces the given addresses (and, in recipient headers, any address) with masks."""

    def __init__(self, addresses: Iterable[str], enabled: bool = True) -> None:
        self.enabled = enabled
        forms: dict[str, str] = {}
        for addr in addresses:
            if addr and "@" in addr:
                addr = addr.lower()
                forms[addr] = mask_address(addr)
                forms[urllib.parse.quote(addr, safe="")] = urllib.parse.quote(mask_address(addr), safe="")
        alternatives = sorted(forms, key=len, reverse=True)
        self._forms = forms
        self._pattern = re.compile("|".join(re.escape(a) for a in alternatives), re.I) if alternatives else None

    def __call__(self, text: str) -> str:
        if not self.enabled or self._pattern is None:
            return text
        return self._pattern.sub(lambda m: self._forms[m.group(0).lower()], text)

    def header(self, name: str, value: str) -> str:
        if self.enabled and name.lower() in _RECIPIENT_HEADERS:
            return _ADDRESS.sub(lambda m: mask_address(m.group(0)), value)
        return self(value)


@dataclass(frozen=True)
class Readable:
    headers: list[tuple[str, str]]
    body_kind: str  # "html", "text" or "none"
    body: str
    links: list[tuple[str, str]]  # (text, href)
    attachments: list[tuple[str, str, int]]  # (filename, content type, size)
    has_text_alternative: bool


def _gap(name: str) -> int:
    return 2 if name in _PARAGRAPH else 1 if name in _LINE else 0


def _clipped_text(tag: Tag, limit: int = 500) -> str:
    """A link's text, at most `limit` characters of it (an anchor may wrap the whole body)."""
    parts: list[str] = []
    n = 0
    for piece in tag.strings:
        parts.append(piece)
        n += len(piece)
        if n >= limit:
            break
    return " ".join(parts)[:limit]


def _hidden(tag: Tag) -> str:
    """What a hidden element says, with the targets of its links: "[hidden: text (href)]"."""
    words = " ".join(tag.get_text(" ").split())
    hrefs = [str(a["href"]).strip() for a in ([tag] if tag.name == "a" else []) + tag.find_all("a") if a.get("href")]
    inside = " ".join([words] + [f"({h})" for h in hrefs]).strip()
    return f"[hidden: {inside}]" if inside else ""


def html_to_text(html: str) -> tuple[str, list[tuple[str, str]]]:
    """Readable text of an HTML body, links numbered as [n], and the list of those links. What
    a reader of the message would not see (proxy/message/html.py judges it, the style sheet
    applied) is shown as "[hidden: ...]", its links not numbered."""
    soup = BeautifulSoup(mark_hidden(html[:MAX_HTML_CHARS]), "lxml")
    links: list[tuple[str, str]] = []
    out: list[str] = []
    pending = 0  # newlines owed before the next text: blocks ask, text pays, never more than two
    size = 0

    def emit(text: str) -> None:
        nonlocal pending, size
        if not text.strip():
            if not pending and out and not out[-1].endswith(" "):
                out.append(" ")
            return
        if out and pending:
            out.append("\n" * pending)
        pending = 0
        out.append(text)
        size += len(text)

    def enter(tag: Tag) -> None:
        nonlocal pending
        pending = max(pending, _gap(tag.name))
        if tag.name == "li":
            emit("* ")
        if tag.name == "img" and tag.get("alt"):
            emit(f"[image: {tag['alt']}]")

    def leave(tag: Tag) -> None:
        nonlocal pending
        if tag.name == "a" and tag.get("href") and len(links) < MAX_LINKS:
            links.append((" ".join(_clipped_text(tag).split()), str(tag["href"]).strip()))
            emit(f" [{len(links)}]")
        elif tag.name in ("td", "th"):
            emit("  ")
        pending = max(pending, _gap(tag.name))

    # Depth-first with an explicit stack (no recursion, whatever the nesting).
    open_tags: list[Tag] = []
    stack: list[Iterator[Any]] = [iter(soup.children)]
    while stack and size < MAX_BODY_CHARS:
        child = next(stack[-1], None)
        if child is None:
            stack.pop()
            if open_tags:
                leave(open_tags.pop())
            continue
        if isinstance(child, NavigableString):
            if type(child) is NavigableString:  # not comments, CDATA, doctype
                emit(re.sub(r"\s+", " ", str(child)))
            continue
        if not isinstance(child, Tag) or child.name in _SKIP:
            continue
        if child.name == HIDDEN_TEXT_TAG or child.get(HIDDEN_MARK) is not None:
            emit(" " + _hidden(child) + " ")
            continue
        enter(child)
        open_tags.append(child)
        stack.append(iter(child.children))
    lines = [" ".join(line.split()) for line in "".join(out).split("\n")]
    if len(html) > MAX_HTML_CHARS or stack:
        lines.append(f"\n[the review view ends here: it renders at most {MAX_HTML_CHARS:,} characters of HTML and "
                     f"{MAX_BODY_CHARS:,} of text; --raw shows the whole message]")
    return "\n".join(lines).strip(), links


def readable(raw: bytes, masker: Masker, prefer: str = "html") -> Readable:
    """The reviewer's view of a stored message. `prefer` = "text" shows the text/plain part
    where the message has both."""
    msg = Message.from_bytes(raw)
    headers = [(name, masker.header(name, decode_header(value))) for name, value in msg.items()]
    html, text = msg.html, msg.text
    if html.strip() and not (prefer == "text" and text.strip()):
        kind = "html"
        body, links = html_to_text(html)
    elif text.strip():
        kind = "text"
        body, links = text, [("", link.href) for link in text_links(text)[:MAX_LINKS]]
    else:
        kind, body, links = "none", "", []
    return Readable(
        headers=headers,
        body_kind=kind,
        body=masker(body[:MAX_BODY_CHARS]),
        links=[(masker(t), masker(h)) for t, h in links],
        attachments=[(masker(a.filename), a.content_type, a.size) for a in msg.attachments],
        has_text_alternative=kind == "html" and bool(text.strip()),
    )


__all__ = ["Masker", "Readable", "html_to_text", "mask_address", "readable"]
