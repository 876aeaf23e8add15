"""Term lists compiled once into one fast pattern: what every word-list rule matches with.

Ops write terms, not regular expressions:
  "unsubscribe"          a word or phrase; case-insensitive; matched on word boundaries, so
                         "sex" never matches "Sussex" and "cock" never matches "cocktail"
  "get rich quick"       spaces and hyphens in a term match any run of spaces or hyphens
  "escort*"              `*` at the end of a word matches any word ending (escorts, escorting)
  "re:bitcoin\\s+doubl\\w+"  a Python regular expression, for the few cases that need one
Each term carries a label (a category, or "allow" for phrases that must never count). All
terms of a set compile into ONE pattern, the literal ones as a trie (NOTES.md: one combined
pass beats many), with a literal prefilter in front: the words a term can start with. A scan
first collects the text's words (one C-level pass) and looks for those; only where one occurs
is the pattern tried, so a clean 7 KB text costs a fraction of a millisecond however long
the lists are. A regular expression term should start with a word or an alternation of words
(`(?:buy|order)\\s+...`) so that it has such first words; one that does not makes every scan
of its set run the pattern over the whole text. Scan text with `normalise()` first: lower
case, whitespace collapsed. A set with a regular expression term runs on the time-limited
engine of opsregex.py (a term that runs out of time raises PatternTimeout); a set of words
only stays on `re`: its trie cannot backtrack badly.
"""

from __future__ import annotations

import re
import re._constants as _sre  # the stdlib's regex parser: to find a regex term's first words
import re._parser as _sre_parse
from functools import partial
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Mapping, Sequence

import regex

from proxy.message.labelindex import LabelIndex
from proxy.message.opsregex import OpsPattern, PatternError

if TYPE_CHECKING:
    from proxy.message.linktable import LinkTable

ALLOW = "allow"
APOSTROPHE = "\u2019"
_SEP = "\x00"  # a space or hyphen inside a term, in the trie
_WILD = "\x01"  # a trailing `*`
_SPLIT = re.compile(r"[\s\-]+")
_WORD = re.compile(r"\w+")
_WORD_CHAR = re.compile(r"\w")
_NON_ASCII = re.compile(r"[^\x00-\x7f]")
# Every ASCII character that is not a word character (\w), as a space.
_ASCII_BREAKS = str.maketrans({chr(c): " " for c in range(128) if not _WORD_CHAR.match(chr(c))})
# Texts shorter than this (a link's words) are scanned by the pattern directly: for them the
# prefilter's word set costs more than it saves.
_SHORT = 160


class TermError(ValueError):
    """A term that cannot be compiled; the message names the term."""


def word_set(normalised: str) -> frozenset[str]:
    """The set of words (\\w+ runs) of a text, as term sets look them up. Whitespace-split
    tokens that are all letters and digits are words already (isalnum() is \\w without "_");
    only the others go through the regex."""
    return words_of(set(normalised.split()))


def words_of(tokens: set[str] | frozenset[str]) -> frozenset[str]:
    """The words (\\w+ runs) of a set of whitespace-free tokens: `word_set` once the text is split.
    In ASCII, \\w is [A-Za-z0-9_]: the other ASCII characters are turned into spaces and the
    text split, in C (the regex takes five times as long). Other non-word characters (a euro
    sign, a middle dot) are turned into spaces first; where letters beyond ASCII remain, only
    the tokens that hold them go through the regex."""
    joined = " ".join(tokens)
    found: set[str] = set()
    if not joined.isascii():
        for char in set(_NON_ASCII.findall(joined)):
            if not (char.isalnum() or char == "_"):
                joined = joined.replace(char, " ")
        if not joined.isascii():
            others = {t for t in tokens if not t.isascii()}
            found.update(_WORD.findall(" ".join(others)))
            joined = " ".join(tokens.difference(others))
    found.update(joined.translate(_ASCII_BREAKS).split())
    return frozenset(found)


