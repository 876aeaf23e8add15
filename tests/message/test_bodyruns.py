"""Runs of body lines kept out of the parser (proxy/message/bodyruns.py, at any size of
message) change nothing: the parts, their headers, defects and payloads and every view are
those of the message parsed whole, for hostile structure (nested and digest messages, a
boundary with a colon, boundaries inside bodies, bare CR and LF, missing separators and end
boundaries) and for every message of the corpus."""

from __future__ import annotations

from pathlib import Path
from unittest import mock

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.message import elide
from proxy.message.bodyruns import body_runs
from proxy.message.mime import Message
from tests.message.test_elide import HEAD, TEXT, att, b64, blob, mixed, views

CORPUS = sorted((Path(__file__).parent.parent / "fixtures" / "corpus").glob("*.eml"))
PROSE = b"".join(b"Line %d: see https://shop.example/p/%d, with words; and = signs\r\n" % (i, i) for i in range(40))
HTML = b"<html><body>\r\n" + b"".join(b'<p style="margin:0">Item %d: <a href="https://x.example/%d">buy</a></p>\r\n' % (i, i)
                                      for i in range(40)) + b"</body></html>\r\n"


def tree(m: Message) -> list[object]:
    """Every part as the stdlib built it: type, headers, payload (elided runs put back),
    then defects (decoding base64 may add some)."""
    parts = m._tree[0]
    payloads = [None if p.is_multipart() else m._payload(p) for p in parts]
    return [(p.get_content_type(), p.get_default_type(), p.items(), p.get_unixfrom(), p.is_multipart(), payload,
             [type(d).__name__ for d in p.defects]) for p, payload in zip(parts, payloads, strict=True)]


def whole(raw: bytes) -> Message:
    with mock.patch.object(elide, "BODY_RUNS_ABOVE", len(raw) + 1), mock.patch.object(elide, "ELIDE_ABOVE", len(raw) + 1):
        m = Message.from_bytes(raw)
    assert m._elided is None
    return m


def every_run(raw: bytes) -> Message:
    with mock.patch.object(elide, "BODY_RUNS_ABOVE", 0), mock.patch.object(elide, "MIN_BODY_RUN", 1):
        return Message.from_bytes(raw)


def same(raw: bytes) -> Message:
    elided = every_run(raw)
    reference = whole(raw)
    assert tree(elided) == tree(reference)
    assert views(elided) == views(reference)
    return elided


