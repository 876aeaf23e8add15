"""content.deceptive_link and content.credential_form: phishing signs in links and forms."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.message.urls import host_of, ip_host, registrable
from tests.policy.checks.judging import FOOTER, found, mail, policy, rules


def link_rules(html: str = "", text: str = "", pol=None) -> list[str]:
    return rules(mail(FOOTER + html, text), pol, family="links")


def details(html: str = "", text: str = "", pol=None) -> list[str]:
    return [f.detail for f in found(mail(FOOTER + html, text), pol, family="links")]


@pytest.mark.parametrize("anchor", [
    '<a href="https://evil.example.net/login">https://shop.example.com/login</a>',
    '<a href="https://evil.example.net/">www.paypal.com</a>',
    '<a href="https://evil.example.net/">PayPal.com</a>',
    '<a href="https://paypal.com.evil.example.net/">paypal.com</a>',
    '<a href="https://xn--pypal-4ve.com/">paypal.com</a>',  # Cyrillic а look-alike
    '<a href="https://bar.github.io/">https://foo.github.io/</a>',  # private suffixes are owners too
    '<a href="https://evil.example.net/">shop.example.co.uk/account</a>',
    '<a href="/relative">shop.example.com</a>',
])
def test_text_showing_another_domain(anchor: str) -> None:
    assert link_rules(anchor) == ["content.deceptive_link"]


@pytest.mark.parametrize("anchor", [
    '<a href="https://shop.example.com/sale?utm=1">https://shop.example.com/sale</a>',
    '<a href="https://shop.example.com/">www.example.com</a>',  # same registrable domain
    '<a href="https://www.shop.example.co.uk/">example.co.uk</a>',
    '<a href="https://shop.example.com/">Visit shop.example.com today</a>',  # a sentence, not a URL
    '<a href="https://shop.example.com/">Click here</a>',
    '<a href="https://shop.example.com/readme">readme.txt</a>',  # txt is not a TLD
    '<a href="mailto:abuse@shop.example.com">abuse@shop.example.com</a>',
    '<a href="https://shop.example.com/">e.g. our shop</a>',
    '<a href="tel:+31201234567">+31 20 123 4567</a>',
])
def test_honest_links(anchor: str) -> None:
    assert link_rules(anchor) == []


@pytest.mark.parametrize("href, ip", [
    ("http://192.0.2.7/login", "192.0.2.7"),
    ("https://[2001:db8::1]/", "2001:db8::1"),
    ("http://3221225991/", "192.0.2.7"),  # decimal
    ("http://0xC0000207/", "192.0.2.7"),  # hex
    ("http://0300.0.02.07/", "192.0.2.7"),  # octal
    ("http://user@192.0.2.7:8080/x", "192.0.2.7"),
])
def test_links_to_bare_ips(href: str, ip: str) -> None:
    [detail] = details(f'<a href="{href}">Our offers</a>')
    assert f"bare IP address {ip}" in detail


def test_bare_ip_in_the_text_part() -> None:
    assert link_rules(text="Offer: http://192.0.2.7/offer\n") == ["content.deceptive_link"]


def test_ip_links_can_be_allowed() -> None:
    assert link_rules('<a href="http://192.0.2.7/">x</a>', pol=policy({"links": {"flag_ip_links": False}})) == []


@pytest.mark.parametrize("href", [
    "javascript:alert(1)", "JavaScript:void(0)", "java\tscript:alert(1)", " javascript:alert(1)",
    "data:text/html;base64,PHNjcmlwdD4=", "vbscript:msgbox", "file:///C:/Windows/system32/calc.exe",
])
def test_dangerous_schemes(href: str) -> None:
    assert link_rules(f'<a href="{href}">Open</a>') == ["content.deceptive_link"]


@pytest.mark.parametrize("href", ["https://bit.ly/3xYz", "http://tinyurl.com/abc", "https://t.co/x", "https://www.bit.ly/x"])
def test_shorteners(href: str) -> None:
    [detail] = details(f'<a href="{href}">Our offers</a>')
    assert "URL shortener" in detail


def test_shorteners_come_from_the_policy() -> None:
    pol = policy({"links": {"shorteners": ["sho.rt"]}})
    assert link_rules('<a href="https://bit.ly/x">a</a>', pol=pol) == []
    assert link_rules('<a href="https://sho.rt/x">a</a>', pol=pol) == ["content.deceptive_link"]


def test_trusted_click_tracking_domains() -> None:
    anchor = '<a href="https://click.esp-tracker.example.net/c/123">https://shop.example.com/sale</a>'
    assert link_rules(anchor) == ["content.deceptive_link"]
    pol = policy({"links": {"trusted_redirect_domains": ["esp-tracker.example.net"]}})
    assert link_rules(anchor, pol=pol) == []


def test_one_finding_per_distinct_problem_capped() -> None:
    anchors = "".join(f'<a href="http://192.0.2.{i}/">x</a>' for i in range(1, 9))
    out = details(anchors + '<a href="http://192.0.2.1/">x</a>')
    assert len(out) == 6 and out[-1] == "and 3 more deceptive links"


@pytest.mark.parametrize("form", [
    '<form action="https://x.example.net/"><input type="password" name="p"></form>',
    '<form><input type="text" name="wachtwoord"></form>',
    '<form><input name="user"><input type="text" placeholder="Your PIN"></form>',
    '<form><input type="tel" autocomplete="cc-csc" name="c"></form>',
    '<input type="PASSWORD">',
    '<form><label>Password <input type="text" aria-label="Passwort"></label></form>',
])
def test_credential_forms(form: str) -> None:
    assert link_rules(form) == ["content.credential_form"]


@pytest.mark.parametrize("form", [
    '<form action="https://shop.example.com/search"><input type="search" name="q" placeholder="Search"><button>Go</button></form>',
    '<form action="https://shop.example.com/survey"><input type="radio" name="rating" value="5"><input type="hidden" name="password_reset" value="0"></form>',
    '<form><input type="email" name="email" placeholder="Your email"></form>',
    '<div style="display:none"><form><input type="password"></form></div>',
])
def test_harmless_forms(form: str) -> None:
    assert link_rules(form) == []


def test_domain_helpers() -> None:
    assert registrable("www.shop.example.co.uk") == "example.co.uk"
    assert registrable("foo.bar.github.io") == "bar.github.io"
    assert registrable("localhost") == "localhost"
    assert host_of("https://WWW.Example.com:443/x") == "www.example.com"
    assert host_of("http://[bad/") == "bad"
    assert ip_host("127.1") == "127.0.0.1" and ip_host("example.com") is None and ip_host("12345678901") is None


_RULES = policy().options["links"].rules  # type: ignore[attr-defined]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["https://a.example/x", "javascript:x", "https://1.2.3.4/", "https://bit.ly/x", "mailto:a@b.example"]),
                          st.sampled_from(["", "Shop", "a.example", "b.example/x", "mail@b.example", "x."]),
                          st.sampled_from(["html", "text"])), max_size=10))
def test_suspects_are_the_links_a_pass_over_every_text_finds(links: list[tuple[str, str, str]]) -> None:
    """Links whose text holds a dot, found among the distinct texts: what the pass over every
    link's text found (the odd schemes and hosts as before)."""
    from proxy.message.linktable import LinkTable
    from proxy.message.mime import Link
    from proxy.policy.checks.links import suspects

    rules = _RULES
    table = LinkTable(tuple(Link(*link) for link in links))
    odd = {pair for pair in table.kinds
           if not pair[0] or pair[0].lower() in rules.blocked_schemes or rules.host_kind(pair[1].lower())[0]}
    expected = set(table.where(odd)) if odd else set()
    expected.update(i for i, (_, text, source) in enumerate(links) if "." in text and source == "html")
    assert suspects(table, rules) == sorted(expected)
