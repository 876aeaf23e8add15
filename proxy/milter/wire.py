"""The milter wire format: the protocol's constants and packet framing.

A packet is a 4-byte big-endian length that counts the command byte and the data, the command
byte, then the data. `PacketDecoder` is sans-I/O: feed it whatever the socket returned (a partial
packet, several pipelined packets, or both) and it returns the complete packets in order. It
refuses a zero length, and a length above its limit as soon as the 4 length bytes are in, so a
hostile peer can never make it buffer more than one packet of at most `max_packet` bytes.

Names follow Sendmail's libmilter (mfdef.h) and Postfix's milter8.c, which speak this protocol
on the MTA side.
"""

from __future__ import annotations

import enum
import struct

_LENGTH = struct.Struct("!I")

# Postfix sends body chunks of at most 65535 bytes; a header may be as long as Postfix's
# header_size_limit (100 KiB by default) and macro values are short. 1 MiB leaves room for both.
DEFAULT_MAX_PACKET = 1 << 20
MILTER_CHUNK_SIZE = 65535
PROTOCOL_VERSION = 6


class ProtocolError(Exception):
    """The peer broke the milter protocol; the connection must be closed."""


# Commands, MTA to milter (SMFIC_*).
SMFIC_ABORT = b"A"
SMFIC_BODY = b"B"
SMFIC_CONNECT = b"C"
SMFIC_MACRO = b"D"
SMFIC_BODYEOB = b"E"
SMFIC_HELO = b"H"
SMFIC_QUIT_NC = b"K"
SMFIC_HEADER = b"L"
SMFIC_MAIL = b"M"
SMFIC_EOH = b"N"
SMFIC_OPTNEG = b"O"
SMFIC_QUIT = b"Q"
SMFIC_RCPT = b"R"
SMFIC_DATA = b"T"
SMFIC_UNKNOWN = b"U"

# Replies, milter to MTA (SMFIR_*). SMFIC_OPTNEG is also the reply to SMFIC_OPTNEG.
SMFIR_ACCEPT = b"a"
SMFIR_CONTINUE = b"c"
SMFIR_DISCARD = b"d"
SMFIR_ADDHEADER = b"h"
SMFIR_INSHEADER = b"i"
SMFIR_CHGHEADER = b"m"
SMFIR_PROGRESS = b"p"
SMFIR_QUARANTINE = b"q"
SMFIR_REJECT = b"r"
SMFIR_SKIP = b"s"
SMFIR_TEMPFAIL = b"t"
SMFIR_REPLYCODE = b"y"


class ActionFlag(enum.IntFlag):
    """What the milter may do at end of message (SMFIF_*), offered by the MTA, chosen by us."""

    ADDHDRS = 0x001
    CHGBODY = 0x002
    ADDRCPT = 0x004
    DELRCPT = 0x008
    CHGHDRS = 0x010
    QUARANTINE = 0x020
    CHGFROM = 0x040
    ADDRCPT_PAR = 0x080
    SETSYMLIST = 0x100


class ProtocolFlag(enum.IntFlag):
    """Protocol steps (SMFIP_*): NO* = do not send the event, NR_* = the milter sends no reply
    to it. The MTA offers the ones it can honour; the milter answers with the ones it wants."""

    NOCONNECT = 0x000001
    NOHELO = 0x000002
    NOMAIL = 0x000004
    NORCPT = 0x000008
    NOBODY = 0x000010
    NOHDRS = 0x000020
    NOEOH = 0x000040
    NR_HDR = 0x000080
    NOUNKNOWN = 0x000100
    NODATA = 0x000200
    SKIP = 0x000400
    RCPT_REJ = 0x000800
    NR_CONN = 0x001000
    NR_HELO = 0x002000
    NR_MAIL = 0x004000
    NR_RCPT = 0x008000
    NR_DATA = 0x010000
    NR_UNKN = 0x020000
    NR_EOH = 0x040000
    NR_BODY = 0x080000
    HDR_LEADSPC = 0x100000
    MDS_256K = 0x10000000
    MDS_1M = 0x20000000


class MacroStage(enum.IntEnum):
    """Where a macro list applies, in the SMFIC_OPTNEG reply (SMFIM_*)."""

    CONNECT = 0
    HELO = 1
    ENVFROM = 2
    ENVRCPT = 3
    DATA = 4
    EOM = 5
    EOH = 6


class Family(str, enum.Enum):
    """The client's address family in SMFIC_CONNECT (SMFIA_*)."""

    UNKNOWN = "U"
    UNIX = "L"
    INET = "4"
    INET6 = "6"


def encode_packet(command: bytes, data: bytes = b"") -> bytes:
    """One packet: length (command byte included), command, data."""
    return _LENGTH.pack(len(data) + 1) + command + data


class PacketDecoder:
    """Splits the byte stream from the MTA into (command, data) packets."""

    def __init__(self, max_packet: int = DEFAULT_MAX_PACKET) -> None:
        if max_packet < MILTER_CHUNK_SIZE + 1:
            raise ValueError(f"max_packet must be at least {MILTER_CHUNK_SIZE + 1} (one body chunk)")
        self.max_packet = max_packet
        self._buffer = bytearray()

    @property
    def pending(self) -> int:
        """Bytes received that do not yet make a whole packet."""
        return len(self._buffer)

    def feed(self, data: bytes) -> list[tuple[bytes, bytes]]:
        """Add received bytes; return every packet now complete, in order."""
        buffer = self._buffer
        buffer += data
        packets: list[tuple[bytes, bytes]] = []
        pos = 0
        while len(buffer) - pos >= 4:
            (length,) = _LENGTH.unpack_from(buffer, pos)
            if length == 0:
                raise ProtocolError("packet with length 0 (no command byte)")
            if length > self.max_packet:
                raise ProtocolError(f"packet of {length} bytes exceeds the limit of {self.max_packet}")
            end = pos + 4 + length
            if len(buffer) < end:
                break
            packets.append((bytes(buffer[pos + 4:pos + 5]), bytes(buffer[pos + 5:end])))
            pos = end
        if pos:
            del buffer[:pos]
        return packets