SHAPES = {
    "alternative newsletter": HEAD + b'Content-Type: multipart/alternative; boundary="b1"\r\n\r\n--b1\r\n'
    + b"Content-Type: text/plain; charset=utf-8\r\n\r\n" + PROSE + b"--b1\r\nContent-Type: text/html; charset=utf-8\r\n"
    + b"Content-Transfer-Encoding: quoted-printable\r\n\r\n" + HTML + b"--b1--\r\n",
    "body starting with header-like lines": HEAD + b"Content-Type: text/plain\r\n\r\nhttps://x.example/\r\nNote: x\r\n"
    + PROSE,
    "no blank line after the headers": HEAD + b"Content-Type: text/html\r\n<p>first</p>\r\n" + HTML,
    "embedded message whose body starts with headers": mixed(TEXT, b"Content-Type: message/rfc822\r\n\r\n"
                                                             + b"Subject: inner\r\nContent-Type: text/html\r\n\r\n" + HTML),
    "embedded message without a blank line": mixed(b"Content-Type: message/rfc822\r\n" + b"<p>not a header</p>\r\n" + HTML),
    "digest of headerless messages": HEAD + b'Content-Type: multipart/digest; boundary="d"\r\n\r\n--d\r\n\r\n'
    + b"Subject: one\r\n\r\n" + PROSE + b"--d\r\n" + PROSE + b"--d--\r\n",
    "boundary with a colon": HEAD + b'Content-Type: multipart/mixed; boundary="b:1"\r\n\r\n--b:1\r\n'
    + b"Content-Type: text/plain\r\n\r\n" + PROSE + b"--b:1\r\nContent-Type: text/html\r\n\r\n" + HTML + b"--b:1--\r\n",
    "lines like boundaries inside the bodies": mixed(b"Content-Type: text/plain\r\n\r\n" + PROSE + b"-- \r\nsignature\r\n"
                                                     + b"--not-the-boundary\r\n" + PROSE + b"---\r\n" + PROSE, TEXT),
    "outer boundary inside an inner part": mixed(b'Content-Type: multipart/alternative; boundary="in"\r\n\r\n--in\r\n'
                                                 + TEXT + PROSE + b"--b\r\n" + HTML + b"--in--\r\n", TEXT),
    "missing end boundaries": HEAD + b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n--b\r\n'
    + b'Content-Type: multipart/alternative; boundary="in"\r\n\r\n--in\r\n' + TEXT + PROSE,
    "no start boundary": HEAD + b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n' + PROSE + HTML,
    "bare LF and CR before a boundary": mixed(b"Content-Type: text/plain\r\n\r\n" + PROSE + b"x\n--b\r\n"
                                              + b"Content-Type: text/html\r\n\r\n" + HTML + b"y\r--b\r\n" + TEXT + PROSE),
    "bare line ends in headers": HEAD + b"Content-Type: text/plain\rX-A: b\nX-B: c\r\n\r\n" + PROSE + b"tail\n" + PROSE,
    "8-bit bodies and a header without a colon": HEAD + b"Content-Type: text/plain; charset=latin-1\r\n"
    + b"not a header\r\n\xe9t\xe9\r\n" + PROSE + b"\xff\xfe\r\n" + PROSE,
    "preamble and epilogue with header-like lines": HEAD + b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n'
    + b"Preamble: x\r\n" + PROSE + b"--b\r\n" + TEXT + b"--b--\r\nEpilogue: y\r\n" + PROSE,
    "last line without its CRLF": mixed(TEXT) + PROSE + b"no line end",
    "base64 attachment, multipart transfer encoding": HEAD + b'Content-Type: multipart/mixed; boundary="b"\r\n'
    + b"Content-Transfer-Encoding: base64\r\n\r\n--b\r\n" + att(b64(blob(3000))) + b"--b\r\n" + att(b64(blob(2000))[:-7])
    + b"--b--\r\n",
    "From lines and folded lines in bodies": mixed(b"Content-Type: text/plain\r\n\r\nFrom me\r\n" + PROSE
                                                   + b" folded\r\n\tFrom x\r\n" + PROSE),
}


@pytest.mark.parametrize("name", list(SHAPES))
def test_every_part_and_view_is_the_same(name: str) -> None:
    m = same(SHAPES[name])
    assert m._elided is not None and m._elided.runs, "the shape has a run to elide"


@pytest.mark.parametrize("path", CORPUS, ids=lambda p: p.stem)
def test_the_corpus_is_read_the_same(path: Path) -> None:
    raw = path.read_bytes().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    same(raw)
    same(path.read_bytes())  # as stored, LF line ends


def test_a_newsletter_reaches_the_parser_as_headers_boundaries_and_markers() -> None:
    raw = SHAPES["alternative newsletter"].replace(b"Line ", b"Line of a longer newsletter, with many more words in it ").replace(b"<p ", b"<p class=\"row\" ")
    assert len(raw) > elide.BODY_RUNS_ABOVE
    source, elided = elide.skeleton(raw)
    assert elided is not None
    assert elided.runs == ((raw.index(b"Line of"), raw.index(b"--b1\r\nContent-Type: text/html")),
                           (raw.index(b"<html>"), raw.index(b"--b1--")))
    assert [line for line in source.split(b"\r\n") if line and b":" not in line and not line.startswith(b"--")] == [
        f"{elided.marker}0Z".encode(), f"{elided.marker}1Z".encode()]
    assert views(Message.from_bytes(raw)) == views(whole(raw))


def test_a_small_message_is_parsed_whole() -> None:
    raw = SHAPES["alternative newsletter"]
    assert len(raw) <= elide.BODY_RUNS_ABOVE
    assert Message.from_bytes(raw)._elided is None


