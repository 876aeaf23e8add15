"""Term lists compiled once into one fast pattern: what every word-list rule matches with.

Ops write terms, not regular expressions:
  "unsubscribe"          a word or phrase; case-insensitive; matched on word boundaries, so
                         "sex" never matches "Sussex" and "cock" never matches "cocktail"
  "get rich quick"       spaces and hyphens in a term match any run of spaces or hyphens
  "escort*"              `*` at the end of a word matches any word ending (escorts, escorting)
  "re:bitcoin\\s+doubl\\w+"  a Python regular expression, for the few cases that need one
Each term carries a label (a category, or "allow" for phrases that must never count). All
terms of a set compile into ONE pattern, the literal ones as a trie, so a message is scanned
once however long the lists are (NOTES.md: one combined pass beats many). Scan text with
`normalise()` first: lower case, whitespace collapsed.
"""

from __future__ import annotations

import re
from typing import Iterable, Iterator, Mapping

ALLOW = "allow"
_SEP = "\x00"  # a space or hyphen inside a term, in the trie
_WILD = "\x01"  # a trailing `*`
_SPLIT = re.compile(r"[\s\-]+")


class TermError(ValueError):
    """A term that cannot be compiled; the message names the term."""


def normalise(text: str) -> str:
    """The form every term set scans: lower case, whitespace runs collapsed to one space."""
    return " ".join(text.lower().split())


def _literal_key(term: str) -> str:
    words = [w for w in _SPLIT.split(term.strip().lower()) if w]
    key = _SEP.join(words)
    if key.endswith("*"):
        key = key[:-1] + _WILD
    if "*" in key:
        raise TermError(f"{term!r}: `*` is only allowed at the end of a term")
    return key


def _trie_regex(keys: Iterable[str]) -> str:
    root: dict[str, dict] = {}
    for key in keys:
        node = root
        for ch in key:
            node = node.setdefault(ch, {})
        node[""] = {}

    def render(node: dict[str, dict]) -> str:
        alts = []
        optional = "" in node
        for ch in sorted(k for k in node if k):
            token = r"[\s\-]+" if ch == _SEP else r"\w*" if ch == _WILD else re.escape(ch)
            alts.append(token + render(node[ch]))
        if not alts:
            return ""
        body = alts[0] if len(alts) == 1 else "(?:" + "|".join(alts) + ")"
        # Greedy: the longest term wins, so an allowed phrase ("drug store") beats its prefix.
        return f"(?:{body})?" if optional else body

    return render(root)


class TermSet:
    """Compiled terms: `scan(text)` yields (label, matched text) for every hit that is not
    covered by an allowed phrase."""

    def __init__(self, pattern: re.Pattern[str], labels: tuple[tuple[str, str], ...], size: int) -> None:
        self.pattern = pattern
        self.size = size
        self._label_sources = labels
        self._labels: tuple[tuple[str, re.Pattern[str]], ...] | None = None

    def scan(self, normalised: str) -> Iterator[tuple[str, str]]:
        for m in self.pattern.finditer(normalised):
            label = self.label_of(m.group(0))
            if label != ALLOW:
                yield label, m.group(0)

    def search(self, normalised: str) -> bool:
        return next(self.scan(normalised), None) is not None

    def label_of(self, matched: str) -> str:
        """Which label's terms match this hit (allow first). Runs only on hits, which are
        rare, so the per-label patterns are compiled on the first one."""
        if self._labels is None:
            self._labels = tuple((label, re.compile(source)) for label, source in self._label_sources)
        for label, pattern in self._labels:
            if pattern.fullmatch(matched):
                return label
        return self._labels[-1][0] if self._labels else ""


def _regex_of(term: str) -> tuple[str | None, str | None]:
    """(literal trie key, regex source) of one term: exactly one is set."""
    if term.startswith("re:"):
        source = term[3:]
        try:
            re.compile(source)
        except re.error as exc:
            raise TermError(f"{term!r}: not a valid regular expression: {exc}") from None
        return None, source
    if not term.strip():
        raise TermError("an empty term")
    return _literal_key(term), None


def check_term(term: str) -> None:
    """Raise TermError when a term cannot be compiled (names it, for errors with a key)."""
    _regex_of(term)


def compile_terms(labelled: Mapping[str, Iterable[str]]) -> TermSet:
    """One pattern for every term of every label; raises TermError naming a bad term."""
    keys: list[str] = []
    regexes: list[str] = []
    per_label: dict[str, tuple[list[str], list[str]]] = {}
    for label, terms in labelled.items():
        lit, rx = per_label.setdefault(label, ([], []))
        for term in terms:
            key, source = _regex_of(term)
            if key is not None:
                keys.append(key)
                lit.append(key)
            elif source is not None:
                regexes.append(f"(?i:{source})")
                rx.append(f"(?i:{source})")
    alts = ([_trie_regex(keys)] if keys else []) + regexes
    body = "|".join(alts) if alts else r"(?!x)x"
    pattern = re.compile(rf"(?<!\w)(?:{body})(?!\w)")
    labels = []
    for label in sorted(per_label, key=lambda lb: lb != ALLOW):  # allow is judged first
        lit, rx = per_label[label]
        parts = ([_trie_regex(lit)] if lit else []) + rx
        if parts:
            labels.append((label, "|".join(parts)))
    return TermSet(pattern, tuple(labels), len(keys) + len(regexes))
