"""Mail that sendwarden takes for itself on its SMTP listener, from anyone: unsubscribe
requests (LOCAL+TOKEN@mailto_domain) and mail to the complaints address.

This is mail TO us, so clients outside relay_networks may send it; it is never relayed, and a
transaction carries either such recipients or relayed ones, never both (a client that mixes
them gets 452 for the odd one out and sends it in a new transaction, RFC 5321 §3.3). Nothing
else at the mailto domain is accepted, so this opens no relay.

The reply comes after the effect: 250 only once the suppression is committed or the message
is in the complaints Maildir (fsynced).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from pathlib import Path

import structlog

from proxy.audit import AddressMasker
from proxy.replies import Replies, Reply
from proxy.outbound.upstream import MaildirUpstream, Outgoing, Recipient
from proxy.store.address import a_label
from proxy.store.base import GLOBAL, RecipientStore, StoreError, Suppression
from proxy.unsubscribe import arf
from proxy.unsubscribe.token import Token, TokenError, TokenKeys

log = structlog.get_logger("sendwarden.intake")


@dataclass(frozen=True, slots=True)
class Local:
    """A recipient that is sendwarden itself."""

    kind: str  # "unsubscribe" or "complaints"
    address: str
    token: Token | None = None


class Refused(Exception):
    """An address in sendwarden's own domain that takes no mail; `reply` says why."""

    def __init__(self, reply: Reply) -> None:
        super().__init__(str(reply))
        self.reply = reply


class Intake:
    def __init__(self, *, store: RecipientStore, keys: TokenKeys | None, masker: AddressMasker, mailto_local: str,
                 mailto_domain: str, complaints_address: str, complaints_dir: Path, timeout: float) -> None:
        self.store = store
        self.keys = keys
        self.masker = masker
        self.prefix = mailto_local.lower() + "+"
        self.mailto_domain = mailto_domain.lower()
        self.complaints_address = complaints_address.lower()
        self.complaints_dir = complaints_dir
        self.timeout = timeout
        self._mailbox: MaildirUpstream | None = None

    @property
    def enabled(self) -> bool:
        return bool((self.mailto_domain and self.keys is not None) or self.complaints_address)

    def classify(self, address: str, now: float, client: str = "") -> Local | None:
        """The local recipient `address` names, None for anyone else; raises Refused for
        addresses in the mailto domain that are not valid unsubscribe addresses."""
        text = address.strip().strip("<>")
        if self.complaints_address and text.lower() == self.complaints_address:
            return Local("complaints", text)
        local, at, domain = text.rpartition("@")
        if not self.mailto_domain or not at or self.keys is None:
            return None
        try:
            if a_label(domain) != self.mailto_domain:
                return None
        except ValueError:
            return None
        if not local.lower().startswith(self.prefix):
            raise Refused(Replies.no_such_user())
        try:
            token = self.keys.verify(local[len(self.prefix):], now)
        except TokenError as exc:
            log.warning("unsubscribe_token_refused", via="mailto", kind=exc.kind, client=client)
            if exc.kind == "expired":
                raise Refused(Replies.unsubscribe_expired()) from None
            raise Refused(Replies.unsubscribe_invalid()) from None
        return Local("unsubscribe", text, token)

    async def consume(self, rcpts: list[Local], mail_from: str, content: bytes, queue_id: str) -> tuple[Reply, dict[str, object]]:
        """Act on a message for local recipients; the reply and what to put in the audit line."""
        record: dict[str, object] = {"consumed": sorted({r.kind for r in rcpts})}
        now = time.time()
        entries = [Suppression(r.token.address, r.token.scope, "unsubscribe", "mailto", now) for r in rcpts if r.token]
        try:
            if any(r.kind == "complaints" for r in rcpts):
                entry, how = self._complaint(content, now)
                record["complaint"] = how
                if entry is not None:
                    entries.append(entry)
                else:
                    record["stored"] = await self._store_for_people(mail_from, content, queue_id)
            if entries:
                await asyncio.wait_for(self.store.suppress(entries), self.timeout)
        except (StoreError, TimeoutError, OSError) as exc:
            reason = str(exc) or type(exc).__name__
            log.error("intake_failed", queue_id=queue_id, error=reason)
            return Replies.store_unavailable(reason), record
        except ValueError as exc:  # an address the store cannot file
            log.warning("intake_refused", queue_id=queue_id, error=str(exc))
            return Replies.malformed("5.1.3", f"cannot suppress that address: {exc}"), record
        for e in entries:
            log.info("unsubscribed" if e.reason == "unsubscribe" else "complaint_suppressed",
                     via=e.source, rcpt=self.masker(e.address), scope=str(e.scope), queue_id=queue_id)
        return Replies.received(queue_id), record

    def _complaint(self, content: bytes, now: float) -> tuple[Suppression | None, str]:
        """An abuse report's complainant as a global complaint suppression, if it names one."""
        report = arf.parse(content)
        if report is None:
            return None, "not an ARF report"
        if report.feedback_type != "abuse":
            return None, f"feedback type {report.feedback_type or 'missing'}"
        found = arf.complainant(report, self.keys, now)
        if found is None:
            log.warning("complaint_without_recipient", reporter=report.reporter)
            return None, "no recipient in the report"
        address, where = found
        return Suppression(address, GLOBAL, "complaint", f"arf:{report.reporter}", now), f"arf ({where})"

    async def _store_for_people(self, mail_from: str, content: bytes, queue_id: str) -> str:
        if self._mailbox is None:
            self._mailbox = await asyncio.to_thread(MaildirUpstream, self.complaints_dir)
        result = await self._mailbox.send(Outgoing(mail_from, (Recipient(self.complaints_address),), content), queue_id)
        if not result.delivered:
            raise OSError(f"complaints mailbox: {result.upstream}")
        log.info("complaint_stored", queue_id=queue_id, mailbox=str(self.complaints_dir))
        return str(self.complaints_dir)
