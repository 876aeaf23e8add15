"""The parsed view survives hostile input: every message gets a verdict, no check raises."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.message.mime import Message, decode_header
from proxy.policy.engine import judge
from proxy.policy.loader import BUILTIN_DEFAULT, load_policy
from proxy.policy.registry import Context
from proxy.policy.verdict import Action

POLICY = load_policy(BUILTIN_DEFAULT)
HDR = b"From: a@shop.example.com\r\nTo: b@example.org\r\nSubject: hostile\r\nDate: Sun, 29 Nov 2026 09:00:00 +0000\r\nMessage-ID: <h@x>\r\n"


def deep_multipart(depth: int) -> bytes:
    body = b"".join(b"Content-Type: multipart/mixed; boundary=b%d\r\n\r\n--b%d\r\n" % (i, i) for i in range(depth))
    return HDR + body + b"Content-Type: text/plain\r\n\r\nhi\r\n" + b"".join(b"--b%d--\r\n" % i for i in reversed(range(depth)))


HOSTILE = {
    "empty": b"",
    "only_crlf": b"\r\n\r\n",
    "binary": bytes(range(256)) * 400,
    "giant_header": HDR + b"X-Big: " + b"a" * 3_000_000 + b"\r\n\r\nbody",
    "giant_folded_header": HDR + b"X-Folded: a\r\n" + b" b\r\n" * 100_000 + b"\r\nbody",
    "many_headers": b"".join(b"X-H%d: v\r\n" % i for i in range(50_000)) + HDR + b"\r\nbody",
    "deep_multipart": deep_multipart(3000),
    "html_10mb": HDR + b"Content-Type: text/html\r\n\r\n" + b"<div><p>hello <a href='https://x.example/'>x</a></p></div>" * 180_000,
    "html_deep": HDR + b"Content-Type: text/html\r\n\r\n" + b"<div>" * 200_000,
    "charset_idna": HDR + b"Content-Type: text/plain; charset=idna\r\n\r\n\xff\xfe garbage",
    "charset_unknown": HDR + b"Content-Type: text/html; charset=x-made-up\r\n\r\n<p>\xff</p>",
    "charset_rot13": HDR + b"Content-Type: text/plain; charset=rot13\r\n\r\nhello",
    "charset_utf16_odd": HDR + b"Content-Type: text/html; charset=utf-16\r\n\r\n\xff",
    "charset_rfc2231_bogus": HDR + b"Content-Type: text/plain; charset*=x''%ff%fe\r\n\r\nhello",
    "nul_bytes": HDR + b"Content-Type: text/html\r\n\r\n<p>a\x00b</p><a href='https://x.example/\x00'>u</a>",
    "xml_declaration": HDR + b"Content-Type: text/html\r\n\r\n<?xml version='1.0' encoding='utf-8'?><html><body><a href='https://x.example/u'>Unsubscribe</a></body></html>",
    "no_boundary": HDR + b"Content-Type: multipart/mixed\r\n\r\n--x\r\nhi\r\n",
    "bad_base64": HDR + b"Content-Type: text/html\r\nContent-Transfer-Encoding: base64\r\n\r\n!!!!====****\r\n",
    "bad_qp": HDR + b"Content-Type: text/html\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n=ZZ=\r\n=",
    "bad_encoded_words": b"Subject: =?utf-8?B?####?= =?bogus?Q?x?= =?utf-8?Q?=FF=FE?=\r\nFrom: =?x?B?AAAA?= <a@b.example>\r\n\r\nx",
    "eight_bit_headers": b"Subject: \xc3\xa9t\xc3\xa9 \xff\xfe\r\nFrom: \xc3\xa9 <a@b.example>\r\n\r\nx",
    "rfc2231_broken": HDR + b"Content-Type: application/octet-stream; name*0*=bogus''%zz; name*2=x\r\nContent-Disposition: attachment; filename*=''\r\n\r\nabc",
    "many_parts": HDR + b"Content-Type: multipart/mixed; boundary=b\r\n\r\n" + b"--b\r\nContent-Type: text/plain\r\n\r\nx\r\n" * 5000 + b"--b--\r\n",
    "message_rfc822_loop": HDR + b"Content-Type: message/rfc822\r\n\r\n" + b"Content-Type: message/rfc822\r\n\r\n" * 2000 + b"x",
    "header_without_colon": b"this is not a header\r\nFrom: a@b.example\r\n\r\nbody",
    "bare_cr_lf_mix": HDR + b"Content-Type: text/html\r\n\r\n<p>a\rb\nc</p>",
    "huge_attachment_name": HDR + b"Content-Type: application/octet-stream\r\nContent-Disposition: attachment; filename=\"" + b"a" * 100_000 + b".exe\"\r\n\r\nMZ",
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_input_gets_a_verdict_without_check_errors(name: str) -> None:
    msg = Message.from_bytes(HOSTILE[name])
    verdict = judge(POLICY, msg, Context(stream="marketing", marketing=True))
    assert verdict.action in (Action.RELAY, Action.QUARANTINE, Action.REJECT)
    assert "check.error" not in verdict.rules, [j.finding.detail for j in verdict.judged]
    # every view property answers
    assert isinstance(msg.subject, str) and isinstance(msg.visible_text, str) and isinstance(msg.problems, tuple)


@pytest.mark.parametrize("name", ["deep_multipart", "html_10mb", "html_deep", "no_boundary", "many_parts"])
def test_partial_views_are_reported_unparseable(name: str) -> None:
    verdict = judge(POLICY, Message.from_bytes(HOSTILE[name]), Context())
    assert "message.unparseable" in verdict.rules


def test_charset_fallbacks_keep_the_text() -> None:
    assert "garbage" in Message.from_bytes(HOSTILE["charset_idna"]).text
    assert Message.from_bytes(HOSTILE["charset_rot13"]).text == "hello"


def test_xml_declared_html_is_read() -> None:
    [link] = Message.from_bytes(HOSTILE["xml_declaration"]).html_view.anchors
    assert link.text == "Unsubscribe"


def test_eight_bit_headers_are_utf8() -> None:
    msg = Message.from_bytes(HOSTILE["eight_bit_headers"])
    assert msg.subject.startswith("été ")
    assert msg.from_addresses == [("é", "a@b.example")]


def test_decode_header_never_raises() -> None:
    assert isinstance(decode_header("=?utf-8?B?####?="), str) and decode_header(None) == ""
    assert decode_header("=?idna?Q?=FF?=") is not None
    assert decode_header("=?iso-8859-1?Q?caf=E9?= au lait") == "café au lait"


def test_visible_text_of_an_ordinary_newsletter() -> None:
    raw = HDR + (b"Content-Type: text/html; charset=utf-8\r\n\r\n<html><head><title>T</title><style>p{}</style></head><body>"
                 b"<span style='display:none'>preheader</span><p>Hello <b>wor</b>ld</p><table><tr><td>a</td><td>b</td></tr></table>"
                 b"<script>x()</script></body></html>")
    assert Message.from_bytes(raw).visible_text == "Hello world a b"


def test_the_parsers_trailing_newline_search_answers_as_its_regex() -> None:
    """proxy.message.mime swaps the stdlib feedparser's end-of-payload regex for a look at the end
    of the text (the regex scanned every payload whole); the answers must be the regex's."""
    import itertools
    import re
    from email import feedparser

    regex = re.compile(r"(\r\n|\r|\n)\Z")
    assert not isinstance(feedparser.NLCRE_eol, re.Pattern)
    for parts in itertools.product(["", "a", "\r", "\n", "\r\n", "x\r", "\n\r", "é"], repeat=3):
        text = "".join(parts)
        want, got = regex.search(text), feedparser.NLCRE_eol.search(text)
        assert (want is None) == (got is None), repr(text)
        assert want is None or want.group(0) == got.group(0), repr(text)


