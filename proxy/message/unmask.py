"""The text as the content lists read it once its cheap disguises are taken off.

A sender who wants "viagra" or "casino" past a word list writes `v1agra`, `ｃａｓｉｎｏ`,
`cаsino` (a Cyrillic а), `c-a-s-i-n-o`, `v i a g r a` or `vi\u00adagra`: a reader still reads
the word. `unmasked(folded_text)` returns the passages of the message's folded text (lower
case, whitespace collapsed: proxy.message.mime.Message.folded_text) where such a disguise
sits, each read as a reader reads it:
- Unicode NFKC (fullwidth and mathematical letters, ligatures) and case folding;
- zero-width characters, soft hyphens and other invisible format characters removed, and the
  combining marks NFKC could not compose (c̲a̲s̲i̲n̲o̲);
- letters of other scripts that look like Latin ones (Unicode's confusables.txt, the data the
  `confusable-homoglyphs` package ships and proxy.message.domains already uses) mapped to
  their Latin letter, in words that mix them with Latin letters;
- digits and symbols written for letters (0 o, 1 i or l, 3 e, 4 a, 5 s, 7 t, @ a, $ s, ! i,
  | l) inside words;
- single letters split by spaces, dots, hyphens or similar joined into one word.
Words split by HTML tags or entities are already whole in the visible text
(proxy/message/html.py joins inline elements and decodes entities).

Only passages around a disguise are returned, each with `CONTEXT` characters either side, so
that a phrase or an offer around the disguised word is read whole while an ordinary message
(which has none) costs two regex searches over its text. Leaving the ordinary reading alone
matters: numbers stay numbers ("40% off"), and "c4 explosives" still reads as written.
"""

from __future__ import annotations

import re
import unicodedata

from confusable_homoglyphs.confusables import confusables_data

__all__ = ["CONTEXT", "unmask", "unmasked"]

# Characters of context either side of a disguise: more than the longest phrase, and as
# much as an offer's cues are looked for around its subject (proxy.policy.checks.content).
CONTEXT = 200
# More disguised spots than this: the whole text is read again (cheaper than many passages).
_MANY = 40

_INVISIBLE_CHARS = "\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180e\u200b\u200c\u200d\u200e\u200f\u2060\u2061\u2062\u2063\u2064\ufeff"
# Combining marks left after NFKC composed what it could (c̲a̲s̲i̲n̲o̲ with U+0332 under each
# letter): over a Latin letter they decorate it, they do not make another word.
_COMBINING_CHARS = "".join(chr(c) for lo, hi in ((0x0300, 0x0370), (0x1AB0, 0x1B00), (0x1DC0, 0x1E00), (0x20D0, 0x2100), (0xFE20, 0xFE30))
                           for c in range(lo, hi) if unicodedata.combining(chr(c)))
_INVISIBLE = dict.fromkeys(map(ord, _INVISIBLE_CHARS + _COMBINING_CHARS))
_LEET_I = str.maketrans("013457@$!|", "oieastasil")
_LEET_L = str.maketrans("013457@$!|", "oleastasil")


def _lookalikes() -> dict[int, str]:
    """Non-Latin characters that confusables.txt says look like one Latin letter: Cyrillic а,
    Greek ο, Armenian օ... (Latin letters with diacritics are real letters in the languages
    the lists cover, and stay)."""
    out: dict[int, str] = {}
    for char, entries in confusables_data.items():
        if len(char) != 1 or char.isascii():
            continue
        try:
            if unicodedata.name(char).startswith("LATIN"):
                continue
        except ValueError:
            continue
        for entry in entries:
            target = entry["c"]
            if len(target) == 1 and target.isascii() and target.isalpha():
                out[ord(char)] = target.lower()
                break
    return out


def _compatibility_letters() -> str:
    """Characters that NFKC turns into ASCII letters or digits: fullwidth, mathematical,
    enclosed and small-capital forms, ligatures."""
    ranges = ((0x00A0, 0x0300), (0x1D00, 0x1DC0), (0x2000, 0x2500), (0x3200, 0x3400), (0xFB00, 0xFB50),
              (0xFF00, 0xFFF0), (0x1D400, 0x1D800), (0x1F100, 0x1F200))
    found = []
    for lo, hi in ranges:
        for cp in range(lo, hi):
            ch = chr(cp)
            norm = unicodedata.normalize("NFKC", ch)
            if norm != ch and norm.isascii() and any(c.isalnum() for c in norm):
                found.append(ch)
    return "".join(found)


