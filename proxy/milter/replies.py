"""Encoding the milter's replies (SMFIR_*) to the MTA.

SMFIR_REPLYCODE carries "ddd x.y.z text". Postfix checks it (4xx or 5xx; the enhanced code's
class digit equal to the reply's) and treats a malformed one as a configuration error, which
turns into "451 4.3.5" for the client; so we check first and raise ValueError instead. Sendmail
uses the text as a format string and Postfix undoes that convention, so a literal "%" is sent as
"%%". Reply text is one line of printable ASCII: CR, LF and NUL could split the SMTP reply.
"""

from __future__ import annotations

import re
import struct

import proxy.milter.wire as wire
from proxy.milter.application import AddHeader, ChangeHeader, Decision, HeaderEdit, InsertHeader, MilterOutcome
from proxy.milter.options import Negotiated
from proxy.milter.wire import ActionFlag, MacroStage, ProtocolFlag, encode_packet
from proxy.replies import Reply

_U32 = struct.Struct("!I")
_ENHANCED = re.compile(r"^[245]\.\d{1,3}\.\d{1,3}$")
_HEADER_NAME = re.compile(r"^[\x21-\x39\x3b-\x7e]+$")  # printable, no colon, no space (RFC 5322)
MAX_REPLY_TEXT = 400

CONTINUE = encode_packet(wire.SMFIR_CONTINUE)
ACCEPT = encode_packet(wire.SMFIR_ACCEPT)
REJECT = encode_packet(wire.SMFIR_REJECT)
TEMPFAIL = encode_packet(wire.SMFIR_TEMPFAIL)
DISCARD = encode_packet(wire.SMFIR_DISCARD)
SKIP = encode_packet(wire.SMFIR_SKIP)
PROGRESS = encode_packet(wire.SMFIR_PROGRESS)


def _cstring(value: str) -> bytes:
    raw = value.encode("utf-8", "surrogateescape")
    if b"\0" in raw:
        raise ValueError("NUL byte in a milter string")
    return raw + b"\0"


def reply_line(reply: Reply) -> str:
    """The reply as Postfix expects it in SMFIR_REPLYCODE; ValueError if it is not one."""
    if not 400 <= reply.code <= 599:
        raise ValueError(f"SMFIR_REPLYCODE needs a 4xx or 5xx code, not {reply.code}")
    if reply.enhanced and (not _ENHANCED.match(reply.enhanced) or reply.enhanced[0] != str(reply.code)[0]):
        raise ValueError(f"enhanced code {reply.enhanced!r} does not fit reply code {reply.code}")
    clean = "".join(ch if 32 <= ord(ch) < 127 else "?" for ch in " ".join(reply.text.split()))
    clean = clean[:MAX_REPLY_TEXT].replace("%", "%%")
    parts = [str(reply.code), reply.enhanced, clean]
    return " ".join(part for part in parts if part)


def replycode(reply: Reply) -> bytes:
    return encode_packet(wire.SMFIR_REPLYCODE, _cstring(reply_line(reply)))


def step_reply(reply: Reply | None) -> bytes:
    """The answer to connect/helo/mail/rcpt: CONTINUE unless the application refused."""
    if reply is None or 200 <= reply.code < 300:
        return CONTINUE
    return replycode(reply)


def quarantine(reason: str) -> bytes:
    clean = "".join(ch if 32 <= ord(ch) < 127 else "?" for ch in " ".join(reason.split()))
    return encode_packet(wire.SMFIR_QUARANTINE, _cstring(clean[:MAX_REPLY_TEXT] or "held by milter"))


def header_value(value: str, leading_space: bool) -> str:
    """A header value as the MTA wants it: folded lines joined by LF (Sendmail's convention,
    which Postfix follows), with the space after the colon included when SMFIP_HDR_LEADSPC was
    negotiated (otherwise the MTA adds it)."""
    value = value.replace("\r\n", "\n")
    if "\r" in value or any(line and line[0] not in " \t" for line in value.split("\n")[1:]):
        raise ValueError("header value: a line break must be a fold (LF followed by space or tab)")
    if leading_space and not value.startswith((" ", "\t")):
        value = " " + value
    return value