def test_folded_words_are_the_words_of_the_folded_text() -> None:
    """The word set is built from the HTML view's tokens, lower-cased one by one: it must be
    what splitting the folded text would give (Turkish dotted I, final sigma, punctuation)."""
    from proxy.message.patterns import word_set

    html = ("<p>İSTANBUL <b>ΟΔΟΣ</b>ΣΑΣ get-rich_quick!! V<span>iagra</span></p><div>Crème\u00a0BRÛLÉE</div>"
            "<p>(ΣΑΣ) e-mail&nbsp;NOW</p>")
    raw = (b"From: a@shop.example.com\r\nTo: b@example.org\r\nSubject: Hello \xc3\x8eSTANBUL\r\n"
           b"MIME-Version: 1.0\r\nContent-Type: multipart/alternative; boundary=b\r\n\r\n"
           b"--b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nPlain \xce\xa3\xce\x91\xce\xa3 words, MORE_words\r\n"
           b"--b\r\nContent-Type: text/html; charset=utf-8\r\n\r\n" + html.encode() + b"\r\n--b--\r\n")
    msg = Message.from_bytes(raw)
    assert msg.folded_words == word_set(msg.folded_text)
    assert {"viagra", "i", "stanbul", "brûlée", "more_words", "οδοσσας", "σας", "rich_quick"} <= msg.folded_words
    assert msg.folded_text == msg.folded_text.lower() and "  " not in msg.folded_text


_HEADER_BYTES = st.lists(st.sampled_from([b"plain", b" ", b"=?utf-8?q?caf=C3=A9?=", b"caf\xc3\xa9", b"\xff\xfe", b"\x80", b"\t", b"\r\n folded",
                                          b"<a@b.example>", b"\xe2\x80\x99"]), max_size=6).map(b"".join)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([b"Subject", b"X-A", b"x-a", b"From", b"List-Unsubscribe"]), _HEADER_BYTES), max_size=6))
def test_header_index_holds_what_get_all_hands_back(headers: list[tuple[bytes, bytes]]) -> None:
    """The index by name skips the stdlib's surrogate test for ASCII values: it holds what
    the stdlib's get_all gives (a Header object where a value holds undecodable bytes)."""
    raw = b"".join(name + b": " + value + b"\r\n" for name, value in headers) + b"\r\nbody\r\n"
    msg = Message.from_bytes(raw)
    for name in {name.decode() for name, _ in headers}:
        expected = msg._msg.get_all(name) or []
        got = msg._by_name.get(name.lower(), [])
        assert [(type(v), str(v)) for v in got] == [(type(v), str(v)) for v in expected]
