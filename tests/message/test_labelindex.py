"""The label index: a hit's label found among the labels that may begin as it does is the
label that trying every label's pattern in order finds."""

from __future__ import annotations

import regex
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.message.labelindex import case_table
from proxy.message.patterns import ALLOW, TermSet, compile_terms
from proxy.policy.loader import BUILTIN_DEFAULT, load_policy


def every_label(ts: TermSet, hit: str) -> tuple[str, ...]:
    """The labels whose own pattern matches all of `hit`, every label tried in order: the
    path the index replaces."""
    labels, _ = ts._compiled_labels()  # the per-label patterns
    return tuple(label for label, pattern in labels if pattern.fullmatch(hit))


def label_of_every(ts: TermSet, hit: str) -> str:
    found = every_label(ts, hit)
    labels, _ = ts._compiled_labels()
    return found[0] if found else (labels[-1][0] if labels else "")


def labels_of_every(ts: TermSet, hit: str) -> tuple[str, ...]:
    found = every_label(ts, hit)
    return (ALLOW,) if ALLOW in found else found


def test_the_engine_matches_more_than_one_case_of_a_letter() -> None:
    table = case_table(frozenset("iks"))
    assert table is not None
    assert {chr(x) for x, c in table.items() if c == "k"} == {"k", "K", "\u212a"}  # the Kelvin sign
    assert {chr(x) for x, c in table.items() if c == "s"} == {"s", "S", "\u017f"}  # the long s
    assert regex.fullmatch("(?i)i", "\u0130") and table[0x130] == "i"
    assert case_table(frozenset("iI")) is None  # U+0130 matches (?i)i but not (?i)I: no one way to write it


# Terms whose case-insensitive beginnings the engine matches one way each ...
_TERMS = ["kill all", "Kaufen", "re:(?:kill|mord)\\w*\\s+all", "re:stock\\s+tip", "re:(?:€|eur)\\s*\\d+", "stock*",
          "re:(?-i:Kurs)\\s+\\w+", "σκοτώστε όλους", "re:σκοτ\\w+", "*", "18+ videos", "re:b\\d+", "re:Ist"]
# ... and some that clash with them (U+0130 matches (?i)i, the long s (?i)s): no case table;
# and the engine's own syntax (fuzzy matching lets a term begin otherwise than it is written).
_CLASHING = ["re:ſtock\\s+tip", "re:ıron", "re:İst\\w*", "re:ςκοτ", "re:(?:kill){e<=1}\\s+all", "re:mord{1,2}\\s+all"]
# Pieces of hits: letters the engine matches case-insensitively in more than one way, and the
# terms' words in several cases.
_LETTERS = st.sampled_from(list("kKsSſiIİıl ao€9σςΣ-+") + ["kill", "KILL", "\u212aill", "bill", "all", "stock", "STOCK", "ſtock", "Kurs",
                                                           "kurs", "mord", "eur", "EUR", "ron", "RON", "ist", "IST", "σκοτ",
                                                           "ΣΚΟΤ", "18+", "videos", "tip", " ", "b"])


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.sampled_from(["allow", "a", "b", "c"]),
                       st.lists(st.sampled_from(_TERMS) | st.sampled_from(_CLASHING), min_size=1, max_size=4),
                       min_size=1, max_size=4),
       st.lists(st.lists(_LETTERS, max_size=8).map("".join), min_size=1, max_size=6))
def test_label_of_agrees_with_trying_every_label(labelled: dict[str, list[str]], hits: list[str]) -> None:
    ts = compile_terms(labelled)
    for hit in hits:
        assert ts.label_of(hit) == label_of_every(ts, hit)
        assert ts.labels_of(hit) == labels_of_every(ts, hit)


def test_the_shipped_lists_agree_on_their_own_terms() -> None:
    """Every term of the shipped lists, as a hit (the literal ones as written, with their case
    changed), finds the label that trying every label finds."""
    lists = load_policy(BUILTIN_DEFAULT).options["content"].compiled
    for ts in (lists.terms, lists.offers):
        ts.label_of("")
        hits = {"", "x", "kill all jews", "rifles", "€ 450", "450 eur", "buy cocaine", "ſhares will triple", "KOKAIN KAUFEN",
                "İst", "casino royale"}
        for _, keys, _ in ts._label_sources:
            for key in keys:
                text = key.replace("\x00", " ").replace("\x01", "s")
                hits.update((text, text.upper(), text.title(), text + "x"))
        for hit in sorted(hits):
            assert ts.label_of(hit) == label_of_every(ts, hit), hit
            assert ts.labels_of(hit) == labels_of_every(ts, hit), hit


def test_a_term_in_the_engines_own_syntax_has_no_known_beginning() -> None:
    """Fuzzy matching lets "kill" match "bill"; an inline flag may make a letter match
    otherwise: such a term's label is always tried."""
    ts = compile_terms({"a": [r"re:(?:kill){e<=1}\s+all"], "c": [r"re:(?-i:Kurs)\s+x"], "b": ["bill*", "kurs*"]})
    for hit in ("bill all", "kill all", "kurs x", "Kurs x"):
        assert ts.label_of(hit) == label_of_every(ts, hit), hit
        assert ts.labels_of(hit) == labels_of_every(ts, hit), hit
    assert ts.label_of("bill all") == "a"
