"""A check that raises never lets a message through unjudged: its exception becomes a
`check.error` finding with the policy's action (quarantine by default), logged with the
traceback; the other checks still run."""

from __future__ import annotations

from dataclasses import replace

from structlog.testing import capture_logs

from proxy.policy.engine import judge
from proxy.policy.registry import Check, Context
from proxy.policy.verdict import Action
from tests.policy.checks.judging import DEFAULT, FOOTER, mail, message


def test_raising_check_becomes_check_error() -> None:
    def boom(msg, ctx, opts):  # type: ignore[no-untyped-def]
        raise RuntimeError("surprise")
        yield  # pragma: no cover

    broken = Check("subject.boom", "subject", ("subject.missing",), boom, False)
    checks = dict(DEFAULT.checks)
    checks["marketing"] = (*checks["marketing"], (broken, DEFAULT.options["subject"]))
    pol = replace(DEFAULT, checks=checks)
    with capture_logs() as logs:
        verdict = judge(pol, message(mail(FOOTER, "", subject="RE: fake")), Context())
    assert sorted(verdict.rules) == ["check.error", "subject.deceptive"]
    assert verdict.action == Action.REJECT  # subject.deceptive still decides
    [err] = [j for j in verdict.judged if j.rule == "check.error"]
    assert err.action == Action.QUARANTINE and "subject.boom failed: RuntimeError" in err.finding.detail
    [entry] = [e for e in logs if e["event"] == "check_failed"]
    assert entry["check"] == "subject.boom" and entry["exc_info"] is True
