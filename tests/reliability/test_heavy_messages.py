"""One message must not freeze the relay: while a heavy message is parsed and judged on one
connection, a NOOP on another is answered (the target: within 100 ms). Each shape goes through
a real `sendwarden serve`; the worst NOOP latency and the time to the reply are printed.

Shapes (from issue 17): 150,000 empty MIME parts (6 MB), 140 zip attachments of 999 entries,
200,000 links, a 20 MB attachment, three 20 MB messages at once. Limits act while parsing (the
part limit stops the parser at part 501), and a heavy message is judged in a worker thread."""

from __future__ import annotations

import asyncio
import base64
import io
import time
import zipfile

from tests.reliability.conftest import record
from tests.reliability.harness import POLICY, SENDER
from tests.reliability.latency import NoopProbe
from tests.support.smtpclient import RawClient

HEAD = (f"From: Shop <{SENDER}>\r\nTo: reader@example.org\r\nSubject: heavy\r\n"
        "Date: Fri, 04 Dec 2026 22:00:00 +0000\r\nMIME-Version: 1.0\r\n").encode()


def b64_lines(data: bytes) -> bytes:
    text = base64.b64encode(data)
    return b"\r\n".join(text[i:i + 76] for i in range(0, len(text), 76)) + b"\r\n"


def many_parts(n: int) -> bytes:
    return (HEAD + b'Message-ID: <parts@heavy.test>\r\nContent-Type: multipart/mixed; boundary="b"\r\n\r\n'
            + b"--b\r\n\r\n" * n + b"--b--\r\n")


def zips(count: int, entries: int) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        for i in range(entries):
            z.writestr(f"doc{i}.txt", b"")
    att = b64_lines(buf.getvalue())
    part = (b'--b\r\nContent-Type: application/zip\r\nContent-Disposition: attachment; filename="docs.zip"\r\n'
            b"Content-Transfer-Encoding: base64\r\n\r\n" + att)
    return (HEAD + b'Message-ID: <zips@heavy.test>\r\nContent-Type: multipart/mixed; boundary="b"\r\n\r\n'
            + b"--b\r\nContent-Type: text/plain\r\n\r\nyour documents\r\n" + part * count + b"--b--\r\n")


def links(n: int) -> bytes:
    body = b"".join(b'<a href="https://shop.example.com/p/%d">item %d</a><br>\r\n' % (i, i) for i in range(n))
    return HEAD + b"Message-ID: <links@heavy.test>\r\nContent-Type: text/html; charset=utf-8\r\n\r\n" + body


def attachment(size: int, mid: str = "big") -> bytes:
    att = b64_lines(bytes(range(256)) * (size // 256))
    return (HEAD + f'Message-ID: <{mid}@heavy.test>\r\nContent-Type: multipart/mixed; boundary="b"\r\n\r\n'.encode()
            + b"--b\r\nContent-Type: text/plain\r\n\r\nthe report\r\n"
            + b'--b\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment; filename="r.pdf"\r\n'
            + b"Content-Transfer-Encoding: base64\r\n\r\n" + att + b"--b--\r\n")


async def send(port: int, data: bytes) -> str:
    """One message over a raw connection, its bytes prepared beforehand (no line here starts
    with a dot): the test process does no per-line work that would delay its own NOOP probe."""
    assert b"\n." not in data
    c = await RawClient.connect(port)
    try:
        await c.reply()
        await c.cmd("EHLO heavy.test")
        await c.cmd(f"MAIL FROM:<{SENDER}>")
        await c.cmd("RCPT TO:<reader@example.org>")
        assert (await c.cmd("DATA")).startswith("354")
        # In 1 MB writes: one 20 MB write is copied into the transport's buffer in one go on
        # this process's event loop, which also runs the NOOP probe, and would count as the relay's.
        view = memoryview(data)
        for i in range(0, len(data), 1024 * 1024):
            c.writer.write(view[i:i + 1024 * 1024])
            await c.writer.drain()
        await c.send(b".\r\n")
        return await c.reply(timeout=120)
    finally:
        await c.close()


async def test_heavy_messages_keep_other_sessions_answered(serve, tmp_path) -> None:
    # The upstream is a Maildir, so that no sink shares the test's event loop with the probe.
    relay = await serve(f"maildir:{tmp_path / 'outbox'}", {"limits": {"max_message_size": 64 * 1024 * 1024}}, POLICY)
    shapes = {
        "150,000 empty parts": [many_parts(150_000)],
        "140 zips of 999 entries": [zips(140, 999)],
        "200,000 links": [links(200_000)],
        "20 MB attachment": [attachment(20 * 1024 * 1024)],
        "three 20 MB at once": [attachment(20 * 1024 * 1024, f"big{i}") for i in range(3)],
    }
    worst = {}
    for name, messages in shapes.items():
        async with NoopProbe(relay.port) as probe:
            # The NOOPs that matter are those while the relay judges: the data is sent first
            # (client side), so the probe runs across the end of DATA and the verdict.
            t = time.perf_counter()
            replies = await asyncio.gather(*(send(relay.port, m) for m in messages))
            seconds = time.perf_counter() - t
        assert all(r[:3] in ("250", "550") for r in replies), (name, replies)
        worst[name] = probe.ms()
        record(f"heavy: {name}", bytes=sum(len(m) for m in messages), reply=replies[0][:34].replace(",", ";"),
               seconds=round(seconds, 2), worst_noop_ms=probe.ms(), noops=probe.count)
    # The target is 100 ms (printed above); on a shared two-core machine the bound checked is
    # looser, so that the test fails on a freeze (seconds), not on noise.
    assert max(worst.values()) < 1000, worst
