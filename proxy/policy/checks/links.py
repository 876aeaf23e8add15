"""Phishing signs in links and forms (AUP: no phishing, no deceptive collection of data).

`content.deceptive_link`: an anchor whose visible text is a URL or domain of another
registrable domain than the one it links to (public suffix list: shop.example.co.uk and
www.example.co.uk are one organisation, foo.github.io and bar.github.io are two); links to
bare IP addresses (including the decimal and hex forms browsers accept); `javascript:`,
`data:`, `vbscript:` and `file:` URIs; links through URL shorteners, which hide the target.
`content.credential_form`: HTML form fields that ask for passwords or card codes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Iterator

import regex
from pydantic import Field, PrivateAttr, model_validator

from proxy.message.urls import idna_host, ip_host, known_suffix, registrable, scheme_and_host
from proxy.message.linktable import LinkTable
from proxy.message.mime import Link, Message
from proxy.message.opsregex import OpsPattern, PatternError
from proxy.policy.context import Context
from proxy.policy.registry import Options, check, options
from proxy.policy.verdict import Finding

MAX_FINDINGS = 5
# Anchor text that is a URL or a bare domain (with an optional path), nothing else.
_URLISH = re.compile(r"^(?:(?:https?|ftp)://)?(?:www\.)?((?:[\w\-]+\.)+[^\W\d_][\w\-]*\.?)(?::\d+)?(?:[/?#]\S*)?$", re.I)


@options("links")
class LinkOptions(Options):
    """`[checks.links]`."""

    flag_ip_links: bool = True
    blocked_schemes: list[str] = Field(default_factory=lambda: ["javascript", "data", "vbscript", "file"])
    # URL shorteners hide where a link goes; links through them are reported.
    shorteners: list[str] = Field(default_factory=lambda: [
        "bit.ly", "bitly.com", "tinyurl.com", "goo.gl", "t.co", "ow.ly", "is.gd", "buff.ly",
        "rebrand.ly", "cutt.ly", "shorturl.at", "tiny.cc", "rb.gy", "bl.ink", "t.ly", "s.id",
        "v.gd", "qr.ae", "adf.ly", "shorte.st", "tiny.one", "lnkd.in", "surl.li", "clck.ru",
    ])
    # Click-tracking domains of the sender's ESP: links through them may show the text of
    # another domain (the tracker redirects there). Registrable domains, e.g. "mailchimp.com".
    trusted_redirect_domains: list[str] = Field(default_factory=list)
    # Form fields whose name, id, placeholder, label or autocomplete say they ask for secrets.
    credential_fields: str = (
        r"\b(?:pass(?:word|wd|code|phrase)?|pwd|current-password|new-password|wachtwoord|"
        r"passwort|kennwort|mot de passe|contrase(?:ñ|n)a|senha|pin(?:code)?|cvv|cvc|cvv2|"
        r"cc-csc|card ?code|security ?code)\b"
    )
    _rules: "LinkRules" = PrivateAttr()

    @model_validator(mode="after")
    def _compile(self) -> "LinkOptions":
        try:
            credential = OpsPattern(self.credential_fields, regex.IGNORECASE)
        except PatternError as exc:
            raise ValueError(f"credential_fields: {exc}") from None
        self._rules = LinkRules(
            flag_ip_links=self.flag_ip_links,
            blocked_schemes=frozenset(s.lower() for s in self.blocked_schemes),
            shorteners=frozenset(idna_host(d) for d in self.shorteners),
            trusted=frozenset(registrable(d) for d in self.trusted_redirect_domains),
            credential=credential,
        )
        return self

    @property
    def rules(self) -> "LinkRules":
        return self._rules


@dataclass(frozen=True, slots=True)
class LinkRules:
    """The options compiled for the per-link loop (plain attributes: fast to reach)."""

    flag_ip_links: bool
    blocked_schemes: frozenset[str]
    shorteners: frozenset[str]
    trusted: frozenset[str]
    credential: OpsPattern
    # What each host is (a bare IP address, a shortener or neither), as host_kind found it:
    # a newsletter's links go to a handful of hosts, message after message.
    _hosts: dict[str, tuple[str, str]] = field(default_factory=dict, compare=False, repr=False)
    MAX_HOSTS = 4096

    def host_kind(self, host: str) -> tuple[str, str]:
        """("ip", the address) for a bare IP address (when those are flagged), ("shortener", "")
        for a shortener's domain or one of its subdomains, else ("", "")."""
        kind = self._hosts.get(host)
        if kind is None:
            if len(self._hosts) >= self.MAX_HOSTS:
                self._hosts.clear()
            kind = self._hosts[host] = self._kind(host)
        return kind

    def _kind(self, host: str) -> tuple[str, str]:
        ip = ip_host(host)
        if ip:
            return ("ip", ip) if self.flag_ip_links else ("", "")
        name = host
        while name:
            if name in self.shorteners:
                return "shortener", ""
            name = name.partition(".")[2]
        return "", ""


