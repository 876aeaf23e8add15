"""Ops' policy patterns: compiled with a time limit, refused at load when they explode."""

from __future__ import annotations

import time

import pytest
import regex

from proxy.message.opsregex import OpsPattern, PatternError, PatternTimeout
from proxy.message.patterns import TermError, compile_terms, normalise


def test_a_pattern_that_explodes_on_the_probes_is_refused_with_the_reason() -> None:
    with pytest.raises(PatternError, match="backtracks catastrophically"):
        OpsPattern(r"^(\w|\w\w)+$")
    with pytest.raises(PatternError, match="not a valid regular expression"):
        OpsPattern(r"(unclosed")


def test_a_pattern_that_runs_out_of_time_raises_and_says_which() -> None:
    p = OpsPattern(r"^(q|qq)+$")  # the probes hold no q
    t = time.perf_counter()
    with pytest.raises(PatternTimeout) as exc:
        p.search("q" * 40 + "!")
    assert time.perf_counter() - t < 0.5
    assert exc.value.source == r"^(q|qq)+$"


def test_ordinary_patterns_behave_as_re_does() -> None:
    p = OpsPattern(r"\byour (?:account|password) (?:is|was) locked\b", regex.IGNORECASE)
    assert p.search("Alert: Your Account was locked today").group(0) == "Your Account was locked"
    assert p.search("your accountant was locked out") is None
    assert OpsPattern(r"^(\w+\s?)*$").search("alpha bravo charlie delta echo foxtrot golf hotel india!") is None


def test_term_sets_with_regex_terms_are_limited_and_words_alone_stay_on_re() -> None:
    words = compile_terms({"drugs": ["buy drugs", "cocaine"]})
    assert not isinstance(words.pattern, OpsPattern)
    mixed = compile_terms({"drugs": ["cocaine", r"re:(?:buy|order)\s+(?:meth|xtc)"], "allow": ["cocaine museum"]})
    assert isinstance(mixed.pattern, OpsPattern)
    text = normalise("Order XTC now, or visit the cocaine museum, or buy cocaine.")
    assert list(mixed.scan(text)) == [("drugs", "order xtc"), ("drugs", "cocaine")]
    with pytest.raises(TermError, match="backtracks catastrophically"):
        compile_terms({"x": [r"re:^(\w|\w\w)+$"]})
