"""Which labels of a term set a hit can belong to, found from how the hit begins.

A hit's label is the first label whose own pattern matches the whole hit (TermSet.label_of).
The content lists have about ninety labels, a third of them with regular expressions on the
time-limited engine, which costs a microsecond a call in its clock alone: trying every label's
pattern on every hit cost more than finding the hits. A label's pattern can only match a text
that begins with one of the literal beginnings of its terms (a literal term's first word as
written; a regular expression's first words, which match case-insensitively), so the index
keeps those beginnings and hands back, in order, the labels that may match; the caller still
tries each of them with its own pattern, and a label without a known beginning is always
handed back. Case-insensitive means what the `regex` engine means by it (simple case folding in
its version 0): the characters each beginning's letters match are asked of the engine itself,
once per character, over every code point.
"""

from __future__ import annotations

import array
import re
import sys
from functools import lru_cache
from typing import Iterable, Sequence

import regex

__all__ = ["LabelIndex", "case_table"]

# What ends a term's first word (the term syntax splits words at whitespace and hyphens; a
# regex term's first word is word characters): no beginning is looked for past it in a hit.
_WORD_END = re.compile(r"[\s\-]")


def _every_character() -> str:
    """Every code point, as one string (26 ms; 4 MB, not kept)."""
    codec = "utf-32-le" if sys.byteorder == "little" else "utf-32-be"
    return array.array("I", range(sys.maxunicode + 1)).tobytes().decode(codec, "surrogatepass")


@lru_cache(maxsize=64)
def case_table(chars: frozenset[str]) -> dict[int, str] | None:
    """A str.translate table that writes every character the engine matches with one of
    `chars` under (?i) as that one of `chars`, so that a pattern character c matches a text
    character x exactly when x is written as c. None when some character is matched by two of
    `chars` (the index then does not use case-insensitive beginnings). The matching is not
    an equivalence: (?i)i matches U+0130, (?i)I does not; only `chars` are asked."""
    if not chars:
        return {}
    # The characters any of them matches (one pass over every code point), then which of them
    # each one matches.
    among = regex.compile("(?i)[" + "".join(regex.escape(c) for c in sorted(chars)) + "]", regex.VERSION0)
    universe = "".join(sorted(set(among.findall(_every_character())) | chars))
    table: dict[int, str] = {}
    for c in sorted(chars):
        matched = regex.compile("(?i)" + regex.escape(c), regex.VERSION0).findall(universe)
        if c not in matched:
            return None
        for x in matched:
            if table.setdefault(ord(x), c) != c:
                return None
    return table


class LabelIndex:
    """The labels (by position, in order) that may match a hit, from its literal beginnings."""

    __slots__ = ("_always", "_exact", "_folded", "_fold", "_lengths", "_bounded")

    def __init__(self, beginnings: Sequence[tuple[Iterable[str], Iterable[str] | None]]) -> None:
        """`beginnings`, per label: the beginnings of its literal terms as written (case
        matters; "" for a term that may begin anywhere), and those of its regular expressions,
        matched case-insensitively (None when one of them has no known beginning)."""
        always: set[int] = set()
        exact: dict[str, set[int]] = {}
        insensitive: list[tuple[str, int]] = []
        for i, (literal, folded) in enumerate(beginnings):
            for word in literal:
                if word:
                    exact.setdefault(word, set()).add(i)
                else:
                    always.add(i)
            if folded is None:
                always.add(i)
            else:
                insensitive.extend((word, i) for word in folded)
        fold = case_table(frozenset("".join(word for word, _ in insensitive)))
        by_fold: dict[str, set[int]] = {}
        for word, i in insensitive:
            if fold is None or not word:
                always.add(i)
            else:
                by_fold.setdefault(word.translate(fold), set()).add(i)
        self._always = frozenset(always)
        self._exact = exact
        self._folded = by_fold
        self._fold = fold or {}
        self._lengths = tuple(sorted({len(w) for w in exact} | {len(w) for w in by_fold}))
        # No beginning holds a word end, nor does the case table write one or write anything
        # as one: a beginning of a hit ends before the hit's first word end.
        self._bounded = not any(_WORD_END.search(w) for w in (*exact, *by_fold)) and not any(
            _WORD_END.match(chr(x)) or _WORD_END.match(c) for x, c in self._fold.items())

    def candidates(self, hit: str) -> list[int]:
        """The positions of the labels whose pattern may match all of `hit`, in order."""
        found = set(self._always)
        exact, folded = self._exact, self._folded
        written = hit.translate(self._fold) if folded else hit
        end = len(hit)
        if self._bounded:
            stop = _WORD_END.search(hit)
            if stop is not None:
                end = stop.start()
        for n in self._lengths:
            if n > end:
                break
            labels = exact.get(hit[:n])
            if labels:
                found.update(labels)
            labels = folded.get(written[:n])
            if labels:
                found.update(labels)
        return sorted(found)
