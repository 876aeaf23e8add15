"""A tiny milter application for the tests: it decides from the envelope and the Subject, and
records every call so that tests can see what the milter layer handed over.

- client 192.0.2.66: refused at connect
- sender blocked@…: refused at MAIL
- recipient suppressed…@…: refused at RCPT (that recipient only)
- Subject "reject" / "tempfail" / "quarantine" / "discard" / "slow" (sleeps past any timeout) /
  "crash" (raises): the matching outcome; anything else is accepted with two headers added.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from proxy.milter import AddHeader, Decision, Family, InsertHeader, Macros, MilterApplication, MilterTransaction
from proxy.replies import Replies, Reply

SUPPRESSED_REPLY = Replies.recipient_refused("optout.suppressed", "the recipient unsubscribed; remove them")
TEMPFAIL_REPLY = Reply(451, "4.7.1", "Demo milter asks you to try again later")
REJECT_REPLY = Replies.policy_reject(["demo.subject"], "the demo milter refuses this subject")


@dataclass
class Recorder:
    """What every DemoApp of one test saw."""

    events: list[tuple[str, Any]] = field(default_factory=list)
    transactions: list[MilterTransaction] = field(default_factory=list)
    apps: int = 0
    closed: int = 0

    def names(self) -> list[str]:
        return [name for name, _ in self.events]

    def factory(self) -> "DemoApp":
        self.apps += 1
        return DemoApp(self)


class DemoApp(MilterApplication):
    def __init__(self, recorder: Recorder) -> None:
        self.rec = recorder

    async def connect(self, host: str, family: Family, port: int, address: str, macros: Macros) -> Reply | None:
        self.rec.events.append(("connect", (host, family, port, address, dict(macros))))
        if address == "192.0.2.66":
            return Reply(554, "5.7.1", "Demo milter does not serve this client")
        return None

    async def helo(self, name: str, macros: Macros) -> Reply | None:
        self.rec.events.append(("helo", name))
        return None

    async def mail_from(self, sender: str, args: tuple[str, ...], macros: Macros) -> Reply | None:
        self.rec.events.append(("mail_from", (sender, args, dict(macros))))
        if sender.startswith("blocked@"):
            return Reply(550, "5.7.1", "Demo milter refuses this sender")
        return None

    async def rcpt(self, recipient: str, args: tuple[str, ...], macros: Macros) -> Reply | None:
        self.rec.events.append(("rcpt", (recipient, args, dict(macros))))
        return SUPPRESSED_REPLY if recipient.startswith("suppressed") else None

    async def header(self, name: str, value: str) -> None:
        self.rec.events.append(("header", (name, value)))

    async def end_of_headers(self) -> None:
        self.rec.events.append(("end_of_headers", None))

    async def body(self, chunk: bytes) -> None:
        self.rec.events.append(("body", len(chunk)))

    async def end_of_message(self, transaction: MilterTransaction) -> Decision:
        self.rec.events.append(("end_of_message", transaction.queue_id))
        self.rec.transactions.append(transaction)
        subject = next((v.strip().lower() for n, v in transaction.headers if n.lower() == "subject"), "")
        if subject == "reject":
            return Decision.reject(REJECT_REPLY)
        if subject == "tempfail":
            return Decision.tempfail(TEMPFAIL_REPLY)
        if subject == "quarantine":
            return Decision.quarantine("demo hold: the subject asks for it", AddHeader("X-Sendwarden-Hold", "yes"))
        if subject == "discard":
            return Decision.discard()
        if subject == "slow":
            await asyncio.sleep(3600)
        if subject == "crash":
            raise RuntimeError("demo crash with a secret detail")
        return Decision.accept(AddHeader("X-Sendwarden", f"checked; queue={transaction.queue_id or '-'}"),
                               InsertHeader(0, "X-Sendwarden-Top", "first"))

    async def abort(self) -> None:
        self.rec.events.append(("abort", None))

    async def close(self) -> None:
        self.rec.events.append(("close", None))
        self.rec.closed += 1