def test_multipart_types_named_in_elided_runs_still_count() -> None:
    """The nesting bound counts "multipart/" in the message itself, not in its skeleton."""
    raw = mixed(TEXT + b"a multipart/mixed body\r\n" * 60, *[TEXT] * 50)
    m = same(raw)
    assert m._elided is not None
    assert m.problems[0] == "more than 50 multipart containers (61)"


def test_hostile_shapes_cost_a_bounded_search() -> None:
    """Past MAX_DASH_LINES lines that begin with "--", or a zone longer than MAX_ZONE, the
    search stops and the message is parsed as it is."""
    from proxy.message import bodyruns

    assert body_runs(mixed(*[TEXT] * (bodyruns.MAX_DASH_LINES - 1))) is not None  # a boundary line each, and the end
    assert body_runs(mixed(*[TEXT] * bodyruns.MAX_DASH_LINES)) is None
    assert body_runs(HEAD + b"--\r\n" * 100_000) is None
    big = HEAD + b"X-Big: " + b"a" * bodyruns.MAX_ZONE + b"\r\n\r\n" + PROSE
    assert body_runs(big) is None
    assert body_runs(big.replace(b"X-Big: " + b"a" * 200, b"")) is not None


@pytest.mark.parametrize("name", ["binary", "deep_multipart", "giant_folded_header", "huge_attachment_name", "many_parts",
                                  "message_rfc822_loop", "bare_cr_lf_mix", "no_boundary", "header_without_colon"])
def test_hostile_messages_are_read_the_same(name: str) -> None:
    from tests.message.test_mime import HOSTILE

    same(HOSTILE[name])


def test_delivery_status_and_form_feeds_are_not_read_so() -> None:
    ds = mixed(TEXT, b"Content-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; x\r\n\r\n" + PROSE)
    assert body_runs(ds) is None
    same(ds)
    assert body_runs(mixed(TEXT + b"page\x0cbreak\r\n" + PROSE)) is None
    plain = mixed(TEXT + PROSE)
    assert body_runs(plain) == [(plain.index(b"the report"), plain.index(b"--b--"))]


KINDS = [
    b"", b"--b", b"--b--", b"--b:1", b"--b:1--", b"--in", b"--in--", b"--d", b"--b \t", b"---",
    b'Content-Type: multipart/mixed; boundary="in"', b'Content-Type: multipart/alternative; boundary="b:1"',
    b'Content-Type: multipart/digest; boundary="d"', b"Content-Type: message/rfc822", b"Content-Type: text/plain",
    b"Content-Type: text/html", b"Content-Type: message/delivery-status", b"Content-Transfer-Encoding: base64",
    b"Content-Transfer-Encoding: quoted-printable", b'Content-Disposition: attachment; filename="a.pdf"',
    b"Subject: inner", b"Reporting-MTA: dns; x", b"From the start", b"From: x@example.com", b" folded", b"\tfolded",
    b"https://x.example/a", b"Note: colon", b"plain words here", b"QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo=", b"QUJD",
    b"caf\xc3\xa9 =C3=A9 soft =", b"<p>x</p>", b"\xff\xfe", b"-dash", b"page\x0c--b",
]
ENDS = [b"\r\n"] * 8 + [b"\n", b"\r"]
TOPS = [
    b'Content-Type: multipart/mixed; boundary="b"\r\n', b'Content-Type: multipart/digest; boundary="d"\r\n',
    b'Content-Type: multipart/mixed; boundary="b:1"\r\n', b"Content-Type: message/rfc822\r\n",
    b"Content-Type: text/plain\r\n", b"",
]


# lines of a body four times as likely: the rest end runs, or (VT, FF, delivery-status) all of them
LIKELY = KINDS + 3 * [b"", b"plain words here", b"https://x.example/a", b"Note: colon", b"<p>x</p>", b"QUJD", b"\xff\xfe"]


@given(st.sampled_from(TOPS), st.lists(st.tuples(st.sampled_from(LIKELY), st.sampled_from(ENDS)), min_size=1, max_size=60),
       st.booleans())
@settings(max_examples=1500, deadline=None)
def test_fuzz_eliding_every_body_run_changes_nothing(top: bytes, lines: list[tuple[bytes, bytes]], ended: bool) -> None:
    raw = HEAD + top + b"".join(line + end for line, end in lines)
    if not ended:
        raw = raw[: -len(lines[-1][1])]
    same(raw)


