"""Regular expressions that ops write in policy files, run with a time limit per match.

A backtracking engine can take exponential time on a pattern such as `^(\\w|\\w\\w)+$`: with the
standard library's `re`, `^(\\w+\\s?)*$` in `[checks.subject] patterns` made a nine-word subject
take 20 s and froze the live relay. Every pattern a policy file supplies (`re:` terms of word
lists, subject patterns, `credential_fields`) therefore runs here:

- on the `regex` package (mrab-regex), which keeps the syntax of `re` (lookarounds included,
  which the term sets wrap every term in) and takes a `timeout` per call. A pattern that runs
  out of time raises `PatternTimeout`; the engine turns it into a `check.error` finding with
  the policy's action for it (quarantine by default), never a stall.
- at load, each pattern is compiled and then tried on a few texts known to make backtracking
  patterns explode; one that runs out of time there is refused with the reason, so that
  `policy check` says so instead of `ok`.

Why not google-re2 (linear time by construction): it has no lookarounds and no backreferences,
so the term sets' word-boundary wrapping `(?<!\\w)...(?!\\w)` and ops' existing patterns would
need rewriting, and it logs its parse errors to stderr through absl. Measured on the 7 KB
newsletter_en text with the en+nl lists (scan with the word prefilter, 500 runs): `re` 0.10 ms,
`regex` with a timeout 0.14 ms (the whole-text pass without prefilter: 1.2 ms against 4.5 ms,
which is why sets of plain words stay on `re`: they are built by us, from a trie, and cannot
backtrack badly). `regex` itself also runs `^(\\w+\\s?)*$` in linear time (it detects the
repeated group); `^(\\w|\\w\\w)+$` on 26 letters and a `!` is cut off by the timeout.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import regex

__all__ = ["MATCH_TIMEOUT", "PER_CHAR", "OpsPattern", "PatternError", "PatternTimeout"]

# Seconds one call may take, plus PER_CHAR for each character of the text searched (a whole-text
# scan of a large message by a legitimate pattern must not run out: about 0.6 us a character was
# measured for the en+nl content pattern). `regex` looks at the clock only now and then: a call
# given 10 / 25 / 50 ms ended after about 40 / 100 / 200 ms, so the limit is set at a quarter of
# what a session may wait (100 ms). The load-time probes get more (PROBE_TIMEOUT), so that a busy
# machine does not refuse a policy at start; a pattern that needs that long on 30 characters is
# hopeless anyway.
MATCH_TIMEOUT = 0.015
PER_CHAR = 1e-6
PROBE_TIMEOUT = 0.05
# Texts that make nested or overlapping repeats backtrack exponentially: long runs of word
# characters or of words, each ended by a character that makes the match fail at the very end.
_PROBES = ("a" * 28 + "!", "1" * 28 + "!", " ".join(["word"] * 14) + "!", "a " * 20 + "!", "x" * 24 + "\x00")


def _limit(text: str) -> float:
    return MATCH_TIMEOUT + len(text) * PER_CHAR


class PatternError(ValueError):
    """A pattern that cannot be used: invalid, or too slow on the load-time probes."""


class PatternTimeout(TimeoutError):
    """A pattern ran out of time on a text (a `check.error`, not a verdict)."""

    def __init__(self, source: str) -> None:
        super().__init__(f"the policy pattern {source[:80]!r} ran out of time ({MATCH_TIMEOUT * 1000:.0f} ms + 1 ms per KB)")
        self.source = source


class OpsPattern:
    """A compiled ops pattern with the methods of `re.Pattern` that checks use, each call bounded
    by MATCH_TIMEOUT + PER_CHAR per character of its text."""

    __slots__ = ("_rx", "source")

    def __init__(self, source: str, flags: int = 0, probe: bool = True) -> None:
        try:
            self._rx: Any = regex.compile(source, flags | regex.VERSION0)
        except (regex.error, ValueError, OverflowError, RecursionError) as exc:
            raise PatternError(f"not a valid regular expression: {exc}") from None
        self.source = source
        if probe:
            for text in _PROBES:
                try:
                    self._rx.search(text, timeout=PROBE_TIMEOUT)
                except TimeoutError:
                    raise PatternError(
                        f"backtracks catastrophically: searching {text[:12]!r}... ({len(text)} characters) took longer "
                        f"than {PROBE_TIMEOUT * 1000:.0f} ms; avoid nested or overlapping repeats such as (\\w+\\s?)*"
                    ) from None

    @property
    def pattern(self) -> str:
        return self.source

    def search(self, text: str, pos: int = 0) -> Any:
        try:
            return self._rx.search(text, pos, timeout=_limit(text))
        except TimeoutError:
            raise PatternTimeout(self.source) from None

    def match(self, text: str, pos: int = 0) -> Any:
        try:
            return self._rx.match(text, pos, timeout=_limit(text))
        except TimeoutError:
            raise PatternTimeout(self.source) from None

    def fullmatch(self, text: str) -> Any:
        try:
            return self._rx.fullmatch(text, timeout=_limit(text))
        except TimeoutError:
            raise PatternTimeout(self.source) from None

    def finditer(self, text: str) -> Iterator[Any]:
        """Every match; the time limit holds for the whole scan."""
        try:
            yield from self._rx.finditer(text, timeout=_limit(text))
        except TimeoutError:
            raise PatternTimeout(self.source) from None
