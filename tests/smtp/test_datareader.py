"""The end of DATA (proxy/smtp/datareader.py `finish`): the bare line end check, the unstuffing
and the line length check find what the plain byte counts find, on any bytes, in one window
(its regex scan) as in several (its counts)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.message.lineends import normalize_line_endings
from proxy.smtp import datareader
from proxy.smtp.datareader import DataResult, finish


def reference(data: bytes, max_line: int, normalize: bool) -> DataResult:
    """`finish` as three byte counts and a find over the whole message (its first form)."""
    crlf = data.count(b"\r\n")
    bare = data.count(b"\r") != crlf or data.count(b"\n") != crlf
    if bare and not normalize:
        return DataResult(None, len(data), "bare_eol")
    if bare or data.startswith(b".") or b"\r\n.." in data:
        data = data[1:] if data.startswith(b".") else data
        data = data.replace(b"\r\n..", b"\r\n.")
        if bare:
            data = normalize_line_endings(data)
    if datareader.has_long_line(data, max_line):
        return DataResult(None, len(data), "line_too_long")
    return DataResult(data, len(data))


_PIECES = st.sampled_from([b"\r\n", b"\r", b"\n", b".", b"..", b"a", b"x" * 9, b"\r\n.", b"\r\n..", b"\n.", b"\r."])


@settings(max_examples=1500, deadline=None)
@given(pieces=st.lists(_PIECES, max_size=40), normalize=st.booleans(), window=st.sampled_from([None, 4, 16]))
def test_finish_is_the_plain_counts(pieces: list[bytes], normalize: bool, window: int | None) -> None:
    data = b"".join(pieces)
    slice_ = datareader.SLICE
    datareader.SLICE = window or slice_  # a small window: several of them, the counting path
    try:
        assert finish(data, 20, normalize) == reference(data, 20, normalize)
    finally:
        datareader.SLICE = slice_
