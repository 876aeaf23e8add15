"""The SMTP client side: one connection to the upstream MTA, with pipelined transactions.

aiosmtplib answers one command per round trip, parses one reply per read, and re-stuffs and
re-normalises every message with regular expressions (about 0.7 ms for 30 KB). The relay
sends many messages over a few pooled connections to one MTA, so this small client does only
what that needs and does it in as few round trips as RFC 2920 allows:

    [RSET] [XFORWARD] MAIL FROM, RCPT TO..., DATA   one write, then one reply each
    the message, dot-stuffed, and "."    one write, then the final reply

The message bytes are canonical already (CRLF lines: the DATA reader, and the quarantine's
release, see to it), so dot-stuffing is one bytes.replace per window of the message. The
message goes out in windows of WINDOW bytes, each one `writelines` (under uvloop one writev:
the relay's headers, a small message and its final dot leave in one syscall and one segment),
with a drain after each: a window without a line
that starts with a dot is written as a memoryview of the message (no copy), and the loop is
never held by one 20 MB copy (asyncio's transport copies what the socket did not take at once).
Without PIPELINING in the EHLO reply the commands go one
at a time. When MAIL or a recipient is refused but the MTA still said 354 to DATA, the
message is not sent: the connection is closed, which aborts the transaction.
"""

from __future__ import annotations

import asyncio
import re
import ssl
from dataclasses import dataclass, field, replace
from typing import Iterator

__all__ = ["ClientError", "Connection", "SendOutcome", "Stale", "open_connection"]

MAX_REPLY_LINES = 100  # an EHLO reply has a dozen; more is a broken or hostile server
MAX_LINE = 8192
WINDOW = 256 * 1024  # bytes of the message written before waiting for the socket to take them
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class ClientError(Exception):
    """The upstream broke the protocol or went away; the message is not there."""


class Stale(ClientError):
    """A pooled connection turned out dead before the message was sent: safe to retry."""


@dataclass(frozen=True, slots=True)
class SendOutcome:
    """How a transaction ended: the deciding reply, and whether the message was accepted."""

    code: int
    text: str
    delivered: bool
    stage: str  # "mail", "rcpt", "data" (the DATA command) or "end" (after the message)
    rcpt: str = ""  # the refused recipient, when stage == "rcpt"
    xforward: str = ""  # the upstream's refusal of XFORWARD ("501 ..."), when it refused it