_LOOKALIKE = _lookalikes()
_ODD_CHARS_RAW = "".join(sorted({chr(c) for c in _LOOKALIKE} | set(_INVISIBLE_CHARS) | set(_COMBINING_CHARS) | set(_compatibility_letters())))
# Leet: a digit or symbol between letters (v1agra, s3x, p0rn, x4nax), `$` or `@` opening a
# word ($ex, @mmo), or a digit ending a word of three letters or more (porn0). "10am", "3pm",
# "1st", "mp3" and prices do not match.
_LEET = r"[a-z][013457@$!|]+[a-z]|(?<![^\s(\"'])[$@][a-z]|[a-z]{3}[013457]+(?![\w])"
# Single letters (or digits) split by a space, or by a dot, hyphen, underscore, asterisk,
# middle dot or slash with optional spaces: c-a-s-i-n-o, v i a g r a, c . a . s . i . n . o
_SEP_CHARS = r"\s.\-_*·/+~"
_SEP = r"(?:\s?[.\-_*·/+~]\s?|\s)"
_RUN = rf"(?<![\w.\-])[^\W_]{_SEP}[^\W_](?![^\W_])(?:{_SEP}[^\W_](?![^\W_])){{1,}}"
_RUN_ONLY = re.compile(_RUN)
# The searches over a whole message start with one character class each, so that the regex
# engine skips to the next candidate character in C (a leading letter class or lookbehind
# makes it try every position: ten times the cost). What they find is then read by _RUN and
# _LEET in the passage around it.
_LEET_SPOT = re.compile(r"[013457@$!|](?:(?<=[a-z][013457$!|])[013457@$!|]*[a-z]|(?<=[a-z]@)[a-z](?![\w-]*\.\w)"
                        r"|(?<=[a-z]{3}.)[013457]*(?!\w)|(?<=[\s(\"'].)(?<=[$@])[a-z])")
# Three single letters split by separators; within one token (c-a-s-i-n-o), only the others.
_RUN_SPOT = re.compile(rf"[{_SEP_CHARS}](?<=[^\W_].)(?<![\w.\-]..)(?:(?<=\s)(?:[.\-_*·/+~]\s?)?|(?<!\s)\s?)"
                       rf"[^\W_](?![^\W_]){_SEP}[^\W_](?![^\W_])")
_TOKEN_RUN_SPOT = re.compile(r"[.\-_*·/+~](?<=[^\W_].)(?<![\w.\-]..)[^\W_][.\-_*·/+~][^\W_](?![^\W_])")
_ODD = frozenset(_ODD_CHARS_RAW)
_NON_ASCII = re.compile(r"[^\x00-\x7f]")  # _ODD holds none of ASCII (tests/message/test_unmask.py)
# Single letters that are words of their own in the languages the lists cover ("a", "i",
# Polish "w", "z"...): a text with no other single letter cannot hold a word split by spaces.
_WORD_LETTERS = frozenset("aeiouyéèàòùwzk&")
_LETTERS = frozenset(chr(c) for c in range(ord("a"), ord("z") + 1))
# The single letters that are no word: one of them standing alone may be a word split up.
_LONE_LETTERS = _LETTERS - _WORD_LETTERS
_SEPARATORS = re.compile(r"[\s.\-_*·/+~]")
_LEET_WORD = re.compile(rf"\S*(?:{_LEET})\S*")
_EMAIL_OR_URL = re.compile(r"[^\s@]+@[\w-]+\.[\w.-]+|\w+://\S+|www\.\S+")
_LOOKALIKE_CHARS = frozenset(chr(c) for c in _LOOKALIKE)


def _join_run(m: re.Match[str]) -> str:
    return _SEPARATORS.sub("", m.group(0))


