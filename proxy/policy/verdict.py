"""Findings, actions and verdicts.

Checks produce `Finding`s; the policy maps each rule ID to an `Action`; the strongest action
wins. A verdict asks the reply catalogue (proxy/replies.py) for the reply its action gives.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from proxy.replies import Replies, Reply

__all__ = ["Action", "Finding", "Judged", "Replies", "Reply", "Verdict"]


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
