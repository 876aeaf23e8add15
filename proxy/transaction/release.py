"""What reviewers do with held messages: find them, release them, delete them, purge old ones.

The operations, apart from their presentation (proxy/commands/quarantine.py prints them). A
release sends the stored bytes and envelope through the same upstream as the relay, with the
same trace header, exactly once: the claim (held → releasing) is taken before sending and only
the claim's holder can settle it (released) or give it back (held, upstream refused).
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from dataclasses import dataclass, field
from typing import Any

import structlog

from proxy.outbound import received as trace
from proxy.config import Config, parse_duration
from proxy.outbound.dkim import Signer, signature_head
from proxy.dns import Resolver
from proxy.facts.sources import FactSources
from proxy.message.lineends import has_bare_line_ends, normalize_line_endings
from proxy.message.mime import Message
from proxy.quarantine.notify import Notifier
from proxy.policy.loader import Policy
from proxy.policy.context import Context
from proxy.store import from_config as store_from_config
from proxy.policy.verdict import Action, Verdict
from proxy.quarantine.files import Quarantine, QuarantineError
from proxy.outbound.upstream import Outgoing, Recipient, Result, Upstream, upstream_budget
from proxy.outbound.xforward import Origin

log = structlog.get_logger("sendwarden.review")


@dataclass(frozen=True)
class Filters:
    """Which messages `list` shows. `status` None means every status."""

    status: str | None = "held"
    since: float | None = None  # epoch seconds
    rule: str = ""  # a rule ID or a prefix of one: "unsubscribe", "sender.mis"
    sender: str = ""  # an envelope sender, or "@domain"
    stream: str = ""

    def where(self, dialect: str = "sqlite") -> tuple[str, list[Any]]:
        """A WHERE clause with its parameters; values never enter the SQL text. `?` stands for
        a parameter in both dialects (the shared quarantine numbers them)."""
        terms: list[str] = ["1=1"]
        params: list[Any] = []
        if self.status:
            terms.append("status = ?")
            params.append(self.status)
        if self.since is not None:
            terms.append("created >= ?")
            params.append(self.since)
        if self.rule:
            if dialect == "postgresql":
                terms.append("EXISTS (SELECT 1 FROM json_array_elements(held.findings::json) AS f"
                             " WHERE f->>'rule' LIKE ? ESCAPE '\\')")
            else:
                terms.append("EXISTS (SELECT 1 FROM json_each(held.findings) AS f"
                             " WHERE json_extract(f.value, '$.rule') LIKE ? ESCAPE '\\')")
            params.append(_like(self.rule.lower()) + "%")
        if self.sender:
            if self.sender.startswith("@"):
                terms.append("lower(mail_from) LIKE ? ESCAPE '\\'")
                params.append("%" + _like(self.sender.lower()))
            else:
                terms.append("lower(mail_from) = ?")
                params.append(self.sender.lower())
        if self.stream:
            terms.append("stream = ?")
            params.append(self.stream)
        return " AND ".join(terms), params


def _like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


@dataclass(frozen=True)
class Page:
    rows: list[sqlite3.Row]
    total: int
    page: int
    pages: int


def find(q: Quarantine, filters: Filters, limit: int = 50, page: int = 1) -> Page:
    """One page of matching messages, newest first."""
    where, params = filters.where(q.dialect)
    rows, total = q.search(where, params, limit, (page - 1) * limit)
    return Page(rows, total, page, max(1, -(-total // limit)))


def rules_of(row: sqlite3.Row) -> list[str]:
    return list(dict.fromkeys(f["rule"] for f in json.loads(row["findings"])))


@dataclass(frozen=True)
class ReleaseOutcome:
    """What became of one message a reviewer acted on."""

    hold_id: str
    result: str  # released, already_released, failed, busy, stuck, refused_by_policy, deleted, ...
    ok: bool
    message: str
    findings: list[dict[str, str]] = field(default_factory=list)


class Reviewer:
    """One reviewer's session: who they are, and the upstream/policy a release uses."""

    def __init__(self, q: Quarantine, config: Config, actor: str, os_user: str,
                 upstream: Upstream | None = None, notifier: Notifier | None = None,
                 fact_sources: FactSources | None = None) -> None:
        self.q = q
        self.config = config
        self.actor = actor
        self.os_user = os_user
        self.upstream = upstream
        self.notifier = notifier or Notifier(config.file.quarantine.notify, config.file.hostname)
        self._signer: Signer | None = None
        self._fact_sources = fact_sources

    @property
    def fact_sources(self) -> FactSources:
        """The resolver and store of the configuration, made on the first recheck. The store
        is not opened, as when the release built a whole service for its facts: a lookup
        that needs it is a failed lookup, which the policy maps."""
        if self._fact_sources is None:
            self._fact_sources = FactSources(Resolver.from_config(self.config.file.dns), store_from_config(self.config))
        return self._fact_sources

    @property
    def signer(self) -> Signer:
        """The relay's DKIM keys, read on the first release (a listing needs none)."""
        if self._signer is None:
            self._signer = Signer.from_config(self.config)
        return self._signer

    def _audit(self, event: str, hold_id: str, **kw: Any) -> None:
        log.info(event, id=hold_id, actor=self.actor, os_user=self.os_user, **kw)

    async def _notify(self, kind: str, row: sqlite3.Row, **extra: Any) -> None:
        await self.notifier.deliver(self.notifier.event(kind, row["id"], dict(row), **extra))

    def revealed(self, hold_id: str, what: str) -> None:
        """Recipient addresses were shown in clear: that is logged and kept in the history."""
        self._audit("quarantine_reveal", hold_id, what=what)
        self.q.note(hold_id, "revealed", self.actor, what)

    # -- release ----------------------------------------------------------------------------------

    async def release(self, hold_id: str, reason: str, *, policy: Policy | None = None,
                      retry_stale: bool = False) -> ReleaseOutcome:
        row = self.q.get(hold_id)
        if row is None:
            return ReleaseOutcome(hold_id, "not_found", False, "no such message in the quarantine")
        stale_before = time.time() - parse_duration(self.config.file.quarantine.stale_claim)
        token = self.q.claim(hold_id, self.actor, stale_before if retry_stale else None)
        if token is None:
            return self._not_claimed(self.q.get(hold_id) or row, stale_before)
        row = self.q.get(hold_id) or row
        sending = False
        try:
            raw = await asyncio.to_thread(self.q.raw, hold_id)
            if has_bare_line_ends(raw):  # held as received, so CRLF; a file edited on disk may not be
                raw = normalize_line_endings(raw)
            head = self._trace(row)
            if policy is not None:
                verdict = await self._recheck(policy, row, raw)
                if verdict.effective != Action.RELAY:
                    findings = [{"rule": j.rule, "action": str(j.action), "detail": j.finding.detail} for j in verdict.judged]
                    why = f"recheck: the policy still says {verdict.effective}"
                    self.q.give_back(hold_id, token, self.actor, why)
                    return ReleaseOutcome(hold_id, "refused_by_policy", False, why, findings)
                if verdict.judged and policy.tag_header:
                    from proxy.transaction.outcome import findings_header

                    head += findings_header(verdict)
            # The same last step as the relay: DKIM-sign what goes out, nothing added after it.
            signature, _ = await signature_head(self.signer, head, raw)
            out = Outgoing(
                mail_from=row["mail_from"],
                recipients=tuple(Recipient(r["address"], r.get("dsn") or {}) for r in json.loads(row["rcpts"])),
                head=signature + head,
                data=raw,
                smtputf8=bool(row["smtputf8"]),
                body_8bit=not raw.isascii(),
                dsn=json.loads(row["mail_dsn"]),
                # The client that sent it, as recorded when it was held: the MTA logs that
                # client for the release too, not the reviewer's machine.
                origin=Origin(addr=row["client"] or "", helo=row["helo"] or "", proto=row["proto"] or ""),
            )
            sending = True
            result = await self._send(out, row["queue_id"])
        except QuarantineError as exc:  # the stored file is gone or unreadable
            self.q.give_back(hold_id, token, self.actor, str(exc))
            return ReleaseOutcome(hold_id, "failed", False, str(exc))
        except BaseException as exc:
            if not sending or isinstance(exc, Exception):
                # Nothing reached the upstream (or it failed in our code before or after):
                # the message stays held. A cancel mid-send leaves the claim, seen as stuck.
                self.q.give_back(hold_id, token, self.actor, f"release failed: {exc}")
            raise
        if not result.delivered:
            self.q.give_back(hold_id, token, self.actor, result.upstream)
            self._audit("quarantine_release_failed", hold_id, reason=reason, upstream_reply=result.upstream)
            await self._notify("release_failed", row, by=self.actor, reason=reason, upstream_reply=result.upstream)
            return ReleaseOutcome(hold_id, "failed", False, result.upstream)
        return await self._settle(row, token, reason, result.upstream)

    def _trace(self, row: sqlite3.Row) -> bytes:
        rcpts = [r["address"] for r in json.loads(row["rcpts"])]
        return trace.received(self.config.file.hostname, helo=row["helo"] or "unknown", ip=row["client"],
                              proto=row["proto"] or "ESMTP", queue_id=row["queue_id"], rcpts=rcpts,
                              when=row["created"], comment=f"released from quarantine {row['id']}")

    async def _send(self, out: Outgoing, queue_id: str) -> Result:
        from proxy.replies import Replies

        assert self.upstream is not None, "a release needs an upstream"
        budget = upstream_budget(self.config)
        try:
            return await asyncio.wait_for(self.upstream.send(out, queue_id), budget)
        except asyncio.TimeoutError:
            return Result(Replies.upstream_unavailable("upstream did not answer in time"), False,
                          f"no answer from the upstream within {budget:g}s")

    async def _settle(self, row: sqlite3.Row, token: str, reason: str, reply: str) -> ReleaseOutcome:
        hold_id = row["id"]
        for attempt in range(5):
            try:
                settled = self.q.settle(hold_id, token, self.actor, reason, reply)
                break
            except (sqlite3.Error, QuarantineError) as exc:
                log.warning("quarantine_settle_retry", id=hold_id, error=str(exc), attempt=attempt)
                await asyncio.sleep(0.5 * (attempt + 1))
        else:
            return ReleaseOutcome(hold_id, "released_unrecorded", True,
                           f"{reply} -- sent, but the quarantine could not record it: it stays 'releasing'; do not release it again")
        self._audit("quarantine_released", hold_id, reason=reason, upstream_reply=reply)
        await self._notify("released", row, by=self.actor, reason=reason, upstream_reply=reply)
        if not settled:
            return ReleaseOutcome(hold_id, "released", True, f"{reply} (the claim had been taken over meanwhile)")
        return ReleaseOutcome(hold_id, "released", True, reply)

    def _not_claimed(self, row: sqlite3.Row, stale_before: float) -> ReleaseOutcome:
        status, hold_id = row["status"], row["id"]
        if status == "released":
            when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(row["released_at"]))
            return ReleaseOutcome(hold_id, "already_released", True,
                           f"already released by {row['released_by']} at {when}; upstream: {row['upstream_reply']}")
        if status == "deleted":
            return ReleaseOutcome(hold_id, "deleted", False, f"deleted by {row['deleted_by']}; nothing to release")
        if status == "releasing":
            since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(row["claimed_at"]))
            if row["claimed_at"] < stale_before:
                return ReleaseOutcome(hold_id, "stuck", False,
                               f"a release by {row['claimed_by']} started at {since} and never finished: the upstream may"
                               f" have it (look for queue id {row['queue_id']} in its log); --retry-stale sends it again")
            return ReleaseOutcome(hold_id, "busy", False, f"being released by {row['claimed_by']} since {since}; not sent again")
        return ReleaseOutcome(hold_id, status, False, f"cannot release a message in status {status}")

    async def _recheck(self, policy: Policy, row: sqlite3.Row, raw: bytes) -> Verdict:
        from dataclasses import replace

        from proxy.facts.gather import gather
        from proxy.policy.engine import judge

        message = Message.from_bytes(raw)
        stream = row["stream"] if row["stream"] in policy.streams else policy.default_stream
        ctx = Context(stream=stream, marketing=policy.streams[stream].marketing, mail_from=row["mail_from"],
                      rcpts=tuple(r["address"] for r in json.loads(row["rcpts"])), client_ip=row["client"],
                      helo=row["helo"], auth_user=row["auth_user"], now=time.time())
        # Facts come from the same providers as in the relay, against the same config.
        facts = await gather(self.fact_sources, policy, message, ctx, self.config.file.timeouts.policy)
        return judge(policy, message, replace(ctx, facts=facts))

    # -- delete and purge -------------------------------------------------------------------------

    async def delete(self, hold_id: str, reason: str) -> ReleaseOutcome:
        row = self.q.get(hold_id)
        before = self.q.delete(hold_id, self.actor, reason)
        if before is None or row is None:
            return ReleaseOutcome(hold_id, "not_found", False, "no such message in the quarantine")
        if before == "deleted":
            return ReleaseOutcome(hold_id, "already_deleted", True, f"already deleted by {row['deleted_by']}")
        if before == "releasing":
            return ReleaseOutcome(hold_id, "busy", False, f"being released by {row['claimed_by']}; not deleted")
        self._audit("quarantine_deleted", hold_id, reason=reason, was=before)
        await self._notify("deleted", row, by=self.actor, reason=reason)
        return ReleaseOutcome(hold_id, "deleted", True, f"deleted (was {before})")

    def purge(self, older_than: float, dry_run: bool) -> tuple[list[sqlite3.Row], list[str]]:
        rows, files = self.q.purge(time.time() - older_than, dry_run)
        if not dry_run:
            log.info("quarantine_purged", actor=self.actor, os_user=self.os_user, messages=len(rows),
                     stray_files=len(files), older_than_s=older_than)
        return rows, files


__all__ = ["Filters", "ReleaseOutcome", "Page", "Reviewer", "find", "rules_of"]
