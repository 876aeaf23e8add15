"""Findings, actions, verdicts and the one catalogue of SMTP replies.

Checks produce `Finding`s; the policy maps each rule ID to an `Action`; the strongest action
wins. Every reply that sendwarden sends for a policy or relay outcome comes from `Reply`
constructors here, so the codes stay consistent (RFC 5321 basic codes, RFC 3463 enhanced codes).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


class Action(enum.IntEnum):
    """What to do with a message. Ordered: the strongest action wins.

    TEMPFAIL answers 451 so that the client tries again later: for findings that say "could not
    judge now" (a DNS lookup failed) rather than "wrong". It beats QUARANTINE (a retry judges
    the whole message again, nothing is lost) and yields to REJECT (a retry cannot help).
    """

    RELAY = 0
    QUARANTINE = 1
    TEMPFAIL = 2
    REJECT = 3

    @classmethod
    def parse(cls, text: str) -> "Action":
        try:
            return cls[text.upper()]
        except KeyError:
            raise ValueError(f"unknown action {text!r} (expected relay, quarantine, tempfail or reject)") from None

    def __str__(self) -> str:
        return self.name.lower()


@dataclass(frozen=True, slots=True)
class Finding:
    """One thing a check found: a stable rule ID, what exactly, and what the sender can do."""

    rule: str
    detail: str
    remedy: str = ""


@dataclass(frozen=True, slots=True)
class Judged:
    """A finding with the action the policy gave its rule."""

    finding: Finding
    action: Action

    @property
    def rule(self) -> str:
        return self.finding.rule


@dataclass(frozen=True, slots=True)
class Reply:
    """An SMTP reply: basic code, enhanced code (RFC 3463) and text."""

    code: int
    enhanced: str
    text: str

    def __str__(self) -> str:
        return f"{self.code} {self.enhanced} {self.text}"

    @property
    def is_success(self) -> bool:
        return 200 <= self.code < 300

    @property
    def is_temporary(self) -> bool:
        return 400 <= self.code < 500

    def as_dict(self) -> dict[str, object]:
        return {"code": self.code, "enhanced": self.enhanced, "text": self.text}


def _clean(text: str) -> str:
    """Reply text must be one line of printable characters; findings can carry anything."""
    text = " ".join(text.split())
    return "".join(ch if 32 <= ord(ch) < 127 else "?" for ch in text)[:400]


class Replies:
    """The catalogue of replies sendwarden itself composes."""

    @staticmethod
    def relayed(queue_id: str, upstream: str) -> Reply:
        return Reply(250, "2.0.0", _clean(f"Ok: relayed id={queue_id} upstream: {upstream}"))

    @staticmethod
    def quarantined(hold_id: str) -> Reply:
        return Reply(250, "2.6.0", f"Ok: message accepted and held for review id={hold_id}")

    @staticmethod
    def policy_reject(rules: list[str], reason: str) -> Reply:
        return Reply(550, "5.7.1", _clean(f"Message refused by policy [{', '.join(rules)}]: {reason}"))

    @staticmethod
    def policy_tempfail(rules: list[str], reason: str) -> Reply:
        return Reply(451, "4.4.3", _clean(f"Message deferred by policy [{', '.join(rules)}], try again later: {reason}"))

    @staticmethod
    def recipient_refused(rule: str, reason: str) -> Reply:
        return Reply(550, "5.7.1", _clean(f"Recipient refused by policy [{rule}]: {reason}"))

    @staticmethod
    def recipient_unroutable(rule: str, reason: str) -> Reply:
        """RFC 3463 5.1.2: the destination system (the recipient's domain) cannot take mail."""
        return Reply(550, "5.1.2", _clean(f"Recipient refused by policy [{rule}]: {reason}"))

    @staticmethod
    def recipient_lookup_failed(rule: str, reason: str) -> Reply:
        """A fact about the recipient could not be looked up (DNS): never final, the client retries."""
        return Reply(451, "4.4.3", _clean(f"Recipient deferred [{rule}]: {reason}; try again later"))

    @staticmethod
    def recipient_deferred(rule: str, reason: str) -> Reply:
        return Reply(450, "4.7.1", _clean(f"Recipient deferred by policy [{rule}]: {reason}; try again later"))

    @staticmethod
    def auth_locked_out(seconds: float) -> Reply:
        return Reply(454, "4.7.0", f"Too many failed authentications from your address; try again in {max(1, round(seconds))} s")

    @staticmethod
    def in_flight_full() -> Reply:
        return Reply(452, "4.3.1", "Insufficient system storage: too many message bytes in flight, try again later")

    @staticmethod
    def auth_busy() -> Reply:
        return Reply(454, "4.7.0", "Temporary authentication failure: too many checks in progress, try again later")

    @staticmethod
    def rate_limited(reason: str) -> Reply:
        return Reply(451, "4.7.1", _clean(f"Rate limit reached, try again later: {reason}"))

    @staticmethod
    def upstream_unavailable(reason: str) -> Reply:
        return Reply(451, "4.4.1", _clean(f"Upstream MTA not available, try again later: {reason}"))

    @staticmethod
    def upstream_temporary(code: int, text: str) -> Reply:
        return Reply(451, "4.4.1", _clean(f"Upstream MTA deferred the message ({code} {text})"))

    @staticmethod
    def store_unavailable(reason: str) -> Reply:
        return Reply(451, "4.3.0", _clean(f"Local store unavailable, try again later: {reason}"))

    @staticmethod
    def policy_timeout(reason: str) -> Reply:
        return Reply(451, "4.4.3", _clean(f"Policy lookups timed out, try again later: {reason}"))

    @staticmethod
    def internal_error() -> Reply:
        return Reply(451, "4.3.0", "Internal error, the message was not accepted; try again later")

    @staticmethod
    def too_large(limit: int) -> Reply:
        return Reply(552, "5.3.4", f"Message too big for system (limit {limit} bytes)")

    @staticmethod
    def malformed(enhanced: str, reason: str) -> Reply:
        return Reply(550, enhanced, _clean(reason))

    @staticmethod
    def relay_denied() -> Reply:
        return Reply(554, "5.7.1", "Relay access denied")

    @staticmethod
    def auth_required() -> Reply:
        return Reply(530, "5.7.0", "Authentication required")

    @staticmethod
    def shutting_down() -> Reply:
        return Reply(421, "4.3.2", "Service shutting down, closing transmission channel")

    @staticmethod
    def too_many_connections() -> Reply:
        return Reply(421, "4.7.0", "Too many connections, try again later")


@dataclass(frozen=True)
class Verdict:
    """The engine's decision on one message.

    `action` is what the policy asks for; `effective` is what happens (in monitor mode every
    message is relayed, but the verdict still says what enforcement would have done).
    """

    action: Action
    judged: tuple[Judged, ...] = ()
    monitor: bool = False
    stream: str = ""
    errors: tuple[str, ...] = field(default=())

    @property
    def effective(self) -> Action:
        return Action.RELAY if self.monitor else self.action

    @property
    def rules(self) -> list[str]:
        return [j.rule for j in self.judged]

    def deciding(self) -> list[Judged]:
        """The findings whose action is the verdict's action (the reasons for it)."""
        return [j for j in self.judged if j.action == self.action]

    def reject_reply(self) -> Reply:
        rules, reason = self._reasons()
        return Replies.policy_reject(rules, reason)

    def tempfail_reply(self) -> Reply:
        rules, _ = self._reasons()
        # The detail (what failed) helps the sender's ops more than a remedy here.
        return Replies.policy_tempfail(rules, "; ".join(j.finding.detail for j in self.deciding()[:3]))

    def _reasons(self) -> tuple[list[str], str]:
        deciding = self.deciding()
        rules = sorted({j.rule for j in deciding})
        return rules, "; ".join(j.finding.remedy or j.finding.detail for j in deciding[:3])
