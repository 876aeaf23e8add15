"""The rule catalogue (proxy/policy/rules.py) and the code agree: every rule ID is emitted by a
registered check or by the transaction code, and nothing emits an ID the catalogue lacks.
(That each ID's policy action is honoured is shown per rule in the family tests; the two that
only the shell emits, rate.exceeded and recipient.invalid, in tests/smtp/test_rule_actions.py.)"""

from __future__ import annotations

import ast

from proxy.policy.loader import BUILTIN_DEFAULT, load_policy
from proxy.policy.registry import CHECKS
from proxy.policy.rules import RULES
from proxy.policy.verdict import Action
from tests.conftest import ROOT

# Rules whose emitter another open issue is building (issue 21: RCPT-time destination rules,
# the privacy-link ledger's probe, complaint rates, content blocklists).
BUILT_BY_ISSUE_21 = {
    "recipient.domain_unroutable", "recipient.blocked_destination", "privacy.link_dead",
    "compliance.complaint_rate", "content.blocklisted_link",
}


def emitted_by_code() -> dict[str, set[str]]:
    """Rule IDs that appear as a string in proxy/ outside the catalogue, by module: the
    findings the shell makes itself (recipient state, rate limits, lookups, engine faults)."""
    found: dict[str, set[str]] = {}
    for path in (ROOT / "proxy").rglob("*.py"):
        if path.name == "rules.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and node.value in RULES:
                found.setdefault(str(node.value), set()).add(str(path.relative_to(ROOT)))
    return found


def test_every_rule_has_an_emitter() -> None:
    load_policy(BUILTIN_DEFAULT)  # registers the built-in checks
    by_checks = {rule for chk in CHECKS.values() for rule in chk.rules}
    by_code = set(emitted_by_code())
    orphans = set(RULES) - by_checks - by_code - BUILT_BY_ISSUE_21
    assert orphans == set()


def test_the_transaction_code_emits_the_recipient_and_rate_rules() -> None:
    by_code = emitted_by_code()
    for rule in ("recipient.invalid", "rate.exceeded", "lookup.failed"):
        assert any(m.startswith(("proxy/transaction/", "proxy/smtp/")) for m in by_code.get(rule, ())), rule
    assert "proxy/policy/engine.py" in by_code["check.error"]


def test_the_default_policy_keeps_the_shell_rules_answers() -> None:
    """rate.exceeded and recipient.invalid follow the policy now; the shipped default keeps the
    answers they always had (451 and a refused recipient)."""
    policy = load_policy(BUILTIN_DEFAULT)
    for stream in policy.streams:
        assert policy.action(stream, "rate.exceeded") == Action.TEMPFAIL
        assert policy.action(stream, "recipient.invalid") == Action.REJECT
