"""One MAIL..end-of-data transaction as sendwarden keeps it, whatever brought it in.

The SMTP relay (proxy/smtp/handler.py) and the milter (proxy/milter/engine.py) both collect
the envelope into a `Transaction`; proxy/transaction/evaluate.py judges its message and
proxy/transaction/outcome.py acts on the verdict.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from proxy.outbound.upstream import Recipient
from proxy.policy.loader import Policy
from proxy.policy.verdict import Finding
from proxy.transaction import recipients
from proxy.transaction.recipients import Plan

if TYPE_CHECKING:
    from proxy.unsubscribe.intake import Local

__all__ = ["Recipient", "Transaction", "new_queue_id"]


@dataclass
class Transaction:
    """What sendwarden keeps for one MAIL..end-of-data transaction."""

    queue_id: str
    mail_from: str
    policy: Policy  # the policy in force at MAIL FROM: a reload does not change it mid-way
    stream: str
    started: float
    listener: str = ""
    client_ip: str = ""
    helo: str = ""
    auth_user: str | None = None
    proto: str = "ESMTP"
    smtputf8: bool = False
    recipients: list[Recipient] = field(default_factory=list)
    mail_dsn: dict[str, str] = field(default_factory=dict)
    body_8bit: bool = False
    traffic_class: str = ""  # for rate limits: "bounce" or the stream's name
    rate_keys: dict[str, str] = field(default_factory=dict)
    domains: set[str] = field(default_factory=set)
    inbound_only: bool = False  # the client may not relay: only sendwarden's own addresses
    local: list["Local"] = field(default_factory=list)  # recipients that are sendwarden itself
    plan: Plan | None = None  # the recipient-state lookups, fixed at the first RCPT
    rcpt_findings: list[Finding] = field(default_factory=list)  # let in with findings at MAIL or RCPT

    @property
    def marketing(self) -> bool:
        return self.policy.streams[self.stream].marketing

    def ensure_plan(self) -> Plan:
        if self.plan is None:
            self.plan = recipients.plan(self.policy, self.stream, self.mail_from, self.auth_user)
        return self.plan


def new_queue_id() -> str:
    return secrets.token_hex(5).upper()
