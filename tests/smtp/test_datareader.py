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


_LINES = st.lists(st.sampled_from([b"", b"a", b"x" * 30, b"..dot", b"a.", b"-- b"]), max_size=30)


@settings(max_examples=300, deadline=None)
@given(lines=_LINES, cuts=st.lists(st.integers(min_value=1, max_value=40), max_size=20), budget=st.booleans())
def test_read_data_is_the_same_however_the_message_arrives(lines: list[bytes], cuts: list[int], budget: bool) -> None:
    """read_data gives what `finish` gives for the whole DATA, whether the message came in one
    block (kept as it is) or in many (gathered), with its in-flight bytes reserved and a
    command pipelined after it left in the reader."""
    import asyncio

    from proxy.smtp.inflight import InFlight

    stuffed = b"".join(line + b"\r\n" for line in lines)
    wire = stuffed + b".\r\nQUIT\r\n"

    async def read() -> tuple[DataResult, bytes, int]:
        reader = asyncio.StreamReader(limit=16)  # small: long messages also take the LimitOverrun path
        pos = 0
        for cut in cuts:
            reader.feed_data(wire[pos:pos + cut])
            pos += cut
        reader.feed_data(wire[pos:])
        in_flight = InFlight(10**6) if budget else None
        result = await datareader.read_data(reader, max_size=10**6, max_line=50, normalize=False, in_flight=in_flight)
        return result, await reader.readline(), in_flight.used if in_flight else len(stuffed)

    result, rest, used = asyncio.run(read())
    assert result == finish(stuffed, 50, False, len(stuffed))
    assert rest == b"QUIT\r\n" and used == len(stuffed)
