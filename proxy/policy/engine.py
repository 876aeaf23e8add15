"""Run every enabled check, collect every finding, decide once.

Pure: the engine reads the parsed message and a context the shell filled in; it never does
I/O. A check that raises does not let the message through unjudged: its exception becomes a
`check.error` finding, whose action the policy sets (quarantine by default).
"""

from __future__ import annotations

import structlog

from proxy.message.mime import Message
from proxy.message.opsregex import PatternTimeout
from proxy.policy.loader import Policy
from proxy.policy.context import Context
from proxy.policy.verdict import Action, Finding, Judged, Verdict

log = structlog.get_logger("sendwarden.engine")


def findings(policy: Policy, message: Message, ctx: Context) -> list[Finding]:
    """Every finding of every check enabled for the context's stream."""
    found: list[Finding] = []
    for chk, opts in policy.checks.get(ctx.stream) or policy.checks[policy.default_stream]:
        try:
            for f in chk.run(message, ctx, opts):
                found.append(f)
        except PatternTimeout as exc:  # an ops pattern ran out of time on this text: one line, no traceback
            log.warning("pattern_timeout", check=chk.name, pattern=exc.source[:200])
            found.append(Finding("check.error", f"check {chk.name}: {exc}"))
        except Exception as exc:  # a broken check must never let the message through unjudged
            log.error("check_failed", check=chk.name, error=repr(exc), exc_info=True)
            found.append(Finding("check.error", f"check {chk.name} failed: {type(exc).__name__}"))
    return found


def decide(policy: Policy, stream: str, found: list[Finding]) -> Verdict:
    """Map each finding to its action under the stream; the strongest action wins."""
    judged = tuple(Judged(f, policy.action(stream, f.rule)) for f in found)
    action = max((j.action for j in judged), default=Action.RELAY)
    return Verdict(action=action, judged=judged, monitor=policy.monitor, stream=stream)


def judge(policy: Policy, message: Message, ctx: Context, extra: list[Finding] | None = None) -> Verdict:
    """Judge one message. `extra` carries findings the shell already made (recipient state)."""
    found = findings(policy, message, ctx)
    if extra:
        found = [*extra, *found]
    return decide(policy, ctx.stream, found)