def normalise(text: str) -> str:
    """The form every term set scans: lower case, whitespace runs collapsed to one space, the
    typographic apostrophe (l’iscrizione, d’armi) written as the ASCII one the terms use."""
    folded = " ".join(text.lower().split())
    return folded.replace(APOSTROPHE, "'") if APOSTROPHE in folded else folded


def _literal_key(term: str) -> str:
    words = [w for w in _SPLIT.split(term.strip().lower()) if w]
    key = _SEP.join(words)
    if key.endswith("*"):
        key = key[:-1] + _WILD
    if "*" in key:
        raise TermError(f"{term!r}: `*` is only allowed at the end of a term")
    return key


def _trie_regex(keys: Iterable[str]) -> str:
    root: dict[str, Any] = {}
    for key in keys:
        node = root
        for ch in key:
            node = node.setdefault(ch, {})
        node[""] = {}

    def render(node: dict[str, Any]) -> str:
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

    def __init__(self, body: str, labels: tuple[tuple[str, list[str], list[str]], ...], size: int,
                 exact: dict[str, frozenset[str] | None], prefixes: tuple[str, ...], anchored: bool,
                 ops_regex: bool = False, literal_body: str = "", regex_starts: tuple[str, ...] = (),
                 staged: tuple[str, tuple[tuple[str, tuple[str, ...]], ...], str] = ("", (), ""),
                 staged_keys: tuple[Sequence[str], Sequence[str]] = ((), ())) -> None:
        # Ops' own regular expressions are in the body: the time-limited engine (probed at load
        # term by term already, so not again here).
        self._compile: Any = (lambda src: OpsPattern(src, probe=False)) if ops_regex else re.compile
        self.pattern = self._compile(rf"(?<!\w)(?:{body})(?!\w)")
        # Where a word no regex term starts with stands, no regex term can match: the literal
        # terms alone (our tries, on `re`, several times faster than the time-limited engine on
        # a pattern of a thousand terms) give the same answer there.
        self._regex_starts = regex_starts
        if ops_regex:
            self._at_literal = re.compile(rf"(?:{literal_body})(?!\w)").match if literal_body else re.compile(r"(?!x)x").match
            # Where one does, the one pattern's alternatives are tried in its order, as its
            # engine would: the allowed phrases, the regex terms that can start with that word
            # (the others cannot match there), the other literal terms; each its own pattern on
            # the same engine (our tries without a time limit: they cannot backtrack badly). The
            # engine pays per call for the size of the pattern: 11 us a call with all the terms
            # in it, 5 us for the three.
            allowed_body, self._regex_terms, others_body = staged
            # What the allowed phrases and the other literal terms may begin with: at a word
            # none of theirs can begin, their stage is not tried (it cannot match there).
            self._allowed_leads, self._others_leads = (_Leads(keys) for keys in staged_keys)
            self._allowed_at = regex.compile(rf"(?:{allowed_body})(?!\w)", regex.VERSION0).match if allowed_body else None
            self._others_at = regex.compile(rf"(?:{others_body})(?!\w)", regex.VERSION0).match if others_body else None
            self._by_word: dict[str, Callable[[str, int], Any]] = {}
            self._by_terms: dict[tuple[tuple[str, ...], bool, bool], Callable[[str, int], Any]] = {}
        else:
            self._at_literal = re.compile(rf"(?:{body})(?!\w)").match
        self.size = size
        # The words a term starts with, each with the second words its terms go on with (None
        # when one of them is a single word): "your" counts only where "downline" occurs too.
        self.exact = exact
        self._exact_words = frozenset(exact)  # a set meets a set by walking the smaller one
        self.prefixes = prefixes  # word beginnings a term starts with (wildcards, regexes)
        # The words of a text that begin with one of them, found by one search over the text's
        # distinct words joined by spaces (a trie after a literal space: the engine jumps from
        # word to word in C), not by a startswith per word and prefix.
        self._prefixed = re.compile(" ((?:" + _trie_regex(prefixes) + r")\w*)").findall if prefixes else None
        self.anchored = anchored  # False: some regex term has no known first word
        self._label_sources = labels
        self._compiled: tuple[tuple[tuple[str, Any], ...], LabelIndex] | None = None  # _compiled_labels

    def _hits(self, text: str, words: frozenset[str] | set[str] | None = None) -> list[Any]:
        if not self.anchored or (words is None and len(text) < _SHORT):
            return list(self.pattern.finditer(text))
        if words is None:
            words = word_set(text)
        exact = self.exact
        starts = {w for w in words.intersection(self._exact_words) if (nxt := exact[w]) is None or not nxt.isdisjoint(words)}
        if self._prefixed is not None:
            starts.update(self._prefixed(" " + " ".join(words)))
        if not starts:
            return []  # the common case: no term can start anywhere in the text
        # Try the pattern only where one of those words stands as a whole word.
        found: dict[int, Any] = {}
        for word in starts:
            at = self._staged_at(word) if word.startswith(self._regex_starts) else self._at_literal
            i = text.find(word)
            while i >= 0:
                after = i + len(word)
                if (i == 0 or not _WORD_CHAR.match(text[i - 1])) and (after == len(text) or not _WORD_CHAR.match(text[after])):
                    hit = at(text, i)
                    if hit:
                        found[i] = hit
                i = text.find(word, i + 1)
        hits, end = [], 0
        for start in sorted(found):  # left to right, without overlaps, as finditer would
            if start >= end:
                hits.append(found[start])
                end = found[start].end()
        return hits

    MAX_WORDS = 4096  # staged matchers remembered per word, then forgotten all at once

    def _staged_at(self, word: str) -> Callable[[str, int], Any]:
        """The matcher for the places where `word` stands, a word some regex term starts with."""
        at = self._by_word.get(word)
        if at is None:
            if len(self._by_word) >= self.MAX_WORDS:
                self._by_word.clear()
            terms = tuple(source for source, firsts in self._regex_terms if word.startswith(firsts))
            allowed, others = self._allowed_leads.may_stand_at(word), self._others_leads.may_stand_at(word)
            at = self._by_terms.get((terms, allowed, others))
            if at is None:
                regexes = OpsPattern(rf"(?:{'|'.join(terms)})(?!\w)", probe=False).match if terms else None
                stages = [self._allowed_at if allowed else None, regexes, self._others_at if others else None]
                at = self._by_terms[(terms, allowed, others)] = partial(_first_match, tuple(m for m in stages if m is not None))
            self._by_word[word] = at
        return at

    def scan(self, normalised: str, words: frozenset[str] | None = None,
             labels: dict[str, str] | None = None) -> Iterator[tuple[str, str]]:
        """Hits in `normalised` text; `words` may pass its word set when already known, and
        `labels` a dict the caller keeps for one message, where the label of each distinct hit
        is remembered (a message's offers scan the same cues again and again)."""
        for label, m in self.matches(normalised, words, labels):
            yield label, m.group(0)

    def matches(self, normalised: str, words: frozenset[str] | None = None,
                labels: dict[str, str] | None = None) -> Iterator[tuple[str, re.Match[str]]]:
        """`scan`, with each hit's match (where it stands in the text)."""
        label_of = self.label_of if labels is None else partial(_remembered, self.label_of, labels)
        for m in self._hits(normalised, words):
            label = label_of(m.group(0))
            if label != ALLOW:
                yield label, m

    def search(self, normalised: str) -> bool:
        return next(self.scan(normalised), None) is not None

    def labels_of(self, matched: str) -> tuple[str, ...]:
        """Every label whose terms match this hit, in order; just (ALLOW,) when an allowed
        phrase does (a word can be a term of several lists)."""
        labels, index = self._compiled_labels()
        found = tuple(labels[i][0] for i in index.candidates(matched) if labels[i][1].fullmatch(matched))
        return (ALLOW,) if ALLOW in found else found

    def label_of(self, matched: str) -> str:
        """Which label's terms match this hit (allow first). Only the labels whose terms may
        begin as the hit does are tried (proxy/message/labelindex.py): the others cannot match."""
        labels, index = self._compiled_labels()
        for i in index.candidates(matched):
            label, pattern = labels[i]
            if pattern.fullmatch(matched):
                return label
        return labels[-1][0] if labels else ""

    def prepare(self) -> None:
        """Make the labels' own patterns and their index now, not on the first hit."""
        self._compiled_labels()

    @property
    def prepared(self) -> bool:
        return self._compiled is not None

    def _compiled_labels(self) -> tuple[tuple[tuple[str, Any], ...], LabelIndex]:
        """Each label's own pattern and the index of their beginnings, made on the first hit:
        most term sets never have one, and a hundred labels' tries cost as much to render as
        the combined one."""
        compiled = self._compiled
        if compiled is None:  # both made, then set at once: a judging thread never sees half
            # A label of literal terms alone is one of our tries: `re` (see opsregex.py).
            labels = tuple((label, (self._compile if rx else re.compile)("|".join(([_trie_regex(keys)] if keys else []) + rx)))
                           for label, keys, rx in self._label_sources)
            compiled = self._compiled = (labels, LabelIndex([_beginnings(keys, rx) for _, keys, rx in self._label_sources]))
        return compiled


