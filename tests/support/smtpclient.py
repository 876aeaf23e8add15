"""SMTP clients for tests: `send_one`, one message through a well-behaved client (aiosmtplib),
and `RawClient`, raw SMTP over asyncio streams, for the tests that need exact bytes on the wire
(smuggling probes, pipelining, malformed input) where a well-behaved client library would fix
things up for us."""

from __future__ import annotations

import asyncio
import re
from typing import Sequence

import aiosmtplib

from proxy.replies import Reply


def line_start(reply: Reply) -> str:
    """How a raw reply line to `reply` begins: "550 5.7.1 " (or "354 " without an enhanced
    code), for RawClient's replies: `line.startswith(line_start(Replies.relay_denied()))`."""
    return f"{reply.code} {reply.enhanced} " if reply.enhanced else f"{reply.code} "


def enhanced(text: str) -> str:
    """The enhanced status code (RFC 3463) that begins a reply's text, as aiosmtplib gives the
    text without the basic code: compared with `Replies.<name>(...).enhanced`."""
    return text.split(" ", 1)[0]


async def send_one(port: int, message: bytes, sender: str = "news@shop.example.com",
                   rcpts: Sequence[str] = ("reader@example.org",), timeout: float = 30) -> tuple[int, str]:
    """Send one message to 127.0.0.1:`port`; the final reply as (code, text): (250, text) when
    it was taken, else the refusal that ended it (the first refused recipient's, the sender's,
    or the reply to the data)."""
    client = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, start_tls=False, timeout=timeout)
    await client.connect()
    try:
        _, text = await client.sendmail(sender, list(rcpts), message)
        return 250, text
    except aiosmtplib.SMTPRecipientsRefused as exc:
        return exc.recipients[0].code, exc.recipients[0].message
    except aiosmtplib.SMTPResponseException as exc:
        return exc.code, exc.message
    finally:
        client.close()

_REPLY_END = re.compile(rb"^\d{3} ", re.M)


class RawClient:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def connect(cls, port: int, host: str = "127.0.0.1", local: str | None = None) -> "RawClient":
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(host, port, local_addr=(local, 0) if local else None), 5
        )
        return cls(reader, writer)

    async def reply(self, timeout: float = 10) -> str:
        """One whole (possibly multi-line) reply, lines joined with \\n."""
        lines = []
        while True:
            line = await asyncio.wait_for(self.reader.readline(), timeout)
            if not line:
                raise ConnectionError("connection closed; got " + repr(lines))
            lines.append(line.decode("utf-8", "replace").rstrip("\r\n"))
            if len(line) < 4 or line[3:4] != b"-":
                return "\n".join(lines)

    async def send(self, data: bytes | str) -> None:
        if isinstance(data, str):
            data = data.encode()
        self.writer.write(data)
        await self.writer.drain()

    async def cmd(self, line: str, timeout: float = 10) -> str:
        await self.send(line + "\r\n")
        return await self.reply(timeout)

    async def close(self) -> None:
        self.writer.close()
        try:
            await self.writer.wait_closed()
        except (ConnectionError, OSError):
            pass
