"""Privacy policy link (AUP: every marketing message links to the current privacy policy, and
that link must keep working for 30 days after the send date).

`privacy_urls(msg, opts)` is the pure function the relay uses after relaying a marketing
message, to record each privacy URL with the send time for the 30-day reachability probe.

`privacy.link_dead`: `sendwarden links check` found one of the message's privacy URLs dead
inside its window and marked it in the store (shared by a fleet); new messages that carry it
are refused (by default) until the page works again and a later probe clears the mark. The
shell hands the marks over as the `privacy_dead` fact: normalised URL → why it is dead.
"""

from __future__ import annotations

from functools import cache
from typing import Iterator, Mapping
from urllib.parse import urlsplit

from pydantic import Field, PrivateAttr, field_validator, model_validator

from proxy.message.urls import registrable
from proxy.message.mime import Message
from proxy.message.patterns import LinkWords
from proxy.policy.context import Context
from proxy.policy.registry import Options, check, options
from proxy.policy.verdict import Finding

__all__ = ["DEAD_FACT", "PrivacyOptions", "dead_links", "privacy_urls", "normalise_url"]

DEAD_FACT = "privacy_dead"


@options("privacy")
class PrivacyOptions(Options):
    """`[checks.privacy]`."""

    # Anchor text (or, in the text part, words on the URL's line) that names a privacy policy.
    words: list[str] = Field(default_factory=lambda: [
        "privacy", "privacy policy", "privacy statement", "privacy notice", "privacy-policy",  # en
        "privacybeleid", "privacyverklaring", "privacyreglement", "privacystatement",  # nl
        "datenschutz*", "datenschutzerklärung", "datenschutzhinweise", "datenschutzrichtlinie",  # de
        "confidentialité", "politique de confidentialité", "vie privée", "données personnelles",
        "protection des données", "rgpd",  # fr
        "privacidad", "política de privacidad", "aviso de privacidad", "protección de datos",  # es
        "privacidade", "política de privacidade", "proteção de dados", "protecção de dados", "lgpd",  # pt
        "informativa sulla privacy", "riservatezza", "protezione dei dati", "trattamento dei dati",  # it
        "integritetspolicy", "personuppgifter", "personvern", "privatlivspolitik",  # sv, no, da
        "polityka prywatności", "prywatność", "prywatności", "ochrona danych", "ochrony danych", "rodo",  # pl
        "ochrana osobních údajů", "adatvédelem", "tietosuoja", "gdpr",  # cs, hu, fi
    ])
    # Words in a URL that make it a privacy-policy URL, whatever its anchor text says.
    url_words: list[str] = Field(default_factory=lambda: [
        "privacy", "privacybeleid", "privacyverklaring", "datenschutz", "confidentialite",
        "privacidad", "privacidade", "integritet", "personvern", "gdpr", "datenschutz", "prywatnosc",
        "rgpd",
    ])
    require_https: bool = True
    # Optional: per sender (From) domain, the privacy-policy URLs it must link to. A sender
    # domain not listed here may link to any privacy policy. Query and fragment are ignored.
    approved: dict[str, list[str]] = Field(default_factory=dict)
    _links: LinkWords = PrivateAttr()
    _approved: dict[str, frozenset[str]] = PrivateAttr(default_factory=dict)

    @field_validator("approved")
    @classmethod
    def _urls(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        out = {}
        for domain, urls in value.items():
            for url in urls:
                if not url.lower().startswith(("https://", "http://")) or not urlsplit(url).hostname:
                    raise ValueError(f"{domain}: {url!r} is not an absolute http(s) URL")
            out[domain.lower().rstrip(".")] = urls
        return out

    @model_validator(mode="after")
    def _compile(self) -> "PrivacyOptions":
        self._links = LinkWords("privacy", self.words, self.url_words)
        self._approved = {d: frozenset(normalise_url(u) for u in urls) for d, urls in self.approved.items()}
        return self

    def approved_for(self, domain: str) -> frozenset[str] | None:
        """The approved URLs of a sender domain (exact, else its registrable domain), or None."""
        if not domain:
            return None
        domain = domain.lower()
        found = self._approved.get(domain)
        return found if found is not None else self._approved.get(registrable(domain))


@cache
def _default_options() -> PrivacyOptions:
    return PrivacyOptions()


def normalise_url(url: str) -> str:
    """A URL as compared against the approved list: scheme and host in lower case, default
    port, query, fragment and trailing slash dropped."""
    try:
        parts = urlsplit(url.strip())
        host = (parts.hostname or "").rstrip(".")
        port = parts.port
    except ValueError:
        return url.strip()
    scheme = parts.scheme.lower()
    netloc = host if port in (None, 443 if scheme == "https" else 80) else f"{host}:{port}"
    return f"{scheme}://{netloc}{parts.path.rstrip('/')}"


def privacy_urls(msg: Message, opts: PrivacyOptions | None = None) -> tuple[str, ...]:
    """Every distinct privacy-policy URL (http or https) the message links to, in order.

    Pure. The relay records these, with the send time, for each relayed marketing message:
    `privacy_urls(message, policy.options["privacy"])` finds them as the check did."""
    opts = opts or _default_options()
    # The check and the relay's bookkeeping both ask: found once per message (and options).
    kept, urls = msg.memo(("privacy_urls", id(opts)), lambda: (opts, _find(msg, opts)))
    return urls if kept is opts else _find(msg, opts)


def _find(msg: Message, opts: PrivacyOptions) -> tuple[str, ...]:
    web = [link for link in msg.distinct_links if link.href[:8].lower().startswith(("https://", "http://"))]
    named = opts._links.named([link.href for link in web], [link.text for link in web])
    return tuple(dict.fromkeys(link.href for link, hit in zip(web, named) if hit))


@check("privacy", rules=("privacy.link_missing", "privacy.link_unapproved"), marketing_only=True)
def link(msg: Message, ctx: Context, opts: PrivacyOptions) -> Iterator[Finding]:
    urls = privacy_urls(msg, opts)
    if not urls:
        yield Finding(
            "privacy.link_missing",
            "no link to a privacy policy (by link text or URL)",
            "link to your current privacy policy in the body, e.g. <a href=\"https://.../privacy\">Privacy policy</a>",
        )
        return
    if opts.require_https and not any(u.lower().startswith("https://") for u in urls):
        yield Finding(
            "privacy.link_unapproved",
            f"the privacy link {urls[0][:120]} is not https",
            "link to the privacy policy over https",
        )
        return
    approved = opts.approved_for(msg.from_domain) if opts.approved else None
    if approved is not None and not any(normalise_url(u) in approved for u in urls):
        yield Finding(
            "privacy.link_unapproved",
            f"privacy link {urls[0][:120]} is not one of the approved URLs of {msg.from_domain}",
            "link to the privacy policy URL registered for your sender domain: " + ", ".join(sorted(approved))[:200],
        )


def dead_links(msg: Message, opts: PrivacyOptions, marks: Mapping[str, str]) -> dict[str, str]:
    """The message's privacy URLs that are marked dead (URL as sent → why), from the marks by
    normalised URL."""
    if not marks:
        return {}
    return {u: marks[n] for u in privacy_urls(msg, opts) if (n := normalise_url(u)) in marks}


@check("privacy", rules=("privacy.link_dead",), marketing_only=True)
def link_dead(msg: Message, ctx: Context, opts: PrivacyOptions) -> Iterator[Finding]:
    found: Mapping[str, str] | None = (ctx.facts or {}).get(DEAD_FACT)
    for url, why in (found or {}).items():
        yield Finding(
            "privacy.link_dead",
            f"the privacy link {url[:120]} was found dead by the link check ({why[:120]})",
            "fix the privacy page (it must keep working for 30 days after each send) or link to one that works",
        )