# What the stdlib's parser (which finds a regex term's first words) does not read as the
# regex engine does: an inline flag (global or scoped: its first letters may not match as the
# term set's case-insensitive beginnings do), and a brace that opens no counted repeat (the
# engine's fuzzy matching, "kill{e<=1}", lets the first letters differ). A term with either
# has no known beginning for LabelIndex.
_ENGINE_SYNTAX = re.compile(r"\(\?[a-zA-Z^\-]|\{(?![0-9]*,?[0-9]*\})")


def _lead(key: str) -> str:
    """A literal term's first word as written, without its wildcard (a wildcard's stem)."""
    return key.split(_SEP, 1)[0].removesuffix(_WILD)


def _beginnings(keys: Sequence[str], rx: Sequence[str]) -> tuple[list[str], list[str] | None]:
    """A label's literal beginnings (each literal term's first word as written, without its
    wildcard), and those of its regular expressions (each `(?i:source)`), for LabelIndex."""
    literal = [_lead(key) for key in keys]
    folded: list[str] = []
    for source in rx:
        inner = source[len("(?i:"):-1]
        words = None if _ENGINE_SYNTAX.search(inner) else _regex_first_words(inner, lower=False)
        if not words or not all(words):
            return literal, None
        folded.extend(words)
    return literal, folded


