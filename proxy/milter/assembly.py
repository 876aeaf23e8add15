"""Reassembling the message from the MTA's header and body events, within a size limit.

Headers arrive as (name, value) with the value exactly as it followed the colon (when the MTA
honours SMFIP_HDR_LEADSPC) and folds as LF; they are written back as "name:value" with CRLF, so
the bytes equal what the SMTP client sent. Past `limit` bytes the buffer is dropped and only the
count goes on: the message will be refused, so nothing more needs keeping.
"""

from __future__ import annotations

from types import MappingProxyType

from proxy.milter.application import MilterTransaction
from proxy.replies import Reply


class MessageAssembly:
    """One message being received: envelope, headers and a bounded reassembly buffer."""

    def __init__(self, sender: str, args: tuple[str, ...], limit: int) -> None:
        self.sender = sender
        self.args = args
        self.recipients: list[str] = []
        self.headers: list[tuple[str, str]] = []
        self.parts: list[bytes] = []
        self.size = 0
        self.limit = limit
        self.oversize = False
        self.in_body = False
        # An application failure (stage, reply) to settle at end of message.
        self.failure: tuple[str, Reply] | None = None

    def add(self, data: bytes) -> None:
        self.size += len(data)
        if self.oversize:
            return
        if self.size > self.limit:
            self.oversize = True
            self.parts.clear()
        else:
            self.parts.append(data)

    def add_header(self, name: str, value: str) -> None:
        self.add(f"{name}:{value}\r\n".encode("utf-8", "surrogateescape"))
        if not self.oversize:  # past the limit nothing more is kept
            self.headers.append((name, value))

    def end_headers(self) -> None:
        if not self.in_body:
            self.in_body = True
            self.add(b"\r\n")

    def freeze(self, macros: dict[str, str]) -> MilterTransaction:
        self.end_headers()
        return MilterTransaction(self.sender, self.args, tuple(self.recipients), tuple(self.headers),
                           b"".join(self.parts), MappingProxyType(macros))
