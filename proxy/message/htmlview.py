"""What the HTML view holds (HtmlView) and what a link is (Link): the data the MIME reader
(proxy/message/mime.py), the two HTML readers (proxy/message/html5.py, the relay's, and
proxy/message/html.py, which reads what may hide) and the checks share. In a module of its own
so that the readers import neither the other's nor mime.py's code."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

__all__ = ["HtmlView", "Link"]


class Link(NamedTuple):
    """One hyperlink: where it goes and what the reader sees (for a URL in plain text, the
    words on its line). A named tuple: a newsletter has a hundred links, each made, hashed
    and compared in C."""

    href: str
    text: str
    source: str  # "html" or "text"


@dataclass(frozen=True, slots=True)
class HtmlView:
    """What checks need from the HTML body, extracted in one walk of the tree."""

    anchors: tuple[Link, ...]
    visible_text: str
    password_inputs: int
    forms: int
    # (type, the input's name/id/placeholder/label in lower case) of every form field
    inputs: tuple[tuple[str, str], ...] = ()
    form_actions: tuple[str, ...] = ()
    # Why the view is partial (tree too deep, too many links, unparseable), or "" when whole.
    problem: str = ""
    # The distinct whitespace-separated tokens of visible_text (found while collapsing its
    # whitespace): the word lists' prefilter starts from them instead of splitting it again.
    tokens: frozenset[str] = frozenset()
