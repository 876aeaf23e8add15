"""A message's distinct links read once for every link check (Message.link_table).

A newsletter has a hundred links or more, nearly all of them plain `https://` links to one or
two hosts. What the link checks ask of each link (its scheme and host, whether a word stands
in its URL) is answered here for all links at once, in C-level passes over the hrefs joined
into one string, so that a check's own Python code runs once per distinct host or text, and
per link only where a link may matter (proxy/policy/checks/links.py, unsubscribe.py, and
proxy/policy/families/privacy.py use it that way).
"""

from __future__ import annotations

import re
from typing import AbstractSet, Callable, Collection, Sequence

from proxy.message.htmlview import Link
from proxy.message.lazy import cached_property
from proxy.message.urls import PLAIN_HOST

__all__ = ["LinkTable"]

# Per href (each after a newline): the scheme and the authority (what stands between "://"
# and the path) when the href is an http(s) URL, else nothing. One C-level pass; the few
# distinct authorities are then read by _PLAIN_AUTHORITY.
_AUTHORITIES = re.compile(r"\n([hH][tT][tT][pP][sS]?://[^/?#\n]*)?")
# The authority of a plain http(s) link, the one shape urls.scheme_and_host reads without
# parsing (its host pattern; here the scheme is spelled out letter by letter, where re.I would
# also take U+017F for "s": such a link is not plain here and goes the long way).
_PLAIN_AUTHORITY = re.compile(rf"({PLAIN_HOST})\.?(?::[0-9]{{1,5}})?")
_WEB = ("https://", "http://")



def _positions_of(items: Sequence[str], wanted: Collection[str]) -> list[int]:
    """Every position in `items` of each value of `wanted`, value after value: found by
    `index` scans, in C, which beat a Python pass over the items when few values are asked."""
    found: list[int] = []
    for value in wanted:
        try:
            i = items.index(value)
            while True:
                found.append(i)
                i = items.index(value, i + 1)
        except ValueError:
            pass
    return found

class LinkTable:
    """The distinct links of a message (`Message.distinct_links`) and what every link check
    reads of them. Pure and immutable once built; its views are computed on first use."""

    def __init__(self, links: tuple[Link, ...]) -> None:
        self.links = links
        hrefs, texts, _ = zip(*links, strict=True) if links else ((), (), ())  # the columns, in C
        self.hrefs: tuple[str, ...] = hrefs
        self.texts: tuple[str, ...] = texts

    @cached_property
    def _authorities(self) -> list[str]:
        """Per link, its scheme and authority ("https://host:port") when it is an http(s) URL,
        else ""."""
        found: list[str] = _AUTHORITIES.findall("\n" + "\n".join(self.hrefs))
        if len(found) != len(self.hrefs):  # an href holds a newline: none of its own counts
            found = [_AUTHORITIES.findall("\n" + h)[0] if "\n" not in h else "" for h in self.hrefs]
        return found

    @cached_property
    def _plain(self) -> dict[str, tuple[str, str]]:
        """Scheme and authority → (scheme, host) as written for a plain http(s) link, for which
        urls.scheme_and_host gives them in lower case; → ("", "") for every other link."""
        out = {}
        for key in set(self._authorities):
            scheme, _, authority = key.partition("://")
            m = _PLAIN_AUTHORITY.fullmatch(authority) if key else None
            out[key] = (scheme, m.group(1)) if m else ("", "")
        return out

    @cached_property
    def kinds(self) -> frozenset[tuple[str, str]]:
        """The distinct (scheme, host) pairs of the links, as written, for plain http(s) links;
        ("", "") stands for all the others. A handful, however many links."""
        return frozenset(self._plain.values())

    def where(self, pairs: frozenset[tuple[str, str]] | set[tuple[str, str]]) -> list[int]:
        """The positions of the links whose (scheme, host) pair is one of `pairs`."""
        keys = [key for key, pair in self._plain.items() if pair in pairs]
        found = _positions_of(self._authorities, keys)  # the pairs asked for are the rare ones
        return sorted(found) if len(keys) > 1 else found

    @cached_property
    def _others(self) -> list[int]:
        """The positions of the links that are not plain http(s) ones."""
        return self.where({("", "")})

    def plain_and(self, keep: Callable[[str], bool]) -> Sequence[int]:
        """The positions of the plain http(s) links and of the other links whose href `keep`
        accepts: `keep` runs on the few others only."""
        hrefs = self.hrefs
        dropped = {i for i in self._others if not keep(hrefs[i])}
        if not dropped:
            return range(len(hrefs))
        return [i for i in range(len(hrefs)) if i not in dropped]

    @cached_property
    def web(self) -> Sequence[int]:
        """The positions of the links whose href starts with http:// or https:// (any case)."""
        return self.plain_and(lambda href: href[:8].lower().startswith(_WEB))

    @cached_property
    def _lowered(self) -> str | None:
        """The hrefs lower-cased and joined by NUL; None when an href holds a NUL itself."""
        joined = "\x00".join(self.hrefs).lower()
        return joined if joined.count("\x00") == len(self.hrefs) - 1 else None

    def containing(self, words: Collection[str]) -> set[int]:
        """The positions of the links whose lower-cased href contains one of `words` (lower
        case, no NUL): one search per word over all the hrefs, not one per word and link."""
        joined = self._lowered
        if "" in words:
            return set(range(len(self.hrefs)))
        if joined is None:
            hrefs = [h.lower() for h in self.hrefs]
            return {i for i, h in enumerate(hrefs) if any(w in h for w in words)}
        hit: set[int] = set()
        for word in words:
            i = joined.find(word)
            while i >= 0:  # rare: a word stands in a few hrefs at most
                hit.add(joined.count("\x00", 0, i))
                end = joined.find("\x00", i)
                i = joined.find(word, end) if end >= 0 else -1
        return hit

    @cached_property
    def distinct_texts(self) -> frozenset[str]:
        """The distinct link texts: a newsletter's hundred links have a handful."""
        return frozenset(self.texts)

    def texts_at(self, positions: Sequence[int]) -> AbstractSet[str]:
        """The distinct link texts at these positions."""
        if len(positions) == len(self.texts):
            return self.distinct_texts
        texts = self.texts
        return {texts[i] for i in positions}

    def with_texts(self, wanted: Collection[str]) -> list[int]:
        """The positions of the links whose text is one of `wanted` (distinct texts), in order:
        tuple.index scans in C, for the few texts asked about."""
        return sorted(_positions_of(self.texts, wanted))
