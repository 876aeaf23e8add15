"""Parts answer type and parameter lookups from a cache by header value (proxy/message/parts.py):
every answer is the stdlib's, for any Content-Type and Content-Disposition, asked once or again."""

from __future__ import annotations

from email.message import Message as EmailMessage
from email.parser import BytesParser
from email.policy import compat32

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.message.parts import Part

PARAM_TEXT = st.lists(st.sampled_from(list("abcAB09 \"';=*%-_./:\\\t()?") + ["\udcff", "é", "\r\n "]), max_size=24).map("".join)
VALUES = st.one_of(
    PARAM_TEXT,
    st.builds(lambda t, ps: t + "".join(f"; {k}={v}" for k, v in ps),
              st.sampled_from(["text/plain", "TEXT/HTML", "multipart/mixed", "message/rfc822", "text", "a/b/c", " text/html ", ""]),
              st.lists(st.tuples(st.sampled_from(["charset", "CHARSET", "boundary", "name", "filename", "name*", "name*0*",
                                                  "name*1", "filename*", "charset*"]), PARAM_TEXT), max_size=4)),
)
ASKED = ["charset", "boundary", "name", "filename", "NAME", "missing"]


def answers(msg: EmailMessage) -> list[object]:
    out: list[object] = []
    for ask in (msg.get_content_type, msg.get_content_maintype, msg.get_content_subtype, msg.get_boundary,
                msg.get_content_charset, msg.get_filename, lambda: msg.get_param("name", "none", "content-disposition"),
                lambda: msg.get_param("charset", unquote=False), *(lambda p=p: msg.get_param(p) for p in ASKED)):
        try:
            out.append(ask())
        except Exception as exc:  # the stdlib raises on some hostile values: so must the cache
            out.append(type(exc).__name__)
    return out


def both(headers: list[tuple[str, str]], default: str = "text/plain") -> tuple[EmailMessage, Part]:
    plain, cached = EmailMessage(policy=compat32), Part(policy=compat32)
    for m in (plain, cached):
        m.set_default_type(default)
        for name, value in headers:
            m[name] = value
    return plain, cached


@given(st.lists(st.tuples(st.sampled_from(["Content-Type", "content-type", "Content-Disposition", "X-Other"]), VALUES),
                max_size=3), st.sampled_from(["text/plain", "message/rfc822"]))
@settings(max_examples=800, deadline=None)
def test_every_answer_is_the_stdlib_s_asked_once_and_again(headers: list[tuple[str, str]], default: str) -> None:
    plain, cached = both(headers, default)
    expected = answers(plain)
    assert answers(cached) == expected
    assert answers(cached) == expected  # from the cache now
    assert answers(both(headers, default)[1]) == expected  # another part, the same values


@pytest.mark.parametrize("raw", [
    b"Content-Type: multipart/mixed; boundary=\"=_a b\"; charset*=utf-8''%E2%82%AC\r\n\r\n",
    b"Content-Type: text/plain; charset=\xc3\xa9\r\nContent-Disposition: attachment; filename*0*=utf-8''a%20b; filename*1=.exe\r\n\r\n",
    b"Content-Type: application/pdf; name=\"" + b"a" * 3000 + b".pdf\"\r\n\r\n",
    b"Content-Type: text/html\r\nContent-Type: text/plain; charset=latin-1\r\n\r\n",
])
def test_parsed_headers_8bit_long_and_repeated_are_answered_as_the_stdlib_does(raw: bytes) -> None:
    plain = BytesParser(policy=compat32).parsebytes(raw)
    cached = BytesParser(_class=Part, policy=compat32).parsebytes(raw)
    assert isinstance(cached, Part)
    assert answers(cached) == answers(plain)
