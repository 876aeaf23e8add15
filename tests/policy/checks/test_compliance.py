"""compliance.complaint_address_missing (proxy/policy/checks/compliance.py)."""

from __future__ import annotations

import pytest

from tests.policy.checks.judging import FOOTER, mail, policy, rules


COMPLAINTS = policy({"compliance": {"complaints_address": "Abuse@Provider.example",
                                    "complaints_by_domain": {"shop.example.com": "klachten@shop.example.com"}}})


def complaint(html: str, text: str = "", headers=None) -> list[str]:
    return rules(mail(FOOTER + html, text, headers), COMPLAINTS, family="compliance")


@pytest.mark.parametrize("html, text", [
    ("<p>Complaints: klachten@shop.example.com</p>", ""),
    ('<p><a href="mailto:Klachten@Shop.Example.com?subject=klacht">Complaints</a></p>', ""),
    ('<p><a href="mailto:klachten%40shop.example.com">Complaints</a></p>', ""),
    ("", "Complaints: KLACHTEN@shop.example.com\n"),
])
def test_complaint_address_present(html: str, text: str) -> None:
    assert complaint(html, text) == []


@pytest.mark.parametrize("html", [
    "<p>No address here</p>",
    '<p style="display:none">klachten@shop.example.com</p>',
    "<p>xklachten@shop.example.com.evil.example</p>",
    "<p>abuse@provider.example</p>",  # the default address, but this domain has its own
])
def test_complaint_address_missing(html: str) -> None:
    assert complaint(html) == ["compliance.complaint_address_missing"]


def test_default_complaint_address_for_other_domains() -> None:
    headers = {"From": "News <news@other.example.org>"}
    assert complaint("<p>abuse@provider.example</p>", headers=headers) == []
    assert complaint("<p>nothing</p>", headers=headers) == ["compliance.complaint_address_missing"]


def test_no_complaint_address_configured_means_no_rule() -> None:
    assert rules(mail(FOOTER), family="compliance") == []


def test_complaint_address_is_marketing_only() -> None:
    assert rules(mail("<p>receipt</p>"), COMPLAINTS, stream="transactional", family="compliance") == []


def test_complaint_address_is_validated() -> None:
    from proxy.tomlfile import ConfigError

    with pytest.raises(ConfigError, match="checks.compliance.complaints_address.*not an email address"):
        policy({"compliance": {"complaints_address": "not-an-address"}})