@lru_cache(maxsize=4096)
def text_domain(text: str) -> str:
    """The host an anchor's text shows, when the text is a URL or a domain (of a real TLD)."""
    text = text.strip().strip("<>()[]\"'").strip()
    if not text or " " in text or "@" in text.split("/", 1)[0]:
        return ""
    m = _URLISH.match(text)
    if not m:
        return ""
    host = idna_host(m.group(1))
    return host if known_suffix(host) else ""


def link_problem(link: Link, opts: LinkRules) -> str:
    """Why a link is deceptive, or "" when it is not."""
    href = link.href
    scheme, host = scheme_and_host(href)
    if scheme in opts.blocked_schemes:
        return f"a link to a {scheme}: URI ({href[:60]!r})"
    if scheme not in ("http", "https", ""):
        return ""
    if host:
        kind, ip = opts.host_kind(host)
        if kind == "ip":
            return f"a link to the bare IP address {ip} ({href[:80]})"
        if kind == "shortener":
            return f"a link through the URL shortener {host}, which hides its target ({href[:80]})"
    if link.source != "html":
        return ""
    shown = text_domain(link.text)
    if not shown:
        return ""
    target = registrable(host) if host else ""
    if target and target in opts.trusted:
        return ""
    if registrable(shown) != target:
        where = f"goes to {host}" if host else f"goes to {href[:60]!r}"
        return f"link text shows {shown} but the link {where}"
    return ""


def suspects(table: LinkTable, opts: LinkRules) -> list[int]:
    """The positions of the links that link_problem may find something in: all others are
    plain http(s) links to an ordinary host (judged once per distinct host) whose text shows
    no domain (which takes a dot). A newsletter's hundred links come down to a handful."""
    blocked = opts.blocked_schemes
    odd = {pair for pair in table.kinds
           if not pair[0] or pair[0].lower() in blocked or opts.host_kind(pair[1].lower())[0]}
    found = set(table.where(odd)) if odd else set()
    links = table.links
    dotted = [text for text in table.distinct_texts if "." in text]
    found.update(i for i in table.with_texts(dotted) if links[i].source == "html")
    return sorted(found)


@check("links", rules=("content.deceptive_link",))
def deceptive_link(msg: Message, ctx: Context, opts: LinkOptions) -> Iterator[Finding]:
    problems: list[str] = []
    rules = opts.rules
    table = msg.link_table
    for i in suspects(table, rules):
        problem = link_problem(table.links[i], rules)
        if problem and problem not in problems:
            problems.append(problem)
    for problem in problems[:MAX_FINDINGS]:
        yield Finding("content.deceptive_link", problem, "link text must show where the link really goes; link to your own domain, without shorteners or IP addresses")
    if len(problems) > MAX_FINDINGS:
        yield Finding("content.deceptive_link", f"and {len(problems) - MAX_FINDINGS} more deceptive links")


@check("links", rules=("content.credential_form",))
def credential_form(msg: Message, ctx: Context, opts: LinkOptions) -> Iterator[Finding]:
    view = msg.html_view
    if not view.inputs and not view.password_inputs:
        return
    asking = [label or kind for kind, label in view.inputs if kind == "password" or opts.rules.credential.search(label)]
    if view.password_inputs or asking:
        count = max(len(asking), view.password_inputs)
        yield Finding(
            "content.credential_form",
            f"the HTML asks for passwords or card codes in {count} form field(s): " + ", ".join(repr(a) for a in asking[:3]),
            "never ask for passwords or card data in an email; link to your site's login page instead",
        )
