"""Long base64-alphabet runs kept out of the parser (proxy/message/elide.py) change nothing a
check sees: every view of a message is the same with and without eliding, for the shapes that
matter (attachments, plain bodies, runs next to boundaries and headers, broken base64, 8-bit
text, nested messages) and for every message of the corpus with a big attachment added."""

from __future__ import annotations

import base64
import random
from pathlib import Path
from unittest import mock

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.message import elide
from proxy.message.mime import Message

CORPUS = sorted((Path(__file__).parent.parent / "fixtures" / "corpus").glob("*.eml"))
HEAD = b"From: Shop <shop@example.com>\r\nTo: reader@example.org\r\nSubject: elide\r\nMIME-Version: 1.0\r\n"


def b64(data: bytes, width: int = 76) -> bytes:
    text = base64.b64encode(data)
    return b"".join(text[i:i + width] + b"\r\n" for i in range(0, len(text), width))


def blob(n: int, seed: int = 1) -> bytes:
    return random.Random(seed).randbytes(n)


def mixed(*parts: bytes, boundary: bytes = b"b") -> bytes:
    body = b"".join(b"--" + boundary + b"\r\n" + p for p in parts)
    return HEAD + b'Content-Type: multipart/mixed; boundary="' + boundary + b'"\r\n\r\n' + body + b"--" + boundary + b"--\r\n"


def att(payload: bytes, name: str = "r.pdf", cte: bytes = b"base64") -> bytes:
    return (b"Content-Type: application/pdf\r\nContent-Disposition: attachment; filename=\"" + name.encode()
            + b"\"\r\nContent-Transfer-Encoding: " + cte + b"\r\n\r\n" + payload)


