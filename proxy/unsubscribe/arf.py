"""ARF feedback reports (RFC 5965): who complained about which of our messages.

A report is a multipart/report; report-type=feedback-report with a human part, a
message/feedback-report part (Feedback-Type, Original-Rcpt-To, Reporting-MTA, ...) and the
original message or its headers. Mailbox providers often redact the recipient, so the
complainant is taken from the most trustworthy place that has it:

1. sendwarden's own signed token, in the List-Unsubscribe header of the original (unforgeable);
2. Original-Rcpt-To or Removal-Recipient in the report;
3. the original's To header, when it holds exactly one address;
4. the `for <address>` of sendwarden's own Received header in the original.
"""

from __future__ import annotations

import email.utils
import re
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import Message as EmailMessage
from email.parser import HeaderParser
from email.policy import compat32

from proxy.unsubscribe.token import TokenError, TokenKeys

_TOKEN_IN_URI = re.compile(r"/unsubscribe/([a-z2-7]{20,1024})\b|mailto:[^+@>\s]+\+([a-z2-7]{20,1024})@", re.I)
_OUR_RECEIVED = re.compile(r"\(sendwarden\).*?\bfor\s+<([^<>\s]+@[^<>\s]+)>", re.I | re.S)


@dataclass
class Report:
    feedback_type: str
    fields: dict[str, list[str]] = field(default_factory=dict)
    original: EmailMessage | None = None  # the original message, or just its headers

    def first(self, name: str) -> str:
        values = self.fields.get(name.lower()) or [""]
        return values[0].strip()

    @property
    def reporter(self) -> str:
        return (self.first("Reporting-MTA") or self.first("User-Agent") or "unknown")[:200]


def _headers(part: EmailMessage) -> EmailMessage | None:
    """A message/* part's inner message, or a text part holding headers, as headers."""
    payload = part.get_payload()
    if isinstance(payload, list) and payload and isinstance(payload[0], EmailMessage):
        return payload[0]
    if isinstance(payload, str):
        text = part.get_payload(decode=True)
        if isinstance(text, bytes):
            return HeaderParser(policy=compat32).parsestr(text.decode("utf-8", "replace"))
    return None


def parse(raw: bytes) -> Report | None:
    """The feedback report in `raw`, or None when it is not an ARF report."""
    msg = message_from_bytes(raw, policy=compat32)
    report_type = msg.get_param("report-type")
    if msg.get_content_type() != "multipart/report" or not isinstance(report_type, str) or report_type.lower() != "feedback-report":
        return None
    report: Report | None = None
    original: EmailMessage | None = None
    parts = msg.get_payload()
    for part in parts if isinstance(parts, list) else []:
        if not isinstance(part, EmailMessage):
            continue
        ctype = part.get_content_type()
        if ctype == "message/feedback-report" and report is None:
            inner = _headers(part)
            if inner is None:
                continue
            fields: dict[str, list[str]] = {}
            for name, value in inner.items():
                fields.setdefault(name.lower(), []).append(" ".join(str(value).split()))
            report = Report((fields.get("feedback-type") or [""])[0].strip().lower(), fields)
        elif ctype in ("message/rfc822", "text/rfc822-headers") and original is None:
            original = _headers(part)
    if report is not None:
        report.original = original
    return report


def _one_address(value: str) -> str | None:
    pairs = [a for _, a in email.utils.getaddresses([value]) if "@" in a]
    return pairs[0] if len(pairs) == 1 else None


def sender_domain(report: Report) -> str:
    """The From domain of the original message the report is about ("" when it does not say):
    the domain the complaint counts against (the complaint-rate guard)."""
    orig = report.original
    if orig is None:
        return ""
    addr = _one_address(" ".join(str(v) for v in orig.get_all("From") or []))
    return addr.rpartition("@")[2].strip().lower() if addr else ""


def complainant(report: Report, keys: TokenKeys | None, now: float) -> tuple[str, str] | None:
    """(address, where it was found), or None when the report does not say who complained."""
    orig = report.original
    if orig is not None and keys is not None:
        for value in orig.get_all("List-Unsubscribe") or []:
            for m in _TOKEN_IN_URI.finditer(str(value)):
                try:
                    # The complaint stands however old the message: expiry does not matter here.
                    token = keys.verify(m.group(1) or m.group(2), now=0)
                except TokenError:
                    continue
                return token.address, "token"
    for name in ("Original-Rcpt-To", "Removal-Recipient"):
        addr = _one_address(report.first(name))
        if addr:
            return addr, name
    if orig is not None:
        addr = _one_address(" ".join(str(v) for v in orig.get_all("To") or []))
        if addr:
            return addr, "To"
        for value in orig.get_all("Received") or []:
            found = _OUR_RECEIVED.search(str(value))
            if found:
                return found.group(1), "Received"
    return None