BODY_LINES = ["plain words here", "https://x.example/a", "Note: colon", "", "", "From me", " folded", "-- ", "--b", "--in",
              "--b:1--", "---", "<p>x</p>", "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo=", "caf\xe9 =C3=A9 =", "Subject: inner"]
PART_HEADERS = ["Content-Type: text/plain; charset=utf-8", "Content-Type: text/html", "Content-Type: message/rfc822",
                "Content-Type: message/delivery-status",
                "Content-Transfer-Encoding: base64", "Content-Transfer-Encoding: quoted-printable", "Subject: part",
                " folded", "Content-Disposition: attachment; filename=a.txt", "From the start", "not a header"]
body = st.lists(st.sampled_from(BODY_LINES), max_size=25).map(lambda lines: "".join(line + "\r\n" for line in lines))


def part(headers: list[str], separated: bool, text: str) -> str:
    return "".join(h + "\r\n" for h in headers) + ("\r\n" if separated else "") + text


leaf = st.builds(part, st.lists(st.sampled_from(PART_HEADERS), max_size=3), st.booleans(), body)


def multipart(children: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    def build(boundary: str, subtype: str, preamble: str, parts: list[str], close: bool, epilogue: str) -> str:
        head = f'Content-Type: multipart/{subtype}; boundary="{boundary}"\r\n\r\n' + preamble
        return head + "".join(f"--{boundary}\r\n{p}" for p in parts) + (f"--{boundary}--\r\n" + epilogue if close else "")
    return st.builds(build, st.sampled_from(["b", "in", "b:1", "a b", "=_x"]), st.sampled_from(["mixed", "alternative", "digest"]),
                     body, st.lists(children, max_size=4), st.booleans(), body)


@st.composite
def messages(draw: st.DrawFn) -> bytes:
    text = "From: a@example.com\r\nSubject: s\r\n" + draw(st.recursive(leaf, multipart, max_leaves=10))
    if draw(st.integers(0, 4)) == 0:
        text = text.replace("\r\n", draw(st.sampled_from(["\n", "\r"])))
    raw = text.encode("latin-1")
    for _ in range(draw(st.integers(0, 2))):  # a few octets spliced in anywhere: bare CR, LF, "--", 8-bit
        at = draw(st.integers(0, len(raw)))
        raw = raw[:at] + draw(st.sampled_from([b"\r", b"\n", b"\r\n--b\r\n", b"\n--in", b"\xff", b"\r\n\r\n"])) + raw[at:]
    return raw


@given(messages())
@settings(max_examples=1500, deadline=None)
def test_fuzz_mime_trees_read_with_every_body_run_elided_are_the_same(raw: bytes) -> None:
    same(raw)


@given(messages())
@settings(max_examples=500, deadline=None)
def test_fuzz_runs_are_ordered_whole_lines_with_no_dash_line_inside(raw: bytes) -> None:
    runs = body_runs(raw)
    if runs is None:
        return
    ends = [0] + [e for _, e in runs]
    for (s, e), before in zip(runs, ends, strict=False):
        assert before <= s < e <= len(raw)
        assert s == 0 or raw[s - 1] in b"\r\n"
        assert raw.endswith(b"\r\n", s, e) and not raw.startswith(b"--", s)
        assert b"\n--" not in raw[s:e] and b"\r--" not in raw[s:e]


def test_the_search_for_a_dash_line_jumps_over_dashes_then_scans() -> None:
    from proxy.message import bodyruns

    body = b"a-b\r\n" * 10 + b"x--\r\n"  # more "-" than the jumps, none at a line start
    assert bodyruns._dash_line(HEAD + body, len(HEAD)) == len(HEAD + body)
    assert bodyruns._dash_line(HEAD + body + b"--b\r\n", len(HEAD)) == len(HEAD + body)
    before = b"x\r\n--b\r\n"  # a dash line before the start is never found
    assert bodyruns._dash_line(before + b"a-b\r\n" * 4 + b"x\r\n", len(before)) == len(before) + 23
