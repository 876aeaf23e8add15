"""message.header_count and message.unparseable (proxy/policy/checks/structure.py)."""

from __future__ import annotations

import sys

import pytest

from tests.policy.checks.judging import FOOTER, found, mail, policy, rules


def structure(raw: bytes, pol=None, stream: str = "marketing") -> list[str]:
    return rules(raw, pol, stream, family="message")


def add_header(raw: bytes, line: str) -> bytes:
    return line.encode() + b"\r\n" + raw


def test_one_of_each_passes() -> None:
    assert structure(mail(FOOTER)) == []


@pytest.mark.parametrize("change, detail", [
    ({"Date": None}, "0 Date headers"),
    ({"Message-ID": None}, "0 Message-ID headers"),
    ({"Subject": None}, "0 Subject headers"),
    ({"From": None}, "0 From headers"),
])
def test_missing_headers(change: dict[str, None], detail: str) -> None:
    [f] = found(mail(FOOTER, "", change), family="message")
    assert f.rule == "message.header_count" and f.detail == detail


@pytest.mark.parametrize("name", ["From", "Date", "Message-ID", "Subject"])
def test_duplicate_headers(name: str) -> None:
    raw = add_header(mail(FOOTER), f"{name}: duplicate value")
    [f] = found(raw, family="message")
    assert f.detail == f"2 {name} headers"


def test_header_list_comes_from_the_policy() -> None:
    pol = policy({"message": {"exactly_once": ["From", "Date"]}})
    assert structure(mail(FOOTER, "", {"Message-ID": None}), pol) == []


def test_header_count_applies_to_transactional_too() -> None:
    assert structure(mail(FOOTER, "", {"Date": None}), stream="transactional") == ["message.header_count"]


def nested(depth: int) -> bytes:
    head = b"From: a@shop.example.com\r\nDate: Sun, 29 Nov 2026 09:00:00 +0000\r\nMessage-ID: <n@x>\r\nSubject: nested\r\n"
    body = b""
    for i in range(depth):
        body += b"Content-Type: multipart/mixed; boundary=b%d\r\n\r\n--b%d\r\n" % (i, i)
    body += b"Content-Type: text/plain\r\n\r\nhello\r\n"
    for i in reversed(range(depth)):
        body += b"--b%d--\r\n" % i
    return head + body


@pytest.mark.parametrize("raw, reason", [
    (nested(30), "nested deeper than 20"),
    (nested(60), "more than 50 multipart containers"),
    (nested(1500), "more than 50 multipart containers (1500)"),
    (b"From: a@b.example\r\nDate: x\r\nMessage-ID: <a@b>\r\nSubject: s\r\nContent-Type: multipart/mixed\r\n\r\n--x\r\nhi\r\n--x--\r\n",
     "NoBoundaryInMultipartDefect"),
    (b"From: a@b.example\r\nDate: x\r\nMessage-ID: <a@b>\r\nSubject: s\r\nContent-Type: multipart/mixed; boundary=zz\r\n\r\nno parts at all\r\n",
     "StartBoundaryNotFoundDefect"),
    (b"From: a@b.example\r\nDate: x\r\nMessage-ID: <a@b>\r\nSubject: s\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n"
     + b"--b\r\nContent-Type: text/plain\r\n\r\nx\r\n" * 600 + b"--b--\r\n", "more than 500 MIME parts"),
    (b"From: a@b.example\r\nDate: x\r\nMessage-ID: <a@b>\r\nSubject: s\r\nContent-Type: text/html\r\n\r\n" + b"<div>" * 2000 + b"x",
     "HTML body nested too deeply"),
    (b"From: a@b.example\r\nDate: x\r\nMessage-ID: <a@b>\r\nSubject: s\r\nContent-Type: text/html\r\n\r\n" + b"<p>" + b"abc " * 300_000 + b"</p>",
     "HTML body larger than 1000000 characters"),
    (b"From: a@b.example\r\nDate: x\r\nMessage-ID: <a@b>\r\nSubject: s\r\nContent-Type: text/html\r\n\r\n" + b"<p>abc</p>" * 60_000,
     "more than 50000 HTML elements"),
    (b"From: a@b.example\r\nDate: x\r\nMessage-ID: <a@b>\r\nSubject: s\r\nContent-Type: text/html\r\n\r\n" + b'<a href="https://a.example/">x</a>' * 6000,
     "more than 5000 links"),
])
def test_unparseable(raw: bytes, reason: str) -> None:
    [f] = [f for f in found(raw, family="message") if f.rule == "message.unparseable"]
    assert reason in f.detail


def test_parser_recursion_falls_back_to_the_headers(monkeypatch: pytest.MonkeyPatch) -> None:
    import proxy.message.mime

    monkeypatch.setattr(proxy.message.mime, "MAX_MULTIPARTS", 10_000)
    monkeypatch.setattr(proxy.message.mime, "MAX_PARTS", 10_000)  # else the part limit stops the parser first
    # The relay runs at Python's default recursion limit; a test library run before this one
    # (hypothesis, mypy) may leave it raised, and 1,500 levels then parse.
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(1000)
    try:
        [f] = [f for f in found(nested(1500), family="message") if f.rule == "message.unparseable"]
    finally:
        sys.setrecursionlimit(limit)
    assert "could not be parsed (RecursionError)" in f.detail


@pytest.mark.parametrize("raw", [
    mail(FOOTER),
    b"From: a@b.example\r\nDate: x\r\nMessage-ID: <a@b>\r\nSubject: s\r\nContent-Transfer-Encoding: base64\r\n\r\n!!!not base64!!!\r\n",
    b"From: a@b.example\r\nDate: x\r\nMessage-ID: <a@b>\r\nSubject: s\r\nContent-Type: text/plain; charset=x-unknown\r\n\r\n\xff\xfe\r\n",
])
def test_ordinary_defects_are_not_unparseable(raw: bytes) -> None:
    assert "message.unparseable" not in structure(raw)