@dataclass
class Connection:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    command_timeout: float
    extensions: dict[str, str] = field(default_factory=dict)
    needs_rset: bool = False  # a transaction was left open by a refusal
    used: bool = False

    # -- replies ------------------------------------------------------------------------------

    async def _reply(self) -> tuple[int, str]:
        """One (possibly multi-line) reply: its code and its text lines joined by newlines."""
        lines: list[str] = []
        while True:
            try:
                raw = await self.reader.readuntil(b"\n")
            except asyncio.IncompleteReadError as exc:
                raise ClientError("the upstream closed the connection") from exc
            except asyncio.LimitOverrunError as exc:
                raise ClientError("the upstream sent a reply line that is too long") from exc
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            if len(line) < 3 or not line[:3].isdigit() or line[3:4] not in ("", " ", "-"):
                raise ClientError(f"the upstream sent a malformed reply: {line[:80]!r}")
            lines.append(line[4:])
            if line[3:4] != "-":
                return int(line[:3]), "\n".join(lines)
            if len(lines) >= MAX_REPLY_LINES:
                raise ClientError("the upstream sent a reply with too many lines")

    async def _replies(self, count: int, timeout: float) -> list[tuple[int, str]]:
        async with asyncio.timeout(timeout):
            return [await self._reply() for _ in range(count)]

    async def command(self, line: str, timeout: float | None = None) -> tuple[int, str]:
        self._write(line.encode("utf-8") + b"\r\n")
        [reply] = await self._replies(1, timeout or self.command_timeout)
        return reply

    def _write(self, data: bytes | memoryview) -> None:
        if self.writer.is_closing():
            raise ClientError("the connection to the upstream is closed")
        self.writer.write(data)

    # -- session --------------------------------------------------------------------------------

    async def hello(self, name: str) -> None:
        """EHLO (HELO when the server does not know EHLO), recording the extensions."""
        code, text = await self.command(f"EHLO {name}")
        if code == 250:
            self.extensions = {}
            for line in text.split("\n")[1:]:
                keyword, _, params = line.strip().partition(" ")
                self.extensions[keyword.upper()] = params
            return
        code, text = await self.command(f"HELO {name}")
        if code != 250:
            raise ClientError(f"the upstream refused HELO: {code} {text}")
        self.extensions = {}

    def supports(self, extension: str) -> bool:
        return extension.upper() in self.extensions

    async def starttls(self, context: ssl.SSLContext, server_hostname: str, timeout: float) -> None:
        code, text = await self.command("STARTTLS")
        if code != 220:
            raise ClientError(f"the upstream refused STARTTLS: {code} {text}")
        async with asyncio.timeout(timeout):
            await self.writer.start_tls(context, server_hostname=server_hostname)

    @property
    def is_open(self) -> bool:
        return not self.writer.is_closing() and not self.reader.at_eof()

    def close(self) -> None:
        self.writer.close()

    async def quit(self) -> None:
        try:
            await self.command("QUIT", timeout=2)
        except (ClientError, OSError, TimeoutError):
            pass
        finally:
            self.close()

    # -- one message ----------------------------------------------------------------------------

    async def transaction(self, mail: str, rcpts: list[tuple[str, str]], data: bytes, data_timeout: float,
                          xforward: list[str] | None = None, head: bytes = b"") -> SendOutcome:
        """Send one message. `mail` is "<sender> PARAMS", each recipient ("<rcpt> PARAMS",
        address); `head` (header lines the relay prepends) and then `data` the message with CRLF
        lines, not dot-stuffed, sent as one without joining them; `xforward` the XFORWARD
        commands that go first (proxy/outbound/xforward.py). XFORWARD only changes what the
        upstream logs: its refusal is reported in the SendOutcome and the message still goes.
        Raises Stale when a reused connection is found dead before the message went out,
        ClientError (or OSError, TimeoutError) when the upstream failed during the transaction."""
        preamble = ["RSET"] if self.needs_rset else []
        preamble += xforward or []
        commands = [*preamble, f"MAIL FROM:{mail}", *(f"RCPT TO:{r}" for r, _ in rcpts), "DATA"]
        if any(_CONTROL.search(c) for c in commands):
            raise ValueError("control characters in an envelope address or parameter")
        reused, self.used = self.used, True
        wire = [c.encode("utf-8") for c in commands]
        try:
            if self.supports("PIPELINING"):
                self._write(b"\r\n".join(wire) + b"\r\n")
                replies = await self._replies(len(wire), self.command_timeout)
            else:
                replies = []
                for i, cmd in enumerate(wire):
                    self._write(cmd + b"\r\n")
                    replies.append((await self._replies(1, self.command_timeout))[0])
                    if replies[-1][0] >= 400 and i >= len(preamble):
                        break
        except (ClientError, OSError) as exc:
            if reused:
                raise Stale(str(exc) or type(exc).__name__) from exc
            raise
        if self.needs_rset:
            rset, *replies = replies
            if rset[0] != 250:
                raise ClientError(f"the upstream refused RSET: {rset[0]} {rset[1]}")
            self.needs_rset = False
        refused_xforward = ""
        for code, text in replies[: len(xforward or [])]:
            if code >= 300 and not refused_xforward:
                refused_xforward = f"{code} {' '.join(text.split())}"
        replies = replies[len(xforward or []):]
        refusal = _refusal(replies, rcpts)
        if refusal is not None:
            if replies[-1][0] == 354 and len(replies) == len(rcpts) + 2:
                self.close()  # said 354 all the same: only a closed connection aborts it now
            else:
                self.needs_rset = True
            return replace(refusal, xforward=refused_xforward)
        async with asyncio.timeout(data_timeout):
            for window in _stuffed_windows(head, data):
                if self.writer.is_closing():
                    raise ClientError("the connection to the upstream is closed")
                self.writer.writelines(window)  # one writev: a message of one window is one write
                await self.writer.drain()
            code, text = await self._reply()
        return SendOutcome(code, text, 200 <= code < 300, "end", xforward=refused_xforward)


