"""privacy.*: a link to the privacy policy, over https, optionally one of the approved URLs;
and privacy_urls(), which the relay uses to record the URLs for the 30-day duty."""

from __future__ import annotations

import pytest

from proxy.message.urls import normalise_url
from proxy.policy.families.privacy import PrivacyOptions, privacy_urls
from proxy.tomlfile import ConfigError
from tests.policy.checks.judging import message, mail, policy, rules

UNSUB = '<a href="https://shop.example.com/u/1">Unsubscribe</a>'


def privacy(html: str, text: str = "", pol=None, headers=None) -> list[str]:
    return rules(mail(UNSUB + html, text, headers), pol, family="privacy")


@pytest.mark.parametrize("anchor", [
    '<a href="https://shop.example.com/legal/p">Privacy policy</a>',
    '<a href="https://shop.example.com/legal/p">Privacybeleid</a>',
    '<a href="https://shop.example.com/legal/p">Onze privacyverklaring</a>',
    '<a href="https://shop.example.com/legal/p">Datenschutzerklärung</a>',
    '<a href="https://shop.example.com/legal/p">Politique de confidentialité</a>',
    '<a href="https://shop.example.com/legal/p">Política de privacidad</a>',
    '<a href="https://shop.example.com/legal/p">Informativa sulla privacy</a>',
    '<a href="https://shop.example.com/legal/p">Política de privacidade</a>',
    '<a href="https://shop.example.com/legal/p">Polityka prywatności</a>',
    '<a href="https://shop.example.com/legal/p">Ochrona danych osobowych</a>',
    '<a href="https://shop.example.com/legal/p">Protección de datos</a>',
    '<a href="https://shop.example.com/legal/p">Datenschutzhinweise</a>',
    '<a href="https://shop.example.com/privacy-notice">Read how we handle your data</a>',
    '<a href="https://shop.example.com/legal/p"><img src="p.png" alt="Privacy"></a>',
])
def test_privacy_link_found(anchor: str) -> None:
    assert privacy(anchor) == []


def test_privacy_link_in_the_text_part() -> None:
    assert privacy("", "Our privacy statement: https://shop.example.com/legal/p\n") == []


@pytest.mark.parametrize("html", [
    "<p>Nothing about data here</p>",
    '<p><a href="https://shop.example.com/about">About us</a></p>',
    '<p style="display:none"><a href="https://shop.example.com/privacy">Privacy</a></p>',
    '<p>Read our privacy policy on our website.</p>',  # words without a link
])
def test_privacy_link_missing(html: str) -> None:
    assert privacy(html) == ["privacy.link_missing"]


def test_privacy_link_must_be_https() -> None:
    assert privacy('<a href="http://shop.example.com/privacy">Privacy</a>') == ["privacy.link_unapproved"]
    assert privacy('<a href="http://shop.example.com/privacy">Privacy</a><a href="https://shop.example.com/privacy">Privacy</a>') == []
    pol = policy({"privacy": {"require_https": False}})
    assert privacy('<a href="http://shop.example.com/privacy">Privacy</a>', pol=pol) == []


APPROVED = policy({"privacy": {"approved": {"example.com": ["https://www.example.com/privacy"],
                                            "shop.example.com": ["https://shop.example.com/legal/privacy/"]}}})


@pytest.mark.parametrize("href, expected", [
    ("https://shop.example.com/legal/privacy", []),
    ("https://SHOP.example.com:443/legal/privacy/?utm_source=mail#top", []),
    ("https://shop.example.com/old-privacy", ["privacy.link_unapproved"]),
    ("https://evil.example.net/legal/privacy", ["privacy.link_unapproved"]),
])
def test_approved_urls_per_sender_domain(href: str, expected: list[str]) -> None:
    assert privacy(f'<a href="{href}">Privacy</a>', pol=APPROVED) == expected


def test_approved_urls_fall_back_to_the_registrable_domain() -> None:
    headers = {"From": "News <news@mail.example.com>"}
    assert privacy('<a href="https://www.example.com/privacy">Privacy</a>', pol=APPROVED, headers=headers) == []
    assert privacy('<a href="https://mail.example.com/privacy">Privacy</a>', pol=APPROVED, headers=headers) == ["privacy.link_unapproved"]
    # A domain with no approved list may link to any privacy policy.
    assert privacy('<a href="https://x.example.org/privacy">Privacy</a>', pol=APPROVED, headers={"From": "a@other.example.org"}) == []


def test_approved_urls_are_validated() -> None:
    with pytest.raises(ConfigError, match=r"checks.privacy.approved.*not an absolute http\(s\) URL"):
        policy({"privacy": {"approved": {"example.com": ["/privacy"]}}})


def test_privacy_urls_lists_every_privacy_url_once() -> None:
    msg = message("newsletter_en.eml")
    assert privacy_urls(msg) == ("https://shop.example.com/privacy",)
    assert privacy_urls(message("newsletter_nl.eml"), PrivacyOptions()) == ("https://winkel.voorbeeld.nl/privacyverklaring",)
    assert privacy_urls(message("privacy_link_missing.eml")) == ()


def test_normalise_url() -> None:
    assert normalise_url("HTTPS://Shop.Example.com:443/a/b/?q=1#f") == "https://shop.example.com/a/b"
    assert normalise_url("https://shop.example.com:8443/a") == "https://shop.example.com:8443/a"


def test_transactional_streams_skip_privacy() -> None:
    assert rules(mail("<p>Receipt</p>"), stream="transactional", family="privacy") == []
