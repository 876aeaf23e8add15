"""The MTA's packets, parsed strictly into small frozen objects.

`parse_command(command, data)` accepts exactly what Postfix and Sendmail send and raises
`ProtocolError` for anything else: an unknown command byte, a string without its NUL terminator,
a truncated or over-long packet, an odd number of macro names and values. Text is decoded as
UTF-8 with surrogateescape, so that 8-bit bytes survive a round trip back to bytes unchanged
(headers are reassembled into the message byte for byte).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import proxy.milter.wire as wire
from proxy.milter.wire import ActionFlag, Family, ProtocolError, ProtocolFlag

_OPTNEG = struct.Struct("!III")
_PORT = struct.Struct("!H")


def text(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogateescape")


def macro_name(name: str) -> str:
    """Postfix sends long macro names in braces ("{auth_authen}"); we key them without."""
    return name[1:-1] if len(name) > 2 and name[0] == "{" and name[-1] == "}" else name


@dataclass(frozen=True, slots=True)
class OptNeg:
    version: int
    actions: ActionFlag
    protocol: ProtocolFlag


@dataclass(frozen=True, slots=True)
class Macro:
    """Macro values that precede the command `for_command` (one of the SMFIC_* bytes)."""

    for_command: bytes
    values: dict[str, str]


@dataclass(frozen=True, slots=True)
class Connect:
    hostname: str
    family: Family
    port: int
    address: str


@dataclass(frozen=True, slots=True)
class Helo:
    name: str


@dataclass(frozen=True, slots=True)
class Mail:
    """MAIL FROM: the address without its angle brackets ("" for the null sender), and the
    ESMTP parameters as sent (e.g. "SIZE=1234", "BODY=8BITMIME")."""

    address: str
    args: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Rcpt:
    address: str
    args: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Header:
    name: str
    value: str


@dataclass(frozen=True, slots=True)
class Body:
    chunk: bytes


@dataclass(frozen=True, slots=True)
class EndOfMessage:
    """SMFIC_BODYEOB. Sendmail may send a last body chunk with it; Postfix never does."""

    chunk: bytes = b""


@dataclass(frozen=True, slots=True)
class Unknown:
    command: str


@dataclass(frozen=True, slots=True)
class _Signal:
    """A command that carries no data; equal only to itself (dataclass eq compares classes)."""


class Data(_Signal):
    """SMFIC_DATA."""

    __slots__ = ()


class EndOfHeaders(_Signal):
    """SMFIC_EOH."""

    __slots__ = ()


class Abort(_Signal):
    """SMFIC_ABORT: the current message is over without end of message."""

    __slots__ = ()


class Quit(_Signal):
    """SMFIC_QUIT: the MTA closes the connection."""

    __slots__ = ()


class QuitNewConnection(_Signal):
    """SMFIC_QUIT_NC: the session is over, the connection will serve a new one."""

    __slots__ = ()


Command = (OptNeg | Macro | Connect | Helo | Mail | Rcpt | Header | Body | EndOfMessage | Unknown | Data
           | EndOfHeaders | Abort | Quit | QuitNewConnection)

NAMES = {
    wire.SMFIC_ABORT: "SMFIC_ABORT", wire.SMFIC_BODY: "SMFIC_BODY", wire.SMFIC_CONNECT: "SMFIC_CONNECT",
    wire.SMFIC_MACRO: "SMFIC_MACRO", wire.SMFIC_BODYEOB: "SMFIC_BODYEOB", wire.SMFIC_HELO: "SMFIC_HELO",
    wire.SMFIC_QUIT_NC: "SMFIC_QUIT_NC", wire.SMFIC_HEADER: "SMFIC_HEADER", wire.SMFIC_MAIL: "SMFIC_MAIL",
    wire.SMFIC_EOH: "SMFIC_EOH", wire.SMFIC_OPTNEG: "SMFIC_OPTNEG", wire.SMFIC_QUIT: "SMFIC_QUIT",
    wire.SMFIC_RCPT: "SMFIC_RCPT", wire.SMFIC_DATA: "SMFIC_DATA", wire.SMFIC_UNKNOWN: "SMFIC_UNKNOWN",
}


def cstrings(data: bytes, what: str) -> list[str]:
    """A run of NUL-terminated strings that fills the whole packet."""
    if not data:
        return []
    if not data.endswith(b"\0"):
        raise ProtocolError(f"{what}: string without NUL terminator")
    return [text(part) for part in data[:-1].split(b"\0")]


def _exact(data: bytes, count: int, what: str) -> list[str]:
    strings = cstrings(data, what)
    if len(strings) != count:
        raise ProtocolError(f"{what}: expected {count} strings, got {len(strings)}")
    return strings


def _empty(data: bytes, what: str) -> None:
    if data:
        raise ProtocolError(f"{what}: unexpected {len(data)} data bytes")


def _envelope(data: bytes, what: str) -> tuple[str, tuple[str, ...]]:
    strings = cstrings(data, what)
    if not strings:
        raise ProtocolError(f"{what}: no address")
    address = strings[0]
    if address.startswith("<") and address.endswith(">"):
        address = address[1:-1]
    return address, tuple(strings[1:])


def _connect(data: bytes) -> Connect:
    hostname_end = data.find(b"\0")
    if hostname_end < 0 or hostname_end + 1 >= len(data):
        raise ProtocolError("SMFIC_CONNECT: truncated")
    hostname = text(data[:hostname_end])
    family_byte = data[hostname_end + 1:hostname_end + 2].decode("latin-1")
    try:
        family = Family(family_byte)
    except ValueError:
        raise ProtocolError(f"SMFIC_CONNECT: unknown address family {family_byte!r}") from None
    rest = data[hostname_end + 2:]
    if family is Family.UNKNOWN:
        _empty(rest, "SMFIC_CONNECT")
        return Connect(hostname, family, 0, "")
    if len(rest) < _PORT.size:
        raise ProtocolError("SMFIC_CONNECT: truncated port")
    (port,) = _PORT.unpack_from(rest)
    [address] = _exact(rest[_PORT.size:], 1, "SMFIC_CONNECT")
    return Connect(hostname, family, port, address)


def _macro(data: bytes) -> Macro:
    if not data:
        raise ProtocolError("SMFIC_MACRO: missing command code")
    strings = cstrings(data[1:], "SMFIC_MACRO")
    if len(strings) % 2:
        raise ProtocolError("SMFIC_MACRO: odd number of names and values")
    values = {macro_name(strings[i]): strings[i + 1] for i in range(0, len(strings), 2)}
    return Macro(data[:1], values)


def _optneg(data: bytes) -> OptNeg:
    if len(data) != _OPTNEG.size:
        raise ProtocolError(f"SMFIC_OPTNEG: expected {_OPTNEG.size} data bytes, got {len(data)}")
    version, actions, protocol = _OPTNEG.unpack(data)
    return OptNeg(version, ActionFlag(actions), ProtocolFlag(protocol))


def parse_command(command: bytes, data: bytes) -> Command:
    """One packet from the MTA as a command object, or ProtocolError."""
    name = NAMES.get(command)
    if name is None:
        raise ProtocolError(f"unknown command {command!r}")
    if command == wire.SMFIC_BODY:
        return Body(data)
    if command == wire.SMFIC_BODYEOB:
        return EndOfMessage(data)
    if command == wire.SMFIC_MACRO:
        return _macro(data)
    if command == wire.SMFIC_HEADER:
        header_name, value = _exact(data, 2, name)
        if not header_name:
            raise ProtocolError("SMFIC_HEADER: empty header name")
        return Header(header_name, value)
    if command == wire.SMFIC_RCPT:
        return Rcpt(*_envelope(data, name))
    if command == wire.SMFIC_MAIL:
        return Mail(*_envelope(data, name))
    if command == wire.SMFIC_CONNECT:
        return _connect(data)
    if command == wire.SMFIC_HELO:
        return Helo(*_exact(data, 1, name))
    if command == wire.SMFIC_UNKNOWN:
        return Unknown(*_exact(data, 1, name))
    if command == wire.SMFIC_OPTNEG:
        return _optneg(data)
    _empty(data, name)
    return _NO_DATA[command]()


_NO_DATA: dict[bytes, type[Data | EndOfHeaders | Abort | Quit | QuitNewConnection]] = {
    wire.SMFIC_DATA: Data, wire.SMFIC_EOH: EndOfHeaders, wire.SMFIC_ABORT: Abort,
    wire.SMFIC_QUIT: Quit, wire.SMFIC_QUIT_NC: QuitNewConnection,
}
