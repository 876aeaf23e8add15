"""Mail that sendwarden takes for itself on its SMTP listener, from anyone: unsubscribe
requests (LOCAL+TOKEN@mailto_domain) and mail to the complaints address.

This is mail TO us, so clients outside relay_networks may send it; it is never relayed, and a
transaction carries either such recipients or relayed ones, never both (a client that mixes
them gets 452 for the odd one out and sends it in a new transaction, RFC 5321 §3.3). Nothing
else at the mailto domain is accepted, so this opens no relay.

The reply comes after the effect: 250 only once the suppression is committed or the message
is in the complaints Maildir (fsynced).

Anyone can send an ARF report naming anyone (`Original-Rcpt-To: ceo@bigcustomer.example`), so a
report suppresses only when BOTH hold, and otherwise goes to the complaints Maildir for people:
- it comes from a feedback loop: a client in `feedback_networks`, or a DKIM signature on the
  report that verifies for a domain in (or under) `feedback_domains`;
- it names a recipient this relay sent to: our own signed token in the original's
  List-Unsubscribe header, or an address the send ledger (the store's sends) has.
Outsiders reach this intake, so it has its own size limit and a rate limit per client address.
"""

from __future__ import annotations

import asyncio
import ipaddress
import time
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from proxy.audit import AddressMasker
from proxy.replies import Replies, Reply
from proxy.outbound.upstream import MaildirUpstream, Outgoing, Recipient
from proxy.store.address import a_label
from proxy.store.base import GLOBAL, Query, RecipientStore, StoreError, Suppression
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


# How far back the send ledger is asked whether we ever sent to a complainant.
LEDGER_SPAN = 400 * 86400.0
MAX_CLIENTS = 10_000  # rate-limit entries kept (the oldest dropped first)