def header_edit(edit: HeaderEdit, leading_space: bool) -> bytes:
    """SMFIR_ADDHEADER / SMFIR_INSHEADER / SMFIR_CHGHEADER; ValueError for a bad name, value or
    index."""
    if not _HEADER_NAME.match(edit.name):
        raise ValueError(f"invalid header name {edit.name!r}")
    if isinstance(edit, AddHeader):
        value = header_value(edit.value, leading_space)
        return encode_packet(wire.SMFIR_ADDHEADER, _cstring(edit.name) + _cstring(value))
    if edit.index < 0 or edit.index > 0xFFFFFFFF or (isinstance(edit, ChangeHeader) and edit.index == 0):
        raise ValueError(f"header index {edit.index} out of range")
    value = header_value(edit.value, leading_space) if edit.value else ""
    command = wire.SMFIR_INSHEADER if isinstance(edit, InsertHeader) else wire.SMFIR_CHGHEADER
    return encode_packet(command, _U32.pack(edit.index) + _cstring(edit.name) + _cstring(value))


def optneg(version: int, actions: ActionFlag, protocol: ProtocolFlag,
           macros: dict[MacroStage, tuple[str, ...]] | None = None) -> bytes:
    """Our SMFIC_OPTNEG answer, with per-stage macro lists when SMFIF_SETSYMLIST is set."""
    data = _U32.pack(version) + _U32.pack(int(actions)) + _U32.pack(int(protocol))
    if macros and ActionFlag.SETSYMLIST in actions:
        for stage, names in sorted(macros.items()):
            if names:
                data += _U32.pack(int(stage)) + _cstring(" ".join(names))
    return encode_packet(wire.SMFIC_OPTNEG, data)


def decision_packets(decision: Decision, agreed: Negotiated) -> bytes:
    """Every packet for an end-of-message decision: header edits, then SMFIR_QUARANTINE if
    asked, then the final reply. All are built before any is sent, so a bad edit (ValueError)
    sends nothing; so does an edit the MTA did not allow in the negotiation."""
    if not isinstance(decision, Decision):
        raise TypeError(f"end_of_message returned {decision!r}, not a Decision")
    out = []
    for edit in decision.edits:
        needed = ActionFlag.CHGHDRS if isinstance(edit, ChangeHeader) else ActionFlag.ADDHDRS
        if needed not in agreed.actions:
            raise ValueError(f"the MTA does not allow {needed.name} (header edit {edit!r})")
        out.append(header_edit(edit, agreed.leading_space))
    if decision.outcome is MilterOutcome.ACCEPT:
        out.append(ACCEPT)
    elif decision.outcome is MilterOutcome.QUARANTINE:
        if ActionFlag.QUARANTINE not in agreed.actions:
            raise ValueError("the MTA does not allow SMFIR_QUARANTINE")
        out += [quarantine(decision.reason), ACCEPT]  # a quarantine is an edit; a final reply follows
    elif decision.outcome is MilterOutcome.DISCARD:
        out.append(DISCARD)
    elif decision.reply is not None:
        out.append(replycode(decision.reply))
    else:
        out.append(TEMPFAIL if decision.outcome is MilterOutcome.TEMPFAIL else REJECT)
    return b"".join(out)


def failure_packets(on_error: str, agreed: Negotiated, stage: str, reply: Reply) -> bytes:
    """End of message after the application failed at `stage`, as on_error says: `reply` (a
    4xx), a quarantine (tempfail when the MTA does not allow quarantine), or accept."""
    if on_error == "quarantine" and ActionFlag.QUARANTINE in agreed.actions:
        return quarantine(f"sendwarden could not judge this message ({stage} failed)") + ACCEPT
    if on_error == "accept":
        return ACCEPT
    return replycode(reply)
