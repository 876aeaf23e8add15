"""The milter server's settings and the option negotiation that follows from them.

We ask the MTA only for the events the policy engine needs (connect, MAIL, RCPT, the headers and
body, end of message; HELO only on request), and tell it not to wait for replies to header, end
of headers and body packets, which saves a round trip per header, nor at the stages the
application never refuses (`no_reply`: the policy engine answers only at RCPT and at the end). We ask for header values with
their leading space (SMFIP_HDR_LEADSPC), so the message can be reassembled byte for byte, and
for the macros that identify the sender. Everything is intersected with what the MTA offers; a
flag it does not offer just means it sends that event anyway and we answer CONTINUE.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from proxy.milter.commands import OptNeg
from proxy.milter.wire import (
    DEFAULT_MAX_PACKET,
    MILTER_CHUNK_SIZE,
    PROTOCOL_VERSION,
    ActionFlag,
    MacroStage,
    ProtocolError,
    ProtocolFlag,
)

# Postfix replaces its own list for a stage with ours, so each list names everything needed
# there: the queue id (i), the MTA's name (j), the client address, the SASL login, the envelope
# addresses as the MTA rewrote them, and {daemon_name} (Postfix: milter_macro_daemon_name,
# settable per master.cf service), which can select a stream.
DEFAULT_MACROS: Mapping[MacroStage, tuple[str, ...]] = MappingProxyType({
    MacroStage.CONNECT: ("j", "{client_addr}", "{client_name}", "{daemon_name}"),
    MacroStage.ENVFROM: ("i", "{auth_authen}", "{auth_type}", "{mail_addr}"),
    MacroStage.ENVRCPT: ("i", "{rcpt_addr}"),
    MacroStage.EOH: ("i",),
    MacroStage.EOM: ("i", "{auth_authen}"),
})

ON_ERROR = ("tempfail", "quarantine", "accept")
_NO_REPLY_FLAGS = {"connect": ProtocolFlag.NR_CONN, "helo": ProtocolFlag.NR_HELO, "mail": ProtocolFlag.NR_MAIL}


@dataclass(frozen=True)
class MilterOptions:
    """Limits and behaviour of the milter server. Timeouts are in seconds.

    Keep `command_timeout` below Postfix's milter_command_timeout (30 s) and `message_timeout`
    below milter_content_timeout (300 s), so that our own, explained answer arrives first.
    `on_error` is what an application failure or timeout becomes: "tempfail" (451, the MTA's
    client retries), "quarantine" (accepted into the MTA's hold queue) or "accept".
    """

    command_timeout: float = 10.0
    message_timeout: float = 60.0
    idle_timeout: float = 900.0
    progress_interval: float = 10.0
    max_packet_size: int = DEFAULT_MAX_PACKET
    max_message_size: int = 25 * 1024 * 1024
    max_connections: int = 512
    max_recipients: int = 10_000
    on_error: str = "tempfail"
    want_helo: bool = False
    # Stages ("connect", "helo", "mail") at which the application never refuses: the MTA is
    # told not to wait for a reply there (SMFIP_NR_*), and sends them on with the next stage,
    # one round trip fewer each (a refusal there anyway is settled at end of message).
    no_reply: frozenset[str] = frozenset()
    macros: Mapping[MacroStage, tuple[str, ...]] = field(default_factory=lambda: DEFAULT_MACROS)
    unix_socket_mode: int = 0o660

    def __post_init__(self) -> None:
        if self.on_error not in ON_ERROR:
            raise ValueError(f"on_error must be one of {', '.join(ON_ERROR)}, not {self.on_error!r}")
        for name in ("command_timeout", "message_timeout", "idle_timeout", "progress_interval"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive")
        if self.max_packet_size < MILTER_CHUNK_SIZE + 1:
            raise ValueError(f"max_packet_size must be at least {MILTER_CHUNK_SIZE + 1}")
        if self.max_message_size < 1024 or self.max_connections < 1 or self.max_recipients < 1:
            raise ValueError("max_message_size must be at least 1024, max_connections and max_recipients at least 1")
        if not self.no_reply <= set(_NO_REPLY_FLAGS):
            raise ValueError(f"no_reply names stages among {', '.join(_NO_REPLY_FLAGS)}, not {sorted(self.no_reply)}")
        for stage, names in self.macros.items():
            if any(not name or " " in name or "\0" in name for name in names):
                raise ValueError(f"bad macro name in the {MacroStage(stage).name} list: {names!r}")


@dataclass(frozen=True)
class Negotiated:
    """What both sides agreed on for one connection."""

    version: int
    actions: ActionFlag
    protocol: ProtocolFlag

    def replies_to(self, no_reply_flag: ProtocolFlag) -> bool:
        # Plain ints: enum.Flag's `in` costs a few microseconds, several times per message.
        return not int(self.protocol) & int(no_reply_flag)

    @property
    def leading_space(self) -> bool:
        return ProtocolFlag.HDR_LEADSPC in self.protocol

    @property
    def can_skip(self) -> bool:
        return ProtocolFlag.SKIP in self.protocol


def negotiate(offer: OptNeg, options: MilterOptions) -> tuple[Negotiated, dict[MacroStage, tuple[str, ...]]]:
    """Our answer to the MTA's SMFIC_OPTNEG: agreed flags, and the macro lists to send."""
    if offer.version < 2:
        raise ProtocolError(f"the MTA speaks milter protocol version {offer.version}; 2 or later is needed")
    version = min(offer.version, PROTOCOL_VERSION)
    wanted_actions = ActionFlag.ADDHDRS | ActionFlag.CHGHDRS | ActionFlag.QUARANTINE
    if options.macros and version >= 6:
        wanted_actions |= ActionFlag.SETSYMLIST
    wanted_protocol = (ProtocolFlag.NODATA | ProtocolFlag.NOUNKNOWN | ProtocolFlag.NR_HDR | ProtocolFlag.NR_EOH
                       | ProtocolFlag.NR_BODY | ProtocolFlag.HDR_LEADSPC | ProtocolFlag.SKIP)
    if not options.want_helo:
        wanted_protocol |= ProtocolFlag.NOHELO
    for stage in options.no_reply:
        wanted_protocol |= _NO_REPLY_FLAGS[stage]
    agreed = Negotiated(version, wanted_actions & offer.actions, wanted_protocol & offer.protocol)
    macros = dict(options.macros) if ActionFlag.SETSYMLIST in agreed.actions else {}
    return agreed, macros