def _latin(word: str) -> str:
    if not any("a" <= c <= "z" for c in word):
        return word  # a word of another script, written in it: not a disguise
    mapped = word.translate(_LOOKALIKE)
    return "".join(c for c in unicodedata.normalize("NFD", mapped) if not unicodedata.combining(c))


def unmask(passage: str) -> tuple[str, ...]:
    """The readings of one passage with its disguises taken off: one, or two where a `1` or
    `|` may stand for either i or l. Pure; the passage is folded text."""
    text = unicodedata.normalize("NFKC", passage).casefold().translate(_INVISIBLE) if not passage.isascii() else passage
    if not text.isascii() and not _LOOKALIKE_CHARS.isdisjoint(text):
        text = " ".join(_latin(w) if not _LOOKALIKE_CHARS.isdisjoint(w) else w for w in text.split(" "))
    text = _RUN_ONLY.sub(_join_run, text)
    if not _LEET_WORD.search(text):
        return (text,)
    spans = [m.span() for m in _LEET_WORD.finditer(text) if not _EMAIL_OR_URL.fullmatch(m.group(0).strip(".,;:!?()\"'"))]
    readings = []
    for table in (_LEET_I, _LEET_L):
        out, at = [], 0
        for a, b in spans:
            out += [text[at:a], text[a:b].translate(table)]
            at = b
        out.append(text[at:])
        readings.append("".join(out))
    return tuple(dict.fromkeys(readings))


def _suspect(folded: str, tokens: frozenset[str] | set[str]) -> bool:
    """Whether the text may hold a disguise at all: looked for in its distinct tokens (a few
    thousand characters, however long the text), so that ordinary mail costs two searches of
    those and two set operations. E-mail addresses and URLs ("?u=7f3a") are no disguise."""
    joined = " " + " ".join(tokens)  # a space before each token: `$ex` opens one
    for m in _LEET_SPOT.finditer(joined):
        a, b = joined.rfind(" ", 0, m.start()) + 1, joined.find(" ", m.end())
        if not _EMAIL_OR_URL.search(joined[a:b if b >= 0 else None]):
            return True
    if _TOKEN_RUN_SPOT.search(joined):  # c-a-s-i-n-o, c.a.s.i.n.o: one token
        return True
    if not _LONE_LETTERS.isdisjoint(tokens) and _RUN_SPOT.search(folded):  # v i a g r a
        return True
    # Every odd character is non-ASCII: only the text's non-ASCII characters are looked up
    # (a set look-up per character of the whole text took a third of this function's time).
    return not joined.isascii() and not _ODD.isdisjoint(_NON_ASCII.findall(joined))


def unmasked(folded: str, tokens: frozenset[str] | set[str] | None = None) -> tuple[str, ...]:
    """Passages of `folded` text that read differently with their disguises taken off, as
    read so (each disguise with CONTEXT characters around it; overlapping passages merged).
    Empty for ordinary text, which is what nearly every message is. `tokens`: the text's
    distinct whitespace-separated tokens, when known."""
    if not _suspect(folded, tokens if tokens is not None else set(folded.split())):
        return ()
    spaced = " " + folded  # as in _suspect; positions are one on
    found = [m.start() - 1 for m in _LEET_SPOT.finditer(spaced)] + [m.start() - 2 for m in _RUN_SPOT.finditer(spaced)]
    if not folded.isascii():
        for char in _ODD.intersection(folded):
            i = folded.find(char)
            while i >= 0:
                found.append(i)
                i = folded.find(char, i + 1)
    windows: list[list[int]] = []
    for count, at in enumerate(sorted(found), 1):
        if count > _MANY:
            windows = [[0, len(folded)]]
            break
        a, b = max(at - CONTEXT, 0), at + CONTEXT
        if windows and a <= windows[-1][1]:
            windows[-1][1] = max(windows[-1][1], b)
        else:
            windows.append([a, b])
    out: list[str] = []
    for a, b in windows:
        # Widen to whole words: a cut word could read as another.
        while a > 0 and not folded[a - 1].isspace():
            a -= 1
        b = min(b, len(folded))
        while b < len(folded) and not folded[b].isspace():
            b += 1
        passage = folded[a:b]
        out.extend(r for r in unmask(passage) if r != passage)
    return tuple(out)
