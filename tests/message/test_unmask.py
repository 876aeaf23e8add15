"""proxy.message.unmask: the passages of folded text that read differently once cheap
disguises are taken off, and nothing for ordinary text."""

from __future__ import annotations

import pytest

from proxy.message.mime import Message
from proxy.message.unmask import CONTEXT, unmask, unmasked


@pytest.mark.parametrize("written, read", [
    ("buy v1agra now", "buy viagra now"),
    ("p0rn and s3x", "porn and sex"),
    ("x4nax", "xanax"),
    ("$ex shop", "sex shop"),
    ("@mmo for sale", "ammo for sale"),
    ("try our c-a-s-i-n-o tonight", "try our casino tonight"),
    ("v i a g r a cheap", "viagra cheap"),
    ("c . a . s . i . n . o", "casino"),
    ("v 1 a g r a", "viagra"),
    ("\uff43\uff41\uff53\uff49\uff4e\uff4f bonus", "casino bonus"),  # fullwidth
    ("\U0001d41c\U0001d41a\U0001d42c\U0001d422\U0001d427\U0001d428", "casino"),  # mathematical bold
    ("c\u0430sino bonus", "casino bonus"),  # Cyrillic а
    ("vi\u00adagra", "viagra"),  # soft hyphen
    ("vi\u200bag\u200dra", "viagra"),  # zero-width space and joiner
    ("c\u0332a\u0332s\u0332i\u0332n\u0332o\u0332", "casino"),  # combining low line under each letter
    ("\u24d2\u24d0\u24e2\u24d8\u24dd\u24de", "casino"),  # circled letters
    ("v-1-a-g-r-a", "viagra"),
    ("v1@gr@ now", "viagra now"),
])
def test_disguises_are_taken_off(written: str, read: str) -> None:
    assert read in unmasked(written)


def test_a_one_reads_as_i_and_as_l() -> None:
    assert set(unmask("b1owjob")) == {"biowjob", "blowjob"}


@pytest.mark.parametrize("text", [
    "open 10am to 3pm, 1st floor, mp3 downloads, 40% off, $99 only, 4x4 tyres",
    "write to info@shop.example.com or see https://shop.example.com/p/a1b2",
    "größe, straße, żółć, cocaïne, çà et là",  # letters with diacritics are letters
    "полиция задержала сегодня",  # a word of another script, written in it
    "a b",  # two single letters are not a split word
])
def test_ordinary_text_reads_as_written(text: str) -> None:
    assert unmasked(text) == ()


def test_passages_carry_context_and_merge() -> None:
    filler = "word " * 100
    text = filler + "c-a-s-i-n-o " + filler + "x4nax " + filler * 3 + "v1agra"
    passages = unmasked(text)
    # casino and xanax stand 500 characters apart: two passages; v1agra reads two ways.
    assert [("casino" in p, "xanax" in p, "viagra" in p) for p in passages] == [
        (True, False, False), (False, True, False), (False, False, True), (False, False, False)]
    assert passages[3].endswith("vlagra")
    assert all(len(p) >= 2 * CONTEXT - 10 for p in passages[:2])
    # Close together, their passages merge.
    [merged] = unmasked(filler + "c-a-s-i-n-o word x4nax " + filler)
    assert "casino word xanax" in merged


def test_many_disguises_read_the_whole_text_again() -> None:
    text = " ".join(f"w0rd{i}" for i in range(100)) + " c-a-s-i-n-o"
    [whole_i, whole_l] = unmasked(text)
    assert whole_i.endswith("casino") and whole_i.startswith("wordo wordi")


def test_the_message_unmasks_once() -> None:
    raw = (b"From: a@example.com\r\nTo: b@example.org\r\nSubject: Cheap v1agra\r\n"
           b"Content-Type: text/html; charset=utf-8\r\n\r\n<p>Try our c&shy;asino and ca<b>s</b>ino</p>\r\n")
    msg = Message.from_bytes(raw)
    assert msg.unmasked_text is msg.unmasked_text
    assert any("cheap viagra" in p and "try our casino" in p for p in msg.unmasked_text)


def test_odd_characters_are_all_outside_ascii() -> None:
    """_suspect looks for look-alike, invisible and combining characters among a text's
    non-ASCII characters only."""
    from proxy.message.unmask import _ODD

    assert _ODD and not any(c.isascii() for c in _ODD)


@pytest.mark.parametrize("odd", ["\u0430", "\u00ad", "\u0301", "\uff41"])
def test_one_odd_character_in_plain_text_is_suspect(odd: str) -> None:
    text = f"plain words, then p{odd}ypal, then more words €"
    assert unmasked(text) == unmasked(text, set(text.split()))
    assert unmasked(text) != ()


def test_the_lone_letters_are_the_letters_that_are_no_word() -> None:
    """Taken once at import: the difference _suspect took per message."""
    from proxy.message import unmask

    assert unmask._LONE_LETTERS == unmask._LETTERS - unmask._WORD_LETTERS
