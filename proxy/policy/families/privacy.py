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
from typing import Mapping
from urllib.parse import urlsplit

from pydantic import Field, PrivateAttr, field_validator, model_validator

from proxy.message.urls import normalise_url, registrable
from proxy.message.mime import Message
from proxy.message.patterns import LinkWords
from proxy.policy.registry import Options, options

__all__ = ["DEAD_FACT", "PrivacyOptions", "dead_links", "privacy_urls"]

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

    def prepare(self) -> None:
        self._links.prepare()

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


def privacy_urls(msg: Message, opts: PrivacyOptions | None = None) -> tuple[str, ...]:
    """Every distinct privacy-policy URL (http or https) the message links to, in order.

    Pure. The relay records these, with the send time, for each relayed marketing message:
    `privacy_urls(message, policy.options["privacy"])` finds them as the check did."""
    opts = opts or _default_options()
    # The check and the relay's bookkeeping both ask: found once per message (and options).
    kept, urls = msg.memo(("privacy_urls", id(opts)), lambda: (opts, _find(msg, opts)))
    return urls if kept is opts else _find(msg, opts)


def _find(msg: Message, opts: PrivacyOptions) -> tuple[str, ...]:
    table = msg.link_table
    hrefs = table.hrefs
    return tuple(dict.fromkeys(hrefs[i] for i in opts._links.named_in(table, table.web)))


def dead_links(msg: Message, opts: PrivacyOptions, marks: Mapping[str, str]) -> dict[str, str]:
    """The message's privacy URLs that are marked dead (URL as sent → why), from the marks by
    normalised URL."""
    if not marks:
        return {}
    return {u: marks[n] for u in privacy_urls(msg, opts) if (n := normalise_url(u)) in marks}