class _Leads:
    """The beginnings of a trie's literal terms (each key's first word, a wildcard's stem),
    to tell whether the trie may match at a place where a given word stands whole."""

    __slots__ = ("_leads", "_lengths", "_cut", "_anywhere")

    def __init__(self, keys: Iterable[str]) -> None:
        self._leads = frozenset(_lead(key) for key in keys)
        self._anywhere = "" in self._leads  # a bare `*`
        self._lengths = tuple(sorted({len(lead) for lead in self._leads}))
        # A beginning that goes on past a word with a character that is no word character
        # ("l'iscrizione", "18+"): the part before that character.
        self._cut = frozenset(lead[:k] for lead in self._leads for k in range(1, len(lead)) if not _WORD_CHAR.match(lead[k]))

    def may_stand_at(self, word: str) -> bool:
        """Whether a term may match where `word` stands between two non-word characters (or
        the text's ends): its beginning is the word's own beginning, or runs on past the
        word's end with the non-word character that follows it."""
        if self._anywhere or word in self._cut:
            return True
        leads = self._leads
        return any(word[:n] in leads for n in self._lengths if n <= len(word))


def _remembered(label_of: Callable[[str], str], labels: dict[str, str], hit: str) -> str:
    label = labels.get(hit)
    if label is None:
        label = labels[hit] = label_of(hit)
    return label


