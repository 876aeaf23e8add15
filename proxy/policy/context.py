"""What a check may know besides the message: the transaction's `Context`, and the records of
the facts the shell looked up before judging (DKIM results, a virus scan, a lookup that
failed). Defined here, in the pure core, so that checks read them without importing the shell
that produces them (proxy/facts/)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Mapping

__all__ = ["Context", "DkimVerification", "LookupFailed", "NOT_SIGNED", "ScanResult", "SignatureResult", "Status"]


@dataclass(frozen=True, slots=True)
class Context:
    """Everything a check may know besides the message, fetched by the shell beforehand."""

    stream: str = "marketing"
    marketing: bool = True
    mail_from: str = ""
    rcpts: tuple[str, ...] = ()
    client_ip: str = ""
    helo: str = ""
    auth_user: str | None = None
    now: float = 0.0
    facts: Mapping[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class LookupFailed:
    """A fact that could not be looked up, and why (timeout, DNS failure, store down...)."""

    reason: str
    temporary: bool = True


Status = Literal["pass", "fail", "permerror", "temperror"]


@dataclass(frozen=True, slots=True)
class SignatureResult:
    domain: str  # d=, lower case
    selector: str
    status: Status
    reason: str = ""


@dataclass(frozen=True, slots=True)
class DkimVerification:
    """The `dkim` fact: one result per signature, topmost first."""

    signatures: tuple[SignatureResult, ...] = ()
    not_verified: int = 0  # signatures beyond the limit


NOT_SIGNED = DkimVerification()


@dataclass(frozen=True, slots=True)
class ScanResult:
    """The `clamav` fact, clamd's verdict: the signatures it found (empty when clean);
    `scanned` is False when the message was not sent to clamd (no attachments and
    scan = "attachments")."""

    found: tuple[str, ...] = ()
    scanned: bool = True
