"""Fuzzing (hypothesis): the message parser and every check of the default policy, the DATA
reader, the DSN-parameter parser and the reply decorator, and whole SMTP dialogues against a
running relay. A small number of examples in CI; SENDWARDEN_FUZZ=long for long runs by hand
(README.md here). Every crash found is pinned below with @example, so it stays fixed."""

from __future__ import annotations

import asyncio
import os
import re
import socket
import threading
from typing import Iterator

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from proxy.message.mime import Message
from proxy.policy.engine import judge
from proxy.policy.loader import BUILTIN_DEFAULT, load_policy
from proxy.policy.registry import Context
from proxy.smtp.datareader import END, has_long_line, normalize_line_endings, read_data, unstuff
from proxy.smtp.server import _DSN_MAIL, _DSN_RCPT, _XTEXT, _split_dsn, with_enhanced

# CI: a bounded run. SENDWARDEN_FUZZ=long: 20,000 examples per target; SENDWARDEN_FUZZ=N: N.
_RUN = os.environ.get("SENDWARDEN_FUZZ", "")
settings.register_profile("ci", max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("long", max_examples=int(_RUN) if _RUN.isdigit() else 20_000, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("long" if _RUN else "ci")

POLICY = load_policy(BUILTIN_DEFAULT)

# -- messages -----------------------------------------------------------------------------------

HEADER_NAMES = ["From", "To", "Cc", "Subject", "Reply-To", "Sender", "Message-ID", "Date", "MIME-Version",
                "List-Unsubscribe", "List-Unsubscribe-Post", "Content-Type", "Content-Transfer-Encoding",
                "Content-Disposition", "DKIM-Signature", "Received", "X-Mailer"]
CHARSETS = ["utf-8", "iso-8859-1", "us-ascii", "shift_jis", "utf-16", "x-unknown", "", "utf-8*en", "unknown-8bit"]

words = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=40)
encoded_word = st.builds(lambda cs, enc, text: f"=?{cs}?{enc}?{text}?=", st.sampled_from(CHARSETS),
                         st.sampled_from(["B", "Q", "b", "q", "X", ""]), st.text("AZaz09+/=_?%-", max_size=30))
address = st.one_of(st.emails().map(str), st.text("abc@.<>\"(),:;\\ ", max_size=30))
address_list = st.lists(st.tuples(words, address), max_size=4).map(
    lambda pairs: ", ".join(f'"{n}" <{a}>' if n else a for n, a in pairs))
content_type = st.builds(
    lambda kind, cs, b: f"{kind}; charset={cs}; boundary=\"{b}\"",
    st.sampled_from(["text/plain", "text/html", "multipart/mixed", "multipart/alternative", "message/rfc822",
                     "application/octet-stream", "application/x-msdownload", "text/x-bogus", "garbage"]),
    st.sampled_from(CHARSETS), st.text("abcXYZ019'()+_,-./:=? ", max_size=20))
header_value = st.one_of(words, encoded_word, address_list, content_type,
                         st.lists(st.one_of(words, encoded_word), max_size=5).map(" ".join),
                         st.binary(max_size=60).map(lambda b: b.decode("latin-1")),
                         st.sampled_from(["<https://example.com/u>, <mailto:u@example.com>", "List-Unsubscribe=One-Click",
                                          "base64", "quoted-printable", "attachment; filename=\"a.exe\"", "1.0"]))
header = st.tuples(st.one_of(st.sampled_from(HEADER_NAMES), st.text("abcXYZ-_!#", min_size=1, max_size=12)), header_value)
body_text = st.one_of(st.text(max_size=300), st.binary(max_size=300).map(lambda b: b.decode("latin-1")),
                      st.sampled_from(["<html><body><a href=\"https://x.example/u\">unsubscribe</a><form><input type=password></form>",
                                       "PGh0bWw+PGJvZHk+aGk8L2JvZHk+PC9odG1sPg==", "=C3=BC=\r\nsoft break", "<a href='javascript:x'>"]))


def part(headers: list[tuple[str, str]], body: str) -> str:
    return "".join(f"{n}: {v}\r\n" for n, v in headers) + "\r\n" + body


leaf = st.builds(part, st.lists(header, max_size=4), body_text)


def multipart(children: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    def build(boundary: str, subtype: str, parts: list[str], close: bool) -> str:
        head = f"Content-Type: multipart/{subtype}; boundary=\"{boundary}\"\r\n\r\n"
        return head + "".join(f"--{boundary}\r\n{p}\r\n" for p in parts) + (f"--{boundary}--\r\n" if close else "")
    return st.builds(build, st.text("abcXYZ019", min_size=1, max_size=10), st.sampled_from(["mixed", "alternative", "related"]),
                     st.lists(children, max_size=4), st.booleans())


mime_tree = st.recursive(leaf, multipart, max_leaves=12)
line_endings = st.sampled_from(["\r\n", "\n", "\r"])


@st.composite
def messages(draw: st.DrawFn) -> bytes:
    top = draw(st.lists(header, max_size=8))
    text = "".join(f"{n}: {v}\r\n" for n, v in top) + draw(mime_tree)
    if draw(st.booleans()):  # sometimes the wrong line endings everywhere
        text = text.replace("\r\n", draw(line_endings))
    raw = text.encode("utf-8", "surrogatepass")
    if draw(st.booleans()):  # and sometimes raw bytes spliced in anywhere
        at = draw(st.integers(0, len(raw)))
        raw = raw[:at] + draw(st.binary(max_size=40)) + raw[at:]
    return raw


def judge_everything(raw: bytes) -> None:
    msg = Message.from_bytes(raw)
    # Every accessor a check may use must answer, never raise.
    _ = (msg.subject, msg.from_addresses, msg.text, msg.html, msg.html_view, msg.visible_text, msg.links,
         msg.attachments, msg.defects, msg.problems, msg.headers("To"), msg.addresses("Reply-To"))
    for stream, marketing in (("marketing", True), ("transactional", False)):
        verdict = judge(POLICY, msg, Context(stream=stream, marketing=marketing, mail_from="a@example.com",
                                             rcpts=("b@example.org",), client_ip="127.0.0.1"))
        # A check that raised shows up as check.error: every one of those is a bug.
        assert "check.error" not in verdict.rules, [j.finding.detail for j in verdict.judged]


@given(messages())
@example(b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n' * 3000)  # the parser's recursion limit
@example(b"From: " + b"(" * 5000 + b"a@b.example\r\n\r\n")  # nested comments: recursion in the address parser
@example(b"Subject: =?utf-8?b?" + b"\xff" * 10 + b"?=\r\n\r\n")
@example(b"Content-Disposition: \xc2\x80\r\n\r\n")  # found: a Header object where a str was expected
@example(b"To: =??B?0?=\r\n\r\n")  # found: bad base64 in an encoded word raised HeaderParseError
def test_fuzz_message_view_and_every_check(raw: bytes) -> None:
    judge_everything(raw)


@given(st.binary(max_size=2000))
def test_fuzz_message_view_on_raw_bytes(raw: bytes) -> None:
    judge_everything(raw)


# -- the DATA reader ------------------------------------------------------------------------------


def reference(stream: bytes, max_size: int, max_line: int, normalize: bool) -> tuple[bytes | None, str, bytes]:
    """What read_data must return, computed on the whole stream at once: (content, error, rest)."""
    s = b"\r\n" + stream  # the DATA command line ended with CRLF
    end = s.find(END)
    if end == -1:
        return None, "eof", b""
    raw, rest = s[2:end + 2], s[end + len(END):]
    if len(raw) > max_size:
        return None, "too_large", rest
    crlf = raw.count(b"\r\n")
    if raw.count(b"\r") != crlf or raw.count(b"\n") != crlf:
        if not normalize:
            return None, "bare_eol", rest
        data = normalize_line_endings(unstuff(raw))
    else:
        data = unstuff(raw)
    if data and max(len(line) for line in data.split(b"\r\n")) > max_line:
        return None, "line_too_long", rest
    return data, "", rest


data_bytes = st.lists(st.one_of(st.sampled_from([b"\r\n", b".", b"\r", b"\n", b"..", b"\r\n.\r\n", b".\r\n", b"x", b"\x00"]),
                                st.binary(max_size=20)), max_size=60).map(b"".join)


@given(data_bytes, st.lists(st.integers(1, 64), min_size=1, max_size=20), st.integers(4, 80), st.integers(0, 400),
       st.integers(1, 50), st.booleans())
@example(b".\r\n", [1], 16, 100, 10, False)  # the empty message: its CRLF was in the DATA line
@example(b"a\r\n.\r\nNOOP\r\n", [1], 4, 100, 10, False)  # pipelined: the rest stays unread
def test_fuzz_data_reader_against_a_reference(stream: bytes, cuts: list[int], limit: int, max_size: int,
                                             max_line: int, normalize: bool) -> None:
    """The stream arrives in pieces of arbitrary sizes, into a reader with a small buffer limit
    (so the overrun path runs too): the outcome must be what the whole stream says."""

    async def run() -> tuple[bytes | None, str, bytes]:
        reader = asyncio.StreamReader(limit=limit)
        pos, i = 0, 0
        while pos < len(stream):
            n = cuts[i % len(cuts)]
            reader.feed_data(stream[pos:pos + n])
            pos, i = pos + n, i + 1
        reader.feed_eof()
        result = await read_data(reader, max_size=max_size, max_line=max_line, normalize=normalize)
        return result.content, result.error, await reader.read()

    content, error, rest = asyncio.run(run())
    want_content, want_error, want_rest = reference(stream, max_size, max_line, normalize)
    assert (error, content) == (want_error, want_content)
    if error != "eof":
        assert rest == want_rest


@given(st.lists(st.integers(0, 40), max_size=12), st.booleans(), st.integers(0, 42))
@example([10, 11], False, 10)  # the second line is one octet over
@example([10], False, 10)  # a last line without CRLF, exactly at the limit
def test_fuzz_long_line_against_split(lengths: list[int], last_crlf: bool, limit: int) -> None:
    data = b"\r\n".join(b"x" * n for n in lengths) + (b"\r\n" if last_crlf and lengths else b"")
    assert has_long_line(data, limit) == (bool(data) and max(map(len, data.split(b"\r\n"))) > limit)


# -- DSN parameters and enhanced codes --------------------------------------------------------------

dsn_token = st.one_of(
    st.builds(lambda k, v: f"{k}={v}", st.sampled_from(["RET", "ret", "ENVID", "NOTIFY", "notify", "ORCPT", "SIZE", "BODY", "X"]),
              st.one_of(st.sampled_from(["FULL", "HDRS", "SUCCESS,FAILURE", "NEVER", "NEVER,DELAY", "rfc822;a@b.example",
                                         "a+2Bb", "+ZZ", "", "8BITMIME"]), st.text(max_size=20))),
    st.text(max_size=12))


@given(st.lists(dsn_token, max_size=6).map(" ".join), st.sampled_from([_DSN_MAIL, _DSN_RCPT]))
def test_fuzz_dsn_parameters(params: str, allowed: set[str]) -> None:
    out = _split_dsn(params, allowed)
    if isinstance(out, str):
        assert out  # an error text for the 501
        return
    dsn, rest = out
    assert set(dsn) <= allowed and all(dsn.values())
    assert all(_XTEXT.match(v) for k, v in dsn.items() if k in ("ENVID", "ORCPT"))
    # What is left is the other parameters, untouched and in order; parsing it again finds no DSN.
    others = [t for t in params.split() if t.partition("=")[0].upper() not in allowed]
    assert rest.split() == others
    assert _split_dsn(rest, allowed) == ({}, rest)


@given(st.integers(200, 599), st.sampled_from([" ", "-"]), st.text(max_size=40))
def test_fuzz_enhanced_status_codes(code: int, sep: str, text: str) -> None:
    status = f"{code}{sep}{text}"
    out = with_enhanced(status)
    if out == status:
        return
    # Only a final reply line gets a code, one of its own class, and the text is kept.
    assert sep == " " and out.startswith(f"{code} {str(code)[0]}.") and out.endswith(text)
    assert with_enhanced(out) == out


# -- whole SMTP dialogues -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def relay_in_a_thread(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """A relay and its sink on their own event loop in a thread, so that hypothesis can drive
    plain blocking sockets at it, one dialogue per example."""
    from proxy.runtime.service import Service
    from tests.conftest import make_config
    from tests.support.sink import Sink

    tmp = tmp_path_factory.mktemp("fuzz-relay")
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    state: dict[str, object] = {}

    async def main() -> None:
        sink = await Sink().start()
        service = Service(make_config(tmp, sink.url, {"timeouts": {"command": 5}, "limits": {"max_recipients": 5}}),
                          load_policy(BUILTIN_DEFAULT))
        await service.start()
        state.update(port=service.addresses[0][1], stop=asyncio.Event(), service=service)
        ready.set()
        await state["stop"].wait()  # type: ignore[attr-defined]
        await service.stop()
        await sink.stop()

    thread = threading.Thread(target=loop.run_until_complete, args=(main(),), daemon=True)
    thread.start()
    assert ready.wait(20)
    yield state["port"]  # type: ignore[misc]
    loop.call_soon_threadsafe(state["stop"].set)  # type: ignore[attr-defined]
    thread.join(20)
    loop.close()


COMMANDS = ["HELO", "EHLO", "MAIL FROM:", "RCPT TO:", "DATA", "RSET", "NOOP", "QUIT", "VRFY", "HELP", "AUTH PLAIN",
            "AUTH LOGIN", "STARTTLS", "BDAT", "mail from:", "RCPT TO: "]
arguments = st.one_of(
    st.builds(lambda a, p: f"<{a}>{p}", address, st.sampled_from(["", " SIZE=100", " BODY=8BITMIME", " SMTPUTF8",
                                                                  " NOTIFY=SUCCESS", " ORCPT=rfc822;x@y.example",
                                                                  " RET=HDRS ENVID=abc", " SIZE=x", " FOO=bar"])),
    st.text(max_size=30), st.binary(max_size=30).map(lambda b: b.decode("latin-1")))
command_line = st.builds(lambda c, a: (c + a).encode("utf-8", "surrogateescape").replace(b"\r", b"").replace(b"\n", b""),
                         st.sampled_from(COMMANDS), arguments)
REPLY = re.compile(rb"^\d{3}[ -]")


def dialogue(port: int, lines: list[bytes], data: bytes) -> list[bytes]:
    """Send the lines one by one (the data after a 354), collect every reply line."""
    replies: list[bytes] = []
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        f = s.makefile("rb")

        def reply() -> bytes:
            out = b""
            while True:
                try:
                    line = f.readline()
                except ConnectionResetError:  # the relay hung up (too many bad commands) and we wrote on
                    line = b""
                if not line:
                    return out
                replies.append(line)
                out += line
                if line[3:4] != b"-":
                    return out

        reply()
        for line in lines:
            try:
                s.sendall(line + b"\r\n")
            except (BrokenPipeError, ConnectionResetError):
                break
            answer = reply()
            if not answer:
                break
            if answer.startswith(b"354"):
                s.sendall(data + b"\r\n.\r\n")
                reply()
            elif answer.startswith(b"334"):
                s.sendall(b"*\r\n")  # cancel the AUTH exchange
                reply()
            elif answer.startswith((b"221", b"421", b"502 5.5.1 Too many", b"220")):  # closing, or TLS next
                break
    return replies


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(st.lists(command_line, max_size=12), messages())
@example(lines=[b"MAIL FROM:0@"], data=b"\r\n")  # found: IndexError in the address parser, 451 internal error
def test_fuzz_smtp_dialogues(relay_in_a_thread: int, lines: list[bytes], data: bytes) -> None:
    """Any sequence of (half-)commands and any message: every reply is a proper reply line,
    and none is the 451 that means an exception escaped into the session."""
    data = data.replace(b"\r\n.\r\n", b"\r\n..\r\n")
    for line in dialogue(relay_in_a_thread, [b"EHLO fuzz.test", *lines], data):
        assert REPLY.match(line), line
        assert b"Internal error" not in line, line
