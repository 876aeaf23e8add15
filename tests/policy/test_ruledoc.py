"""docs/rules.md is generated from the code (proxy/policy/ruledoc.py) and kept in sync: this test
regenerates it and compares; every rule has a meaning and a fix; what the document says is not
checked is really emitted nowhere; README and the default policy send readers there."""

from __future__ import annotations

import re

from proxy.policy import ruledoc
from proxy.policy.loader import BUILTIN_DEFAULT, load_policy
from proxy.policy.rules import FIXES, RULES
from tests.conftest import ROOT

DOC = ROOT / "docs" / "rules.md"


def test_docs_rules_md_is_what_the_code_generates() -> None:
    assert DOC.read_text(encoding="utf-8") == ruledoc.markdown(), \
        "docs/rules.md is out of date: python -m proxy.policy.ruledoc > docs/rules.md"


def test_every_rule_has_a_row_with_its_meaning_and_fix() -> None:
    assert set(RULES) - set(FIXES) == set(), "add what the sender can do to FIXES in proxy/policy/rules.py"
    assert set(FIXES) - set(RULES) == set() and all(FIXES.values())
    rows = {m.group(1): m.group(0) for m in re.finditer(r"^\| `([a-z_.]+)` \|.*$", DOC.read_text(encoding="utf-8"), re.M)}
    assert set(rows) == set(RULES)
    assert "| `subject.missing` | empty or missing subject | reject | quarantine |" in rows["subject.missing"]


def test_the_actions_come_from_the_policy(tmp_path) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text('[policy]\ndefault_action = "relay"\n[streams.marketing]\nkind = "marketing"\n'
                      '[streams.receipts]\nkind = "transactional"\n[streams.receipts.actions]\n'
                      '"content.prohibited" = "quarantine"\n[actions]\n"content.*" = "reject"\n', encoding="utf-8")
    text = ruledoc.markdown(load_policy(policy))
    assert re.search(r"^\| `content.prohibited` \|[^|]*\| reject \| quarantine \|", text, re.M)
    assert re.search(r"^\| `subject.missing` \|[^|]*\| relay \| relay \|", text, re.M)
    default = load_policy(BUILTIN_DEFAULT)
    assert ruledoc.markdown(default) == ruledoc.markdown()


def test_rules_said_to_be_unchecked_are_emitted_nowhere() -> None:
    sources = {p: p.read_text(encoding="utf-8") for p in (ROOT / "proxy").rglob("*.py")
               if p.name not in ("rules.py", "ruledoc.py")}
    # The link check reports dead privacy links by URL and sender, not under the rule ID.
    elsewhere = {"privacy.link_dead": ROOT / "proxy" / "commands" / "links.py"}
    for rule, what in ruledoc.OUTSIDE_POLICY.items():
        used = [p for p, text in sources.items() if f'"{rule}"' in text]
        if rule in elsewhere:
            used.append(elsewhere[rule])
        assert (used == []) == ("not checked yet" in what), (rule, used)


def test_readme_and_default_policy_point_to_the_catalogue() -> None:
    for path in (ROOT / "README.md", ROOT / "policies" / "default.toml"):
        text = path.read_text(encoding="utf-8")
        assert "docs/rules.md" in text, path
        assert "REQUIREMENTS.md" not in text and "NOTES.md" not in text, path
