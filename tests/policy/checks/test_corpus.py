"""The fixture corpus: compliant messages find nothing; each violating message finds exactly
its rule (tests/fixtures/corpus/make_*.py regenerates the files)."""

from __future__ import annotations

import json
import subprocess

import pytest

from proxy.policy.verdict import Action
from proxy.replies import Replies

from tests.policy.checks.judging import CORPUS, DEFAULT, policy, rules
from tests.conftest import ROOT, SENDWARDEN

# newsletter_mjml.eml: the markup MJML writes (font-size:0 on every column wrapper), HTML only
COMPLIANT = ["newsletter_en.eml", "newsletter_nl.eml", "newsletter_mjml.eml"]

VIOLATIONS = {
    "unsubscribe_header_missing.eml": ["unsubscribe.header_missing"],
    "unsubscribe_header_invalid.eml": ["unsubscribe.header_invalid"],
    "unsubscribe_one_click_missing.eml": ["unsubscribe.one_click_missing"],
    "unsubscribe_body_link_missing.eml": ["unsubscribe.body_link_missing"],
    "privacy_link_missing.eml": ["privacy.link_missing"],
    "privacy_link_unapproved.eml": ["privacy.link_unapproved"],
    "subject_missing.eml": ["subject.missing"],
    "subject_deceptive.eml": ["subject.deceptive"],
    "content_prohibited_en.eml": ["content.prohibited"],
    "content_prohibited_nl.eml": ["content.prohibited"],
    "deceptive_link.eml": ["content.deceptive_link"],
    "credential_form.eml": ["content.credential_form"],
    "attachment_double_extension.eml": ["attachment.dangerous", "attachment.dangerous"],
    "attachment_zip_script.eml": ["attachment.dangerous"],
    "attachment_macro.eml": ["attachment.dangerous"],
    "header_count.eml": ["message.header_count"],
    # The body cannot be split into parts, so the links in it cannot be seen either.
    "unparseable.eml": ["message.unparseable", "privacy.link_missing", "unsubscribe.body_link_missing"],
}

COMPLAINTS = policy({"compliance": {"complaints_by_domain": {
    "shop.example.com": "abuse@shop.example.com",
    "winkel.voorbeeld.nl": "klachten@voorbeeld.nl",
}}})


@pytest.mark.parametrize("name", COMPLIANT)
def test_compliant_newsletters_find_nothing(name: str) -> None:
    assert rules(name) == []
    assert rules(name, COMPLAINTS) == []


def test_receipt_on_the_transactional_stream_finds_nothing() -> None:
    assert rules("receipt.eml", stream="transactional") == []


def test_receipt_on_a_marketing_stream_lacks_the_marketing_obligations() -> None:
    assert rules("receipt.eml") == ["privacy.link_missing", "unsubscribe.body_link_missing", "unsubscribe.header_missing"]


@pytest.mark.parametrize("name", sorted(VIOLATIONS))
def test_each_violation_finds_exactly_its_rule(name: str) -> None:
    assert rules(name) == VIOLATIONS[name]


def test_complaint_address_missing_when_the_policy_names_one() -> None:
    assert rules("complaint_address_missing.eml") == []
    assert rules("complaint_address_missing.eml", COMPLAINTS) == ["compliance.complaint_address_missing"]


def test_every_fixture_is_covered() -> None:
    names = {p.name for p in CORPUS.glob("*.eml")}
    assert names == set(COMPLIANT) | set(VIOLATIONS) | {"receipt.eml", "complaint_address_missing.eml"}


def test_readme_examples_still_behave(cli_env: dict[str, str]) -> None:
    """examples/compliant.eml is relayed by the default policy; examples/plain.eml refused."""
    assert rules(ROOT / "examples" / "compliant.eml") == []
    out = subprocess.run([*SENDWARDEN, "scan", "--json", str(ROOT / "examples" / "plain.eml")],
                         capture_output=True, text=True, env=cli_env, timeout=60)
    assert out.returncode == 3, out.stderr
    doc = json.loads(out.stdout)
    assert doc["action"] == "reject" and doc["smtp"]["code"] == Replies.policy_reject([], "").code
    assert "unsubscribe.header_missing" in {f["rule"] for f in doc["findings"]}


def test_violations_map_to_the_default_actions() -> None:
    assert DEFAULT.action("marketing", "content.prohibited") == Action.REJECT
    assert DEFAULT.action("marketing", "message.unparseable") == Action.QUARANTINE
