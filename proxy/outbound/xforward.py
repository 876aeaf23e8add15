"""XFORWARD: telling the upstream MTA who the real client was.

Postfix behind sendwarden otherwise logs, and writes into its Received header, 127.0.0.1 for
every message. Postfix's XFORWARD extension (XFORWARD_README) lets a content filter pass the
original client's attributes on: the server lists in its EHLO reply the attributes it accepts
(`250-XFORWARD NAME ADDR PROTO HELO SOURCE PORT IDENT`), and the client sends
`XFORWARD NAME=... ADDR=...` outside a mail transaction, before MAIL FROM. Values are xtext
(RFC 3461 §4); `[UNAVAILABLE]` stands for what is not known; the server refuses a value
longer than 255 characters and a command line longer than 512 octets, so long attributes go
in a second command, as Postfix's own client does.

Pure functions: the SMTP client (proxy/outbound/client.py) puts the commands on the wire.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

__all__ = ["UNAVAILABLE", "Origin", "commands", "xtext"]

UNAVAILABLE = "[UNAVAILABLE]"
MAX_VALUE = 255  # Postfix: "501 Error: attribute value too long" beyond this
MAX_LINE = 512 - 2  # RFC 5321 §4.5.3.1.4: a command line, CRLF included
# The attributes sendwarden knows about a client, in the order Postfix's client sends them.
ATTRIBUTES = ("NAME", "ADDR", "PROTO", "HELO")
_FIELDS = {"NAME": "name", "ADDR": "addr", "PROTO": "proto", "HELO": "helo"}
# A value that is its own xtext (printable ASCII but "+" and "="), short enough: the usual case.
_PLAIN = re.compile(r"[\x21-\x2a\x2c-\x3c\x3e-\x7e]{1,%d}" % MAX_VALUE)


@dataclass(frozen=True, slots=True)
class Origin:
    """The client a message came from, as the relay (or the quarantine's record) knows it.
    An empty field is unknown and goes out as [UNAVAILABLE]."""

    addr: str = ""
    name: str = ""  # the client's verified host name; sendwarden does no reverse lookups
    helo: str = ""
    proto: str = ""  # RFC 3848: SMTP, ESMTP, ESMTPS, ESMTPSA, ...

    def value(self, attribute: str) -> str:
        return str(getattr(self, _FIELDS[attribute]))


def xtext(value: str) -> str:
    """RFC 3461 xtext: "+", "=" and anything outside printable US-ASCII as +XX (of its UTF-8)."""
    out = []
    for byte in value.encode("utf-8", "surrogateescape"):
        if 33 <= byte <= 126 and byte not in (0x2B, 0x3D):
            out.append(chr(byte))
        else:
            out.append(f"+{byte:02X}")
    return "".join(out)


def _encoded(value: str) -> str:
    """The value as xtext of at most MAX_VALUE characters, cut between characters (never
    inside a +XX escape)."""
    if not value:
        return UNAVAILABLE
    if _PLAIN.fullmatch(value):
        return value
    out: list[str] = []
    size = 0
    for char in value:
        piece = xtext(char)
        if size + len(piece) > MAX_VALUE:
            break
        out.append(piece)
        size += len(piece)
    return "".join(out)


@lru_cache(maxsize=64)
def _accepted(offered: str) -> tuple[str, ...]:
    """The attributes sendwarden has that the server accepts (an upstream offers the same
    list on every connection: parsed once)."""
    words = {word.upper() for word in offered.split()}
    return tuple(name for name in ATTRIBUTES if name in words)


def commands(offered: str, origin: Origin) -> list[str]:
    """The XFORWARD commands for `origin`, given the parameters of the server's XFORWARD EHLO
    keyword (the attributes it accepts); none when it accepts none of those sendwarden has."""
    pairs = [f"{name}={_encoded(origin.value(name))}" for name in _accepted(offered)]
    lines: list[str] = []
    for pair in pairs:
        if lines and len(lines[-1]) + 1 + len(pair) <= MAX_LINE:
            lines[-1] += " " + pair
        else:
            lines.append("XFORWARD " + pair)
    return lines