def _first_match(stages: tuple[Callable[[str, int], Any], ...], text: str, at: int) -> Any:
    for match in stages:
        m = match(text, at)
        if m is not None:
            return m
    return None


def _first_words(parsed: _sre_parse.SubPattern, lower: bool = True) -> list[str] | None:
    """The literal beginnings a parsed regex can start with (lower case, or as written), or
    None when it can start with something that is not a literal word character."""
    items = list(parsed)
    if not items:
        return None
    op, av = items[0]
    if op is _sre.LITERAL:
        n = 0
        for n, (op2, av2) in enumerate(items):  # noqa: B007  (n is read after the loop)
            if op2 is not _sre.LITERAL or not _WORD_CHAR.match(chr(av2)):
                break
        else:
            n = len(items)
        word = "".join(chr(av2) for _, av2 in items[:n])
        if not word:
            return None
        # The parser factors common beginnings out of alternatives ("share|stock" is "s" then
        # a branch): go on into what follows, so that the prefilter looks for "share", not "s".
        rest = _first_words(_sre_parse.SubPattern(parsed.state, items[n:]), lower) if n < len(items) and items[n][0] in (_sre.BRANCH, _sre.SUBPATTERN) else None
        if not lower:
            return [word + w for w in rest] if rest else [word]
        return [(word + w).lower() for w in rest] if rest else [word.lower()]
    if op is _sre.SUBPATTERN:
        return _first_words(av[-1], lower)
    if op is _sre.BRANCH:
        out: list[str] = []
        for branch in av[1]:
            words = _first_words(branch, lower)
            if words is None:
                return None
            out.extend(words)
        return out
    return None


def _regex_first_words(source: str, lower: bool = True) -> list[str] | None:
    try:
        return _first_words(_sre_parse.parse(source), lower)
    except Exception:  # an unusual construct: scan without the prefilter
        return None


def _regex_of(term: str) -> tuple[str | None, str | None]:
    """(literal trie key, regex source) of one term: exactly one is set."""
    if term.startswith("re:"):
        source = term[3:]
        try:
            OpsPattern(source)
        except PatternError as exc:
            raise TermError(f"{term!r}: {exc}") from None
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
    exact: dict[str, set[str] | None] = {}
    prefixes: set[str] = set()
    regex_starts: set[str] = set()  # the first words of the regex terms
    regex_terms: list[tuple[str, tuple[str, ...]]] = []  # each with its first words, in order
    anchored = True
    per_label: dict[str, tuple[list[str], list[str]]] = {}
    for label, terms in labelled.items():
        lit, rx = per_label.setdefault(label, ([], []))
        for term in terms:
            key, source = _regex_of(term)
            if key is not None:
                keys.append(key)
                lit.append(key)
                first = key.split(_SEP, 1)[0]
                lead = _WORD.match(first.rstrip(_WILD))
                if not lead:
                    anchored = False
                elif first.endswith(_WILD) or lead.group() != first:
                    prefixes.add(lead.group())
                else:
                    parts = key.split(_SEP)
                    second = parts[1] if len(parts) > 1 else ""
                    if second and _WORD.fullmatch(second) and exact.get(first, set()) is not None:
                        exact.setdefault(first, set()).add(second)  # type: ignore[union-attr]
                    else:
                        exact[first] = None  # a single word, or one that ends in `*`: always
            elif source is not None:
                regexes.append(f"(?i:{source})")
                rx.append(f"(?i:{source})")
                words = _regex_first_words(source)
                if words is None or not all(words):
                    anchored = False
                else:
                    prefixes.update(words)
                    regex_starts.update(words)
                regex_terms.append((f"(?i:{source})", tuple(words or ())))
    # Allowed phrases first, then the regular expressions, then the other literal terms: at one
    # place in the text the first alternative that matches wins, so an allowed phrase beats
    # every term, and a regex phrase ("vuurwapens te koop") is not cut short by a literal
    # word it starts with ("vuurwapen*"). Among literals the trie takes the longest.
    allowed = per_label.get(ALLOW, ([], []))[0]
    allowed_keys = set(allowed)
    others = [k for k in keys if k not in allowed_keys]
    allowed_body, others_body = (_trie_regex(allowed) if allowed else ""), (_trie_regex(others) if others else "")
    literal = [b for b in (allowed_body, others_body) if b]
    alts = literal[:1] + regexes + literal[1:] if allowed else regexes + literal
    body = "|".join(alts) if alts else r"(?!x)x"
    # Each label's own pattern is rendered on the first hit (label_of): most term sets never
    # have one, and a hundred labels' tries cost as much to render as the combined one.
    labels = [(label, *per_label[label]) for label in sorted(per_label, key=lambda lb: lb != ALLOW)  # allow first
              if per_label[label][0] or per_label[label][1]]
    needs = {w: None if nxt is None else frozenset(nxt) for w, nxt in exact.items()}
    return TermSet(body, tuple(labels), len(keys) + len(regexes), needs,
                   tuple(sorted(prefixes)), anchored, ops_regex=bool(regexes),
                   literal_body="|".join(literal) or r"(?!x)x", regex_starts=tuple(sorted(regex_starts)),
                   staged=(allowed_body, tuple(regex_terms), others_body),
                   staged_keys=(allowed, others))