class Intake:
    def __init__(self, *, store: RecipientStore, keys: TokenKeys | None, masker: AddressMasker, mailto_local: str,
                 mailto_domain: str, complaints_address: str, complaints_dir: Path, timeout: float,
                 feedback_domains: Sequence[str] = (), feedback_networks: Sequence[str] = (),
                 verify_dkim: Callable[[bytes], Awaitable[Any]] | None = None,
                 max_size: int = 1_048_576, per_client: int = 20, window: float = 3600.0) -> None:
        self.store = store
        self.keys = keys
        self.masker = masker
        self.prefix = mailto_local.lower() + "+"
        self.mailto_domain = mailto_domain.lower()
        self.complaints_address = complaints_address.lower()
        self.complaints_dir = complaints_dir
        self.timeout = timeout
        self._mailbox: MaildirUpstream | None = None
        self.feedback_domains = tuple(d.lower().rstrip(".") for d in feedback_domains)
        self.feedback_networks = tuple(ipaddress.ip_network(n, strict=False) for n in feedback_networks)
        self.verify_dkim = verify_dkim
        self.max_size = max_size
        self.per_client = per_client
        self.window = window
        self._recent: OrderedDict[str, deque[float]] = OrderedDict()

    def over_rate(self, client: str, now: float) -> bool:
        """Count one message for `client`; True when it is over `per_client` per `window`."""
        times = self._recent.pop(client, None) or deque()
        while times and times[0] <= now - self.window:
            times.popleft()
        over = len(times) >= self.per_client
        if not over:
            times.append(now)
        self._recent[client] = times
        while len(self._recent) > MAX_CLIENTS:
            self._recent.popitem(last=False)
        return over

    @property
    def enabled(self) -> bool:
        return bool((self.mailto_domain and self.keys is not None) or self.complaints_address)

    def classify(self, address: str, now: float, client: str = "") -> Local | None:
        """The local recipient `address` names, None for anyone else; raises Refused for
        addresses in the mailto domain that are not valid unsubscribe addresses."""
        text = address.strip().strip("<>")
        if self.complaints_address and text.lower() == self.complaints_address:
            self._check_rate(client, now)
            return Local("complaints", text)
        local, at, domain = text.rpartition("@")
        if not self.mailto_domain or not at or self.keys is None:
            return None
        try:
            if a_label(domain) != self.mailto_domain:
                return None
        except ValueError:
            return None
        self._check_rate(client, now)
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

    def _check_rate(self, client: str, now: float) -> None:
        if client and self.over_rate(client, now):
            log.warning("intake_rate_limited", client=client, per_client=self.per_client, window_s=self.window)
            raise Refused(Replies.rate_limited(f"at most {self.per_client} messages to this address per {self.window:g}s per client"))

    async def consume(self, rcpts: list[Local], mail_from: str, content: bytes, queue_id: str,
                      client: str = "") -> tuple[Reply, dict[str, object]]:
        """Act on a message for local recipients; the reply and what to put in the audit line."""
        record: dict[str, object] = {"consumed": sorted({r.kind for r in rcpts})}
        now = time.time()
        entries = [Suppression(r.token.address, r.token.scope, "unsubscribe", "mailto", now) for r in rcpts if r.token]
        counted = ""  # the sender domain a complaint acted on counts against
        try:
            if any(r.kind == "complaints" for r in rcpts):
                entry, how, counted = await self._complaint(content, now, client)
                record["complaint"] = how
                if entry is not None:
                    entries.append(entry)
                else:
                    counted = ""
                    record["stored"] = await self._store_for_people(mail_from, content, queue_id)
            if entries:
                await asyncio.wait_for(self.store.suppress(entries), self.timeout)
            if counted:
                record["complaint_counted"] = counted
                record["complaint_brand"] = await asyncio.wait_for(self.store.record_complaint(counted, now), self.timeout)
        except (StoreError, TimeoutError, OSError) as exc:
            reason = str(exc) or type(exc).__name__
            log.error("intake_failed", queue_id=queue_id, error=reason)
            return Replies.store_unavailable(reason), record
        except ValueError as exc:  # an address the store cannot file
            log.warning("intake_refused", queue_id=queue_id, error=str(exc))
            return Replies.cannot_suppress(str(exc)), record
        for e in entries:
            log.info("unsubscribed" if e.reason == "unsubscribe" else "complaint_suppressed",
                     via=e.source, rcpt=self.masker(e.address), scope=str(e.scope), queue_id=queue_id)
        return Replies.received(queue_id), record

    async def _complaint(self, content: bytes, now: float, client: str) -> tuple[Suppression | None, str, str]:
        """An abuse report's complainant as a global complaint suppression, when the report
        comes from a feedback loop and names someone we sent to (else None and why), and the
        sender domain an acted-on complaint counts against (the complaint-rate guard)."""
        if len(content) > self.max_size:  # parse nothing larger (the DATA limit is the same)
            return None, "too large to parse", ""
        report = arf.parse(content)
        if report is None:
            return None, "not an ARF report", ""
        if report.feedback_type != "abuse":
            return None, f"feedback type {report.feedback_type or 'missing'}", ""
        found = arf.complainant(report, self.keys, now)
        if found is None:
            log.warning("complaint_without_recipient", reporter=report.reporter)
            return None, "no recipient in the report", ""
        address, where = found
        source = await self._feedback_source(content, client)
        sent = where == "token" or await self._sent_to(address, now)
        if not source or not sent:
            why = "; ".join(w for w, bad in (("not from a configured feedback loop", not source),
                                              ("names no recipient this relay sent to", not sent)) if bad)
            log.warning("complaint_not_acted_on", reporter=report.reporter, client=client, found_in=where,
                        rcpt=self.masker(address), reason=why)
            return None, f"kept for people: {why}", ""
        return Suppression(address, GLOBAL, "complaint", f"arf:{report.reporter}", now), f"arf ({where}; {source})", arf.sender_domain(report)

    async def _feedback_source(self, content: bytes, client: str) -> str:
        """How the report proves it comes from a feedback loop ("" when it does not)."""
        if client and self.feedback_networks:
            try:
                ip = ipaddress.ip_address(client.split("%", 1)[0])
            except ValueError:
                ip = None
            if ip is not None and any(ip in net for net in self.feedback_networks):
                return f"client {client}"
        if self.feedback_domains and self.verify_dkim is not None:
            try:
                result = await asyncio.wait_for(self.verify_dkim(content), self.timeout)
            except (TimeoutError, OSError):
                return ""
            for sig in result.signatures:
                if sig.status == "pass" and any(sig.domain == d or sig.domain.endswith("." + d) for d in self.feedback_domains):
                    return f"dkim d={sig.domain}"
        return ""

    async def _sent_to(self, address: str, now: float) -> bool:
        """Whether the send ledger has `address` (recorded where frequency is counted)."""
        window = ((GLOBAL, LEDGER_SPAN),)
        try:
            state = await asyncio.wait_for(self.store.lookup(address, Query(windows=window), now), self.timeout)
        except (StoreError, TimeoutError, ValueError):
            return False
        return state.sends.get(window[0], 0) > 0

    async def _store_for_people(self, mail_from: str, content: bytes, queue_id: str) -> str:
        if self._mailbox is None:
            self._mailbox = await asyncio.to_thread(MaildirUpstream, self.complaints_dir)
        result = await self._mailbox.send(Outgoing(mail_from, (Recipient(self.complaints_address),), content), queue_id)
        if not result.delivered:
            raise OSError(f"complaints mailbox: {result.upstream}")
        log.info("complaint_stored", queue_id=queue_id, mailbox=str(self.complaints_dir))
        return str(self.complaints_dir)