def _refusal(replies: list[tuple[int, str]], rcpts: list[tuple[str, str]]) -> SendOutcome | None:
    """The first refusal among the replies to MAIL, RCPT... and DATA, or None."""
    for i, (code, text) in enumerate(replies):
        if i == 0:
            if code >= 300:
                return SendOutcome(code, text, False, "mail")
        elif i <= len(rcpts):
            if code >= 300:
                return SendOutcome(code, text, False, "rcpt", rcpts[i - 1][1])
        elif code != 354:
            return SendOutcome(code, text, False, "data")
    if len(replies) < len(rcpts) + 2:  # one at a time, stopped early (cannot happen: no refusal)
        return SendOutcome(451, "incomplete replies from the upstream", False, "data")
    return None


def _stuffed(data: bytes) -> bytes:
    """The message as it goes on the wire: ending in CRLF, leading dots doubled. Its lines are
    CRLF already: the DATA reader refuses or rewrites bare line ends, and a release from the
    quarantine mends stored bytes the same way (proxy/transaction/release.py)."""
    if not data.endswith(b"\r\n"):
        data += b"\r\n"
    data = data.replace(b"\r\n.", b"\r\n..")
    return b"." + data if data.startswith(b".") else data


def _stuffed_windows(head: bytes, data: bytes) -> Iterator[list[bytes | memoryview]]:
    """`_stuffed(head + data) + b".\r\n"`, as windows of about WINDOW bytes, each a list of
    pieces for one `writelines` (one writev, where a write per piece was a syscall and a
    segment each); only the windows that have a line starting with a dot are copied. `head`,
    when given, is whole CRLF lines, so `data` starts a line too. Each window but the first is
    cut just before a CRLF, so that no CRLF. is split between two windows."""
    window: list[bytes | memoryview] = [_stuffed(head)] if head else []
    view = memoryview(data)
    start, size = 0, len(data)
    while start < size:
        cut = data.find(b"\r\n", start + WINDOW) if start + WINDOW < size else -1
        end = size if cut < 0 else cut
        if data.find(b"\r\n.", start, end) >= 0 or (start == 0 and data.startswith(b".")):
            piece = data[start:end].replace(b"\r\n.", b"\r\n..")
            window.append(b"." + piece if start == 0 and piece.startswith(b".") else piece)
        else:
            window.append(view[start:end])
        start = end
        if start < size:
            yield window
            window = []
    ends_line = data.endswith(b"\r\n") if data else bool(head)
    window.append(b".\r\n" if ends_line else b"\r\n.\r\n")
    yield window


async def open_connection(host: str, port: int, *, helo: str, connect_timeout: float, command_timeout: float,
                          limit: int = MAX_LINE) -> Connection:
    """Connect, read the greeting and say EHLO."""
    async with asyncio.timeout(connect_timeout):
        reader, writer = await asyncio.open_connection(host, port, limit=limit)
    conn = Connection(reader, writer, command_timeout)
    try:
        async with asyncio.timeout(connect_timeout):
            code, text = await conn._reply()
        if code != 220:
            raise ClientError(f"the upstream refused the connection: {code} {text}")
        await conn.hello(helo)
    except BaseException:
        conn.close()
        raise
    return conn