class LinkWords:
    """Which links name something (an unsubscribe page, a privacy policy): by the words a
    reader sees with the link, or by words in its URL. Compiled once, from policy options."""

    __slots__ = ("words", "url_words", "_texts")
    # Newsletters repeat their link texts ("Read more") message after message: what a text
    # says is remembered, up to this many texts (then forgotten all at once).
    MAX_TEXTS = 4096

    def __init__(self, label: str, words: Iterable[str], url_words: Iterable[str]) -> None:
        try:
            self.words = compile_terms({label: list(words)})
        except TermError as exc:
            raise ValueError(f"words: {exc}") from None  # options validators report ValueError
        # Plain substrings: `in` per word beats one alternation regex searched along the URL. A
        # word that holds another ("privacybeleid", "privacy") is left out: the other finds it.
        lowered = {w.lower() for w in url_words if w and "\x00" not in w}
        self.url_words = tuple(sorted(w for w in lowered if not any(o != w and o in w for o in lowered)))
        self._texts: dict[str, bool] = {}

    def prepare(self) -> None:
        """Make the words' label patterns now (TermSet.prepare), not on the first link text."""
        self.words.prepare()

    def _text_names(self, text: str) -> bool:
        hit = self._texts.get(text)
        if hit is None:
            if len(self._texts) >= self.MAX_TEXTS:
                self._texts.clear()
            hit = self._texts[text] = bool(self.words.search(normalise(text)))
        return hit

    def named_in(self, table: LinkTable, positions: Sequence[int]) -> list[int]:
        """The positions (of `positions`, in order) of the links that name it, by a word in the
        URL or by their text. The URL words are looked for in all the hrefs at once, and each
        distinct text is judged once: a newsletter has a hundred links and a few texts."""
        hit = table.containing(self.url_words)
        every = len(positions) == len(table.links)
        if not every:
            hit.intersection_update(positions)
        naming = {t for t in table.texts_at(positions) if self._text_names(t)}
        if naming and every:  # the links with those texts, found by index scans in C
            hit.update(table.with_texts(naming))
        elif naming:
            texts = table.texts
            hit.update(i for i in positions if texts[i] in naming)
        return sorted(hit)

    def any_named(self, table: LinkTable, positions: Sequence[int]) -> bool:
        """Whether one of the links at `positions` names it: `named_in`, stopping at the first
        sign (the texts first: judged already, they cost a look-up each)."""
        text_names = self._text_names
        if any(text_names(t) for t in table.texts_at(positions)):
            return True
        return not table.containing(self.url_words).isdisjoint(positions)
