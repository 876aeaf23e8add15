"""What a milter application implements, and the decision it hands back.

The server makes one `MilterApplication` per MTA connection (Postfix opens one per SMTP session
it serves) and awaits its methods in protocol order:

    connect → [helo] → (mail_from → rcpt… → header… → end_of_headers → body… → end_of_message
                        | abort)… → close

`connect`, `helo`, `mail_from` and `rcpt` answer with a `Reply` to refuse (4xx/5xx, sent as
SMFIR_REPLYCODE so the SMTP client sees our code and text) or None to go on; a 2xx reply also
means go on. `rcpt` is asked once per recipient, so a refusal is for that recipient only.
`header`, `end_of_headers` and `body` observe only: the MTA is told not to wait for a reply to
them (the engine runs every check and decides once, at the end). `end_of_message` gets the whole
`MilterTransaction`, message bytes included, and returns the one `Decision`.

Every call runs under a timeout; a call that times out or raises is answered with the server's
configured failure action (temporary failure by default), never by letting the mail through
unchecked, and the exception text never reaches the MTA.
"""

from __future__ import annotations

import abc
import enum
from collections.abc import Mapping
from dataclasses import dataclass, field

from proxy.milter.wire import Family
from proxy.replies import Reply

Macros = Mapping[str, str]
"""Macro values from the MTA, keyed without braces: "i", "j", "auth_authen", "client_addr"…"""


@dataclass(frozen=True, slots=True)
class AddHeader:
    """Append a header at the end of the header block (SMFIR_ADDHEADER)."""

    name: str
    value: str


@dataclass(frozen=True, slots=True)
class InsertHeader:
    """Insert a header at position `index` (SMFIR_INSHEADER); 0 is the very top, above the
    MTA's own Received header, which is where a DKIM-Signature belongs."""

    index: int
    name: str
    value: str


@dataclass(frozen=True, slots=True)
class ChangeHeader:
    """Replace the `index`-th (1-based) header called `name`; an empty value deletes it
    (SMFIR_CHGHEADER)."""

    index: int
    name: str
    value: str


HeaderEdit = AddHeader | InsertHeader | ChangeHeader


class MilterOutcome(enum.Enum):
    ACCEPT = "accept"
    REJECT = "reject"
    TEMPFAIL = "tempfail"
    QUARANTINE = "quarantine"
    DISCARD = "discard"


@dataclass(frozen=True)
class Decision:
    """The answer at end of message. Build it with the class methods."""

    outcome: MilterOutcome
    reply: Reply | None = None
    reason: str = ""
    edits: tuple[HeaderEdit, ...] = ()

    def __post_init__(self) -> None:
        if self.outcome is MilterOutcome.REJECT and (self.reply is None or self.reply.code // 100 != 5):
            raise ValueError("a reject decision needs a 5xx reply")
        if self.outcome is MilterOutcome.TEMPFAIL and self.reply is not None and self.reply.code // 100 != 4:
            raise ValueError("a tempfail reply must be 4xx")
        if self.edits and self.outcome not in (MilterOutcome.ACCEPT, MilterOutcome.QUARANTINE):
            raise ValueError(f"header edits make no sense with {self.outcome.value}")

    @classmethod
    def accept(cls, *edits: HeaderEdit) -> "Decision":
        """Let the MTA queue the message, with these header edits applied."""
        return cls(MilterOutcome.ACCEPT, edits=edits)

    @classmethod
    def reject(cls, reply: Reply) -> "Decision":
        """Refuse the message; the SMTP client gets `reply` (5xx) from the MTA."""
        return cls(MilterOutcome.REJECT, reply=reply)

    @classmethod
    def tempfail(cls, reply: Reply | None = None) -> "Decision":
        """Refuse for now; without a reply the MTA says "451 4.7.1 Service unavailable"."""
        return cls(MilterOutcome.TEMPFAIL, reply=reply)

    @classmethod
    def quarantine(cls, reason: str, *edits: HeaderEdit) -> "Decision":
        """Accept, but the MTA holds the message (Postfix: the hold queue) for review."""
        return cls(MilterOutcome.QUARANTINE, reason=reason, edits=edits)

    @classmethod
    def discard(cls) -> "Decision":
        """Accept and silently drop the message."""
        return cls(MilterOutcome.DISCARD)


@dataclass(frozen=True)
class MilterTransaction:
    """One message as the MTA handed it over.

    `message` is the message as received (header block reassembled from the header events,
    with each header's original spacing and folding when the MTA honours SMFIP_HDR_LEADSPC, as
    Postfix does; CRLF line ends), without the MTA's own Received header, which Postfix never
    shows to a milter. `recipients` are those this application did not refuse.
    """

    sender: str
    sender_args: tuple[str, ...]
    recipients: tuple[str, ...]
    headers: tuple[tuple[str, str], ...]
    message: bytes
    macros: Macros = field(default_factory=dict)

    @property
    def queue_id(self) -> str:
        """The MTA's queue id (macro `i`), empty when the MTA did not send it."""
        return self.macros.get("i", "")

    @property
    def auth_user(self) -> str:
        """The SASL login of the SMTP client (macro `{auth_authen}`), empty when none."""
        return self.macros.get("auth_authen", "")

    @property
    def client_address(self) -> str:
        return self.macros.get("client_addr", "")


class MilterApplication(abc.ABC):
    """The per-connection application the milter server drives. Only `end_of_message` must be
    written; the other hooks default to "go on" / "nothing to do"."""

    async def connect(self, host: str, family: Family, port: int, address: str, macros: Macros) -> Reply | None:
        """The SMTP client connected to the MTA. `host` is its name ("[addr]" when unknown)."""
        return None

    async def helo(self, name: str, macros: Macros) -> Reply | None:
        """HELO/EHLO; only called when the server options ask for it (want_helo)."""
        return None

    async def mail_from(self, sender: str, args: tuple[str, ...], macros: Macros) -> Reply | None:
        """A new transaction. `sender` is "" for the null sender."""
        return None

    async def rcpt(self, recipient: str, args: tuple[str, ...], macros: Macros) -> Reply | None:
        """One recipient; a Reply refuses this recipient only."""
        return None

    async def header(self, name: str, value: str) -> None:
        """One header as received (value with its leading space and folding)."""

    async def end_of_headers(self) -> None:
        """The header block is complete."""

    async def body(self, chunk: bytes) -> None:
        """A piece of the body (CRLF line ends, at most 64 KiB)."""

    @abc.abstractmethod
    async def end_of_message(self, transaction: MilterTransaction) -> Decision:
        """Judge the complete message."""

    async def abort(self) -> None:
        """The current transaction ended without end_of_message (RSET, a refusal, an error)."""

    async def close(self) -> None:
        """The MTA connection ended (or is reused for a new SMTP session after QUIT_NC)."""
