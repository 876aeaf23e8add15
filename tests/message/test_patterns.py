"""Term sets: one compiled pattern per set, a literal first-word prefilter, allow phrases."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.message.htmlview import Link
from proxy.message.linktable import LinkTable
from proxy.message.patterns import LinkWords, TermError, TermSet, compile_terms, normalise, word_set


def both(ts: TermSet, text: str) -> list[tuple[str, str]]:
    """Scan with the first-word prefilter and with the pattern alone: they must agree."""
    text = normalise(text)
    direct = list(ts.scan(text))  # short texts go straight to the pattern
    assert list(ts.scan(text, word_set(text))) == direct
    return direct


def hits(terms: dict[str, list[str]], text: str) -> list[tuple[str, str]]:
    return both(compile_terms(terms), text)


def test_literals_phrases_and_wildcards() -> None:
    ts = {"a": ["get rich quick", "escort*", "porn"], "allow": ["porn free"]}
    assert hits(ts, "GET-RICH  quick\nnow") == [("a", "get-rich quick")]
    assert hits(ts, "Escorts and escorting") == [("a", "escorts"), ("a", "escorting")]
    assert hits(ts, "a porn-free zone, porn") == [("a", "porn")]
    assert hits(ts, "pornichet, getrichquick, sporn") == []


def test_regex_terms_use_their_first_words_as_prefilter() -> None:
    ts = compile_terms({"d": [r"re:(?:buy|order)\s+(?:coke|meth)", r"re:guns?\s+for\s+sale"]})
    assert ts.anchored and set(ts.prefixes) == {"buy", "order", "gun"}
    assert both(ts, "Please ORDER  coke. Guns for sale.") == [("d", "order coke"), ("d", "guns for sale")]
    assert both(ts, "buyer coke") == []


def test_first_words_go_on_into_factored_alternatives() -> None:
    # The regex parser turns "share|shares|stock|stocks" into "s" and a branch.
    ts = compile_terms({"g": [r"re:(?:share|shares|stock|stocks)\s+will\s+triple", r"re:(?:cocaine|coke)\s+for\s+sale"]})
    assert set(ts.prefixes) == {"share", "shares", "stock", "stocks", "cocaine", "coke"}
    assert both(ts, "see the shop: shares will triple, coke for sale") == [("g", "shares will triple"), ("g", "coke for sale")]


def test_regex_before_a_literal_it_starts_with_and_allow_before_both() -> None:
    ts = {"w": ["vuurwapen*", r"re:vuurwapens\s+te\s+koop"], "allow": ["vuurwapens te koop gevraagd"]}
    assert hits(ts, "vuurwapens te koop") == [("w", "vuurwapens te koop")]
    assert hits(ts, "vuurwapens te koop gevraagd") == []
    assert hits(ts, "vuurwapens") == [("w", "vuurwapens")]


_MIXED = compile_terms({
    "w": ["vuurwapen*", r"re:vuurwapens\s+te\s+koop", "order", r"re:(?:buy|order)\s+(?:coke|meth)", "order coke now",
          r"re:orders?\s+\w+\s+online", "buy-in", r"re:bu\w*\s+guns?"],
    "allow": ["vuurwapens te koop gevraagd", "order coke online"],
})
_WORDS = st.sampled_from(["order", "orders", "buy", "buying", "buy-in", "coke", "meth", "now", "online", "guns", "gun",
                          "vuurwapens", "te", "koop", "gevraagd", "-", ",", "x"])


@settings(max_examples=400, deadline=None)
@given(st.lists(_WORDS, max_size=12).map(" ".join))
def test_regex_start_words_match_as_the_one_pattern_does(text: str) -> None:
    """At a word a regex term starts with, the allowed phrases, the regex terms that can start
    there and the literal terms are tried in turn: what the one pattern finds, they find."""
    both(_MIXED, text)


def test_matches_and_labels_of() -> None:
    ts = compile_terms({"en|x": ["casino*"], "de|x": ["casino*", "kasino"], "allow": ["casino royale"]})
    [(label, m)] = list(ts.matches("das casino"))
    assert (label, m.span()) == ("en|x", (4, 10))
    assert ts.labels_of("casino") == ("en|x", "de|x") and ts.labels_of("casino royale") == ("allow",)


def test_regex_without_first_word_still_matches() -> None:
    ts = compile_terms({"d": [r"re:\d+\s+pills"]})
    assert not ts.anchored
    assert both(ts, "order 100 pills") == [("d", "100 pills")]


def test_non_word_first_character() -> None:
    ts = compile_terms({"m": ["$$$ cash", "18+ videos"]})
    assert not ts.anchored
    assert both(ts, "Get $$$ cash and 18+ videos") == [("m", "$$$ cash"), ("m", "18+ videos")]


def test_prefilter_agrees_with_the_full_pattern() -> None:
    ts = compile_terms({"x": ["drug*", "buy drugs", "sex"], "allow": ["drug store"]})
    text = normalise("the drug store sells drugs; buy drugs? no sex in sussex. drugstore")
    assert both(ts, text) == [("x", "drugs"), ("x", "buy drugs"), ("x", "sex"), ("x", "drugstore")]
    long_text = normalise("lorem ipsum " * 40 + text)  # long enough for the prefilter by itself
    assert list(ts.scan(long_text)) == [("x", "drugs"), ("x", "buy drugs"), ("x", "sex"), ("x", "drugstore")]
    assert [m.group(0) for m in ts.pattern.finditer(text)] == ["drug store", "drugs", "buy drugs", "sex", "drugstore"]


@pytest.mark.parametrize("term", ["", "  ", "mid*dle", "re:(unclosed"])
def test_bad_terms(term: str) -> None:
    with pytest.raises(TermError):
        compile_terms({"x": [term]})


def test_word_set_is_every_word_run() -> None:
    import re

    from proxy.message.patterns import word_set

    text = normalise("Hello, wörld! snake_case e\u0301t\u00e9 ½ 42nd (cocaïne) a-b--c ١٢٣ 回复：订单 don't")
    assert word_set(text) == frozenset(re.findall(r"\w+", text))


@settings(max_examples=300, deadline=None)
@given(st.sets(st.text(st.sampled_from("aZ09_.,-'@/€é·’١²İı\u0301\u203f"), min_size=1, max_size=8), max_size=8))
def test_words_of_tokens_are_their_word_runs(tokens: set[str]) -> None:
    import re

    from proxy.message.patterns import words_of

    assert words_of(tokens) == frozenset(re.findall(r"\w+", " ".join(tokens)))


def test_common_first_words_count_only_with_their_second_words() -> None:
    ts = compile_terms({"x": ["your downline", "free spins", "free-for-all fraud", "sex", "sex cam*"]})
    assert ts.exact["your"] == frozenset({"downline"}) and ts.exact["sex"] is None
    assert both(ts, "Your order ships free of charge") == []
    assert both(ts, "Grow your downline with free spins and sexcams, sex cams") == [
        ("x", "your downline"), ("x", "free spins"), ("x", "sex cams")]
    assert both(ts, "a free-for-all fraud") == [("x", "free-for-all fraud")]


PRIVACY = LinkWords("privacy", ["privacy policy", "privacybeleid"], ["privacy", "/legal/data", "İ", "privacybeleid"])


def _names(href: str, text: str) -> bool:
    """What naming means for one link: a URL word in the lower-cased href, or a term in its text."""
    return any(w in href.lower() for w in ("privacy", "/legal/data", "İ".lower())) or PRIVACY.words.search(normalise(text))


def _table(hrefs: list[str], texts: list[str]) -> LinkTable:
    return LinkTable(tuple(Link(h, t, "html") for h, t in zip(hrefs, texts, strict=True)))


def test_links_named_all_at_once_as_one_by_one() -> None:
    hrefs = ["https://shop.example.com/coats?c=1", "https://shop.example.com/PRIVACY", "https://x.example/legal/",
             "data", "https://x.example/legal/data?x", "https://x.example/\x00privacy", "https://x.example/İ"]
    texts = ["See the coats", "here", "Privacy  Policy", "", "Data", "nul", "dotted"]
    table = _table(hrefs, texts)
    assert PRIVACY.named_in(table, range(7)) == [1, 2, 4, 5, 6]
    assert PRIVACY.named_in(table, [0, 2, 3]) == [2]
    assert PRIVACY.any_named(table, [0, 3]) is False and PRIVACY.any_named(table, [0, 6]) is True
    assert PRIVACY.named_in(_table([], []), ()) == []
    assert PRIVACY.url_words == ("/legal/data", "i̇", "privacy")  # privacybeleid: privacy finds it


# Hrefs made of the words' pieces, so that words straddle the joins between two hrefs.
_PIECES = st.sampled_from(["priv", "acy", "/legal", "/data", "x", "İ", "\x00", "https://a.example/", "PRIVACY"])


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.lists(_PIECES, max_size=4).map("".join), st.sampled_from(["", "Privacy policy", "more"])), max_size=8),
       st.sets(st.integers(0, 7)))
def test_named_agrees_with_names(links: list[tuple[str, str]], among: set[int]) -> None:
    hrefs, texts = [h for h, _ in links], [t for _, t in links]
    positions = sorted(i for i in among if i < len(links))
    table = _table(hrefs, texts)
    expected = [i for i in positions if _names(hrefs[i], texts[i])]
    assert PRIVACY.named_in(table, positions) == expected
    assert PRIVACY.any_named(table, positions) is bool(expected)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.lists(_WORDS, max_size=12).map(" ".join), max_size=5))
def test_labels_remembered_for_a_message_are_the_labels_found_anew(texts: list[str]) -> None:
    """A message's texts scanned with one dict of the labels found so far (content.py keeps
    one per message) give what each scan alone gives."""
    labels: dict[str, str] = {}
    for text in map(normalise, texts):
        assert list(_MIXED.scan(text, labels=labels)) == list(_MIXED.scan(text))
        assert [(label, m.span()) for label, m in _MIXED.matches(text, None, labels)] == [
            (label, m.span()) for label, m in _MIXED.matches(text)]


# Literal terms and allowed phrases that begin as a regex term's word does, or run on past it
# with a character that is no word character: their stage is tried where the word stands.
_STAGED = compile_terms({
    "w": [r"re:(?:buy|order)\s+(?:coke|meth)", "order's end", "buy+ now", "orders*", "sell coke", r"re:sell\w*\s+coke"],
    "allow": ["buy'n'sell coke", "order coke online", "selling coke legally"],
})
_STAGED_WORDS = st.sampled_from(["order", "order's", "orders", "ordering", "buy", "buy+", "buy'n'sell", "sell", "selling",
                                 "coke", "meth", "now", "end", "online", "legally", "x", "-", "+", "'"])


@settings(max_examples=400, deadline=None)
@given(st.lists(_STAGED_WORDS, max_size=10).map(" ".join))
def test_stages_left_out_where_their_terms_cannot_begin_change_nothing(text: str) -> None:
    """At a word a regex term starts with, the allowed phrases and the literal terms are tried
    only where one of theirs may begin: what the one pattern finds, they find."""
    both(_STAGED, text)
    long_text = normalise("lorem ipsum " * 15 + text)  # long enough for the prefilter by itself
    assert list(_STAGED.scan(long_text)) == [(_STAGED.label_of(m.group(0)), m.group(0)) for m in _STAGED.pattern.finditer(long_text)
                                             if _STAGED.label_of(m.group(0)) != "allow"]
