"""A real SMTP server on loopback that plays the upstream MTA in tests.

Hand-written on asyncio streams rather than aiosmtpd so that a test can make it misbehave in
every way an MTA can: refuse, defer, hang mid-DATA, drop the connection before its reply. It
advertises what a Postfix would (PIPELINING, SIZE, 8BITMIME, SMTPUTF8, DSN, ENHANCEDSTATUSCODES)
and records every transaction: the envelope with parameters as sent, and the DATA bytes exactly
as they came over the wire (still dot-stuffed) and unstuffed.
"""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass, field
from typing import Callable


@dataclass
class Received:
    mail_from: str
    mail_params: list[str]
    rcpts: list[tuple[str, list[str]]]
    wire: bytes  # DATA as sent on the wire, dot-stuffed, without the final ".\r\n"

    @property
    def data(self) -> bytes:
        """The message itself: dot-stuffing undone."""
        lines = self.wire.split(b"\r\n")
        return b"\r\n".join(line[1:] if line.startswith(b".") else line for line in lines)


@dataclass
class Behaviour:
    """How the sink answers. Replies are full lines such as "550 5.1.1 no such user"."""

    mail: str = "250 2.1.0 Ok"
    rcpt: str = "250 2.1.5 Ok"
    rcpt_by_address: dict[str, str] = field(default_factory=dict)
    data_end: str = ""  # default: "250 2.0.0 Ok: queued as N"
    hang_in_data: bool = False  # read the data, never answer
    drop_after_data: bool = False  # read the data, close without answering
    data_delay: float = 0.0
    refuse_connections: bool = False
    # Attributes offered with XFORWARD in the EHLO reply ("" offers no XFORWARD), and the reply
    # to an XFORWARD command.
    xforward: str = ""
    xforward_reply: str = "250 2.0.0 Ok"
    # Faults chosen per step, for load tests: called with "connect", "mail", "rcpt" or "data"
    # and returns "" (behave as above), a full reply line, or one of: "refuse" (connect: 554
    # and close), "close" (connect: close at once), "stall" (data: stop reading mid-DATA),
    # "hang" (data: read it all, never answer), "drop" (data: close before queueing),
    # "drop_queued" (data: queue it, then close without a reply: the ambiguous case).
    fault: Callable[[str], str] | None = None


class Sink:
    def __init__(self) -> None:
        self.received: list[Received] = []
        self.behaviour = Behaviour()
        self.server: asyncio.AbstractServer | None = None
        self.port = 0
        self.connections = 0
        self.commands: list[str] = []
        # What the fault hook did: (step, fault, the DATA bytes when there were any).
        self.faults: list[tuple[str, str, bytes]] = []
        self._ids = itertools.count(1)
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self, host: str = "127.0.0.1") -> "Sink":
        # A large reader limit: messages of many megabytes arrive as one readuntil().
        self.server = await asyncio.start_server(self._client, host, 0, limit=64 * 1024 * 1024)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        """Stop like a crashed MTA: the port closes and every open connection drops."""
        if self.server is not None:
            self.server.close()
            for w in list(self._writers):
                w.transport.abort()
            await self.server.wait_closed()

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"

    def _fault(self, step: str, data: bytes = b"") -> str:
        hook = self.behaviour.fault
        fault = hook(step) if hook else ""
        if fault:
            self.faults.append((step, fault, data))
        return fault

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._writers.add(writer)
        b = self.behaviour
        fault = self._fault("connect")
        if b.refuse_connections or fault in ("refuse", "close"):
            if fault != "close":
                writer.write(b"554 5.3.2 no service\r\n")
                await writer.drain()
            writer.close()
            return

        async def say(line: str) -> None:
            writer.write(line.encode() + b"\r\n")
            await writer.drain()

        await say("220 sink.test ESMTP")
        mail_from, mail_params, rcpts = "", [], []
        try:
            while True:
                line = await reader.readline()
                if not line:
                    return
                text = line.decode("utf-8", "surrogateescape").rstrip("\r\n")
                self.commands.append(text)
                verb = text[:4].upper()
                if verb in ("EHLO", "HELO"):
                    xforward = f"250-XFORWARD {b.xforward}\r\n" if b.xforward else ""
                    await say("250-sink.test\r\n250-PIPELINING\r\n250-SIZE 52428800\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n"
                              f"250-DSN\r\n{xforward}250 ENHANCEDSTATUSCODES")
                elif verb == "XFOR" and b.xforward:
                    await say(b.xforward_reply)
                elif verb == "MAIL":
                    addr, _, params = text[10:].partition(">")
                    mail_from, mail_params, rcpts = addr.lstrip("<"), params.split(), []
                    fault = self._fault("mail")
                    if fault:
                        mail_from = ""
                    await say(fault or b.mail)
                elif verb == "RCPT":
                    addr, _, params = text[8:].partition(">")
                    addr = addr.lstrip("<")
                    reply = self._fault("rcpt") or b.rcpt_by_address.get(addr, b.rcpt)
                    if reply.startswith("2"):
                        rcpts.append((addr, params.split()))
                    await say(reply)
                elif verb == "DATA":
                    if not rcpts:
                        await say("554 5.5.1 no valid recipients")
                        continue
                    fault = b.fault("data") if b.fault else ""
                    await say("354 go ahead")
                    if fault == "stall":
                        self.faults.append(("data", fault, b""))
                        await asyncio.sleep(3600)
                    wire = await reader.readuntil(b"\r\n.\r\n")
                    wire = wire[:-3]
                    if fault:
                        self.faults.append(("data", fault, wire))
                    if b.hang_in_data or fault == "hang":
                        while await reader.read(65536):  # until the client gives up
                            pass
                        return
                    if fault == "drop_queued":
                        self.received.append(Received(mail_from, mail_params, rcpts, wire))
                    if b.drop_after_data or fault in ("drop", "drop_queued"):
                        writer.transport.abort()
                        return
                    if b.data_delay:
                        await asyncio.sleep(b.data_delay)
                    reply = fault or b.data_end or f"250 2.0.0 Ok: queued as SINK{next(self._ids)}"
                    if reply.startswith("2"):
                        self.received.append(Received(mail_from, mail_params, rcpts, wire))
                    await say(reply)
                elif verb == "RSET":
                    mail_from, mail_params, rcpts = "", [], []
                    await say("250 2.0.0 Ok")
                elif verb == "NOOP":
                    await say("250 2.0.0 Ok")
                elif verb == "QUIT":
                    await say("221 2.0.0 Bye")
                    writer.close()
                    return
                else:
                    await say("502 5.5.2 Error: command not recognized")
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        except asyncio.CancelledError:  # a hanging connection, still open when the test ends
            return
        finally:
            self._writers.discard(writer)
            if not writer.is_closing():
                writer.close()