TEXT = b"Content-Type: text/plain; charset=utf-8\r\n\r\nthe report\r\n"
LINES = b"".join(b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ+/\r\n" for _ in range(5000))

PROSE = "".join(f"Line {i} of the report, with words, commas; café ünd 😀 and = signs\r\n" for i in range(6000)).encode()

SHAPES = {
    "base64 attachment": mixed(TEXT, att(b64(blob(300_000)))),
    "attachment without padding, odd line width": mixed(TEXT, att(b64(blob(300_001), 70))),
    "two attachments, the second last before the end boundary": mixed(att(b64(blob(200_000)), "a.bin"),
                                                                     att(b64(blob(250_000, 2)), "b.zip")),
    "attachment with a bad character in the middle": mixed(TEXT, att(b64(blob(120_000)) + b"!!\r\n" + b64(blob(120_000, 3)))),
    "attachment with padding in the middle": mixed(TEXT, att(b64(blob(100_001)) + b64(blob(150_000, 4)))),
    "attachment missing its last characters": mixed(TEXT, att(b64(blob(300_000))[:-5] + b"\r\n")),
    "quoted-printable body of plain lines": mixed(att(LINES + b"caf=C3=A9 =\r\nend\r\n", "q.txt", b"quoted-printable")),
    "plain text body": HEAD + b"Content-Type: text/plain\r\n\r\n" + LINES * 2,
    "plain text body with 8-bit text around it": HEAD + b"Content-Type: text/plain; charset=utf-8\r\n\r\ncaf\xc3\xa9\r\n"
    + LINES + b"\xe2\x82\xac\r\n" + LINES,
    "html body of plain lines": HEAD + b"Content-Type: text/html\r\n\r\n<p>" + LINES + b"</p>\r\n",
    "no blank line after the headers": HEAD + LINES * 2,
    "embedded message": mixed(b"Content-Type: message/rfc822\r\n\r\n" + mixed(TEXT, att(b64(blob(200_000))), boundary=b"in")),
    "prose text body, 8-bit": HEAD + b"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
    + PROSE,
    "prose html body with a header-like line and a From line inside":
    HEAD + b"Content-Type: text/html; charset=utf-8\r\n\r\n<p>" + PROSE + b"Note: not a header\r\nFrom me\r\n"
    + b"From the start\r\n -- indented\r\n" + PROSE + b"</p>\r\n",
    "prose with form feeds and a boundary after one":
    mixed(TEXT, b"Content-Type: text/plain\r\n\r\n" + PROSE + b"page\x0c--b\r\nContent-Type: text/html\r\n\r\n<b>x</b>\r\n"
          + PROSE + b"\x1cgroup\r\n" + PROSE),
    "quoted-printable prose attachment": mixed(TEXT, att(PROSE.replace(b"=", b"=3D").replace(b"\xc3\xa9", b"=C3=A9")
                                                         .replace(b"\r\n", b" =\r\n"), "p.txt", b"quoted-printable")),
    "8-bit inside base64-looking lines": mixed(TEXT, att(b64(blob(200_000)).replace(b"A", b"\xc3\xa9", 5))),
    "delivery status report (blank lines count there)": mixed(
        TEXT, b"Content-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; x\r\n\r\nAction: failed\r\n" + LINES
        + b"\r\n" + LINES + b"Status: 5.0.0\r\n", att(b64(blob(200_000)))),
    "run in the preamble and epilogue": HEAD + b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n' + LINES
    + b"--b\r\n" + TEXT + b"--b--\r\n" + LINES,
}


def views(m: Message) -> dict[str, object]:
    return {
        "items": m.items(),
        "subject": m.subject,
        "text": m.text,
        "html": m.html,
        "attachments": [(a.filename, a.content_type, a.payload, a.names) for a in m.attachments],
        "problems": m.problems,
        "defects": m.defects,
        "links": m.links,
    }


def parsed_whole(raw: bytes, monkeypatch: pytest.MonkeyPatch) -> Message:
    with monkeypatch.context() as mp:
        mp.setattr(elide, "ELIDE_ABOVE", len(raw) + 1)
        mp.setattr(elide, "BODY_RUNS_ABOVE", len(raw) + 1)
        m = Message.from_bytes(raw)
        assert m._elided is None
        views(m)
        return m


@pytest.mark.parametrize("name", list(SHAPES))
def test_every_view_is_the_same_with_and_without_eliding(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    raw = SHAPES[name]
    whole = parsed_whole(raw, monkeypatch)
    skeletal = Message.from_bytes(raw)
    assert skeletal._elided is not None and skeletal._elided.runs, "the shape has a run to elide"
    assert views(skeletal) == views(whole)


@pytest.mark.parametrize("name", list(SHAPES))
def test_every_view_is_the_same_with_only_inert_runs_elided(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The context-free way, which big messages that the body-run reading does not hold for
    (delivery-status, a VT or FF) still take."""
    raw = SHAPES[name]
    whole = parsed_whole(raw, monkeypatch)
    monkeypatch.setattr(elide, "BODY_RUNS_ABOVE", len(raw) + 1)
    skeletal = Message.from_bytes(raw)
    assert skeletal._elided is not None and skeletal._elided.runs, "the shape has a run to elide"
    assert views(skeletal) == views(whole)


@pytest.mark.parametrize("path", CORPUS, ids=lambda p: p.stem)
def test_the_corpus_with_a_big_attachment_judges_the_same(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    original = path.read_bytes().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    head, _, body = original.partition(b"\r\n\r\n")
    raw = mixed(head.split(b"\r\n", 1)[0] + b"\r\n" + b"X-Original: yes\r\n\r\n" + body, att(b64(blob(300_000))))
    whole = parsed_whole(raw, monkeypatch)
    assert views(Message.from_bytes(raw)) == views(whole)
    # and the message as it is, whatever its size
    assert views(Message.from_bytes(original)) == views(parsed_whole(original, monkeypatch))


def test_the_parser_sees_a_skeleton_and_the_payload_comes_from_the_message() -> None:
    payload = blob(2_000_000)
    raw = mixed(TEXT, att(b64(payload)))
    source, elided = elide.skeleton(raw)
    assert elided is not None and len(elided.runs) == 1
    assert len(source) < 1000
    [attachment] = Message.from_bytes(raw).attachments
    assert attachment.payload == payload


def test_short_runs_and_small_messages_are_parsed_whole(monkeypatch: pytest.MonkeyPatch) -> None:
    assert elide.skeleton(mixed(TEXT, att(b64(blob(1000)))))[1] is None
    small_runs = mixed(*(att(b64(blob(20_000, i))) for i in range(20)))
    assert len(small_runs) > elide.ELIDE_ABOVE
    monkeypatch.setattr(elide, "BODY_RUNS_ABOVE", len(small_runs) + 1)
    assert elide.skeleton(small_runs)[1] is None


@pytest.mark.parametrize("name", ["plain text body", "plain text body with 8-bit text around it", "html body of plain lines",
                                  "prose text body, 8-bit", "prose html body with a header-like line and a From line inside"])
def test_text_cut_at_its_limit_is_the_same(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Only what the text views keep is put back: the cut falls inside a run."""
    from proxy.message import mime

    monkeypatch.setattr(mime, "MAX_TEXT_CHARS", 70_001)
    monkeypatch.setattr(mime, "MAX_HTML_BYTES", 50_003)
    raw = SHAPES[name]
    whole = parsed_whole(raw, monkeypatch)
    assert views(Message.from_bytes(raw)) == views(whole)
    assert len(whole.text) == 70_001 or len(whole.html) == 50_003


LINE_KINDS = [
    b"", b"--b", b"--b--", b"--in", b"--in--", b"Content-Type: multipart/mixed; boundary=\"in\"",
    b"Content-Type: text/plain", b"Content-Type: text/html", b"Content-Type: message/rfc822",
    b"Content-Transfer-Encoding: base64", b"Content-Transfer-Encoding: quoted-printable",
    b"Content-Disposition: attachment; filename=\"a.pdf\"", b"QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo=", b"QUJD",
    b"SGVsbG8gd29ybGQh", b"plain words here", b"caf\xc3\xa9 =C3=A9 soft =", b"From the start", b" folded",
    b"\tfolded", b"Note: colon", b"page\x0c--b", b"group\x1cx", b"<a href=\"https://x.example/\">x</a>", b"-dash",
]


@given(st.lists(st.sampled_from(LINE_KINDS), min_size=1, max_size=60))
@settings(max_examples=400, deadline=None)
def test_fuzz_eliding_every_run_changes_no_view(lines: list[bytes]) -> None:
    """Random messages of the line kinds that matter, with every run elided however short:
    every view is the one of the message parsed whole."""
    raw = HEAD + b'Content-Type: multipart/mixed; boundary="b"\r\n' + b"\r\n".join(lines) + b"\r\n"
    with mock.patch.object(elide, "ELIDE_ABOVE", len(raw) + 1), mock.patch.object(elide, "BODY_RUNS_ABOVE", len(raw) + 1):
        whole = views(Message.from_bytes(raw))
    with mock.patch.object(elide, "ELIDE_ABOVE", 0), mock.patch.object(elide, "MIN_RUN", 1), \
            mock.patch.object(elide, "BODY_RUNS_ABOVE", len(raw) + 1):
        skeletal = Message.from_bytes(raw)
        assert views(skeletal) == whole


@pytest.mark.parametrize("size", [300_000, 300_001, 300_002])
def test_a_base64_attachment_is_decoded_from_the_message_bytes(size: int) -> None:
    """Padded or not, plain base64 takes the windowed way (not the stdlib's copies)."""
    raw = mixed(TEXT, att(b64(blob(size))))
    m = Message.from_bytes(raw)
    assert m._elided is not None
    part = m._bodies[2][0]
    assert m._elided._base64(part._payload, raw) == blob(size)  # type: ignore[attr-defined]


@given(st.lists(st.sampled_from(LINE_KINDS + [b"QUJD==", b"a-b", b"x\ty", b"From", b"From:"]), min_size=1, max_size=30))
@settings(max_examples=400, deadline=None)
def test_fuzz_the_whole_window_shortcut_is_the_line_pattern(lines: list[bytes]) -> None:
    window = b"\r\n".join(lines) + b"\r\n"
    assert elide._inert(window) == bool(elide._RUN.fullmatch(window))
