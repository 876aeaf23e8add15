"""Unsubscribe: every marketing message must let its recipient leave the list (AUP), in the
header (RFC 2369 List-Unsubscribe, RFC 8058 one-click, as Gmail and Yahoo require of bulk
senders) and in the body, where a person sees it."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterator
from urllib.parse import unquote, urlsplit

from pydantic import Field, PrivateAttr, model_validator

from proxy.message.mime import Message
from proxy.message.patterns import LinkWords
from proxy.policy.context import Context
from proxy.policy.registry import Options, check, options
from proxy.policy.verdict import Finding

ONE_CLICK = "List-Unsubscribe=One-Click"
_COMMENT = re.compile(r"\((?:[^()\\]|\\.)*\)")
_BRACKETED = re.compile(r"<([^<>]*)>")
_ADDR = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
# The links a reader can follow to unsubscribe.
_BODY_SCHEMES = ("https", "http", "mailto")


@options("unsubscribe")
class UnsubscribeOptions(Options):
    """`[checks.unsubscribe]`."""

    # RFC 2369 allows http:, but an unsubscribe over plain http leaks who unsubscribes.
    allow_http: bool = False
    # RFC 8058 one-click (List-Unsubscribe-Post), required by the 2024 bulk-sender rules.
    require_one_click: bool = True
    require_body_link: bool = True
    # Words that make an anchor (by its text) or a plain-text URL (by the words on its line)
    # an unsubscribe link, in every language the senders write in.
    words: list[str] = Field(default_factory=lambda: [
        "unsubscribe", "opt out", "opt-out", "optout", "remove me", "stop receiving",
        "manage your subscription", "cancel your subscription",  # en
        "afmelden", "uitschrijven", "abonnement opzeggen", "schrijf je uit", "schrijf u uit", "meld je af", "meld u af",  # nl
        "abbestellen", "abmelden", "austragen", "newsletter abbestellen", "newsletter kündigen",
        "abmeldung", "keine e-mails mehr",  # de
        "se désabonner", "se desabonner", "désabonner", "désabonnement", "désinscription", "desinscription",
        "désinscrire", "se désinscrire", "me désinscrire", "me désabonner", "ne plus recevoir",  # fr
        "darse de baja", "date de baja", "darte de baja", "dar de baja", "cancelar suscripción", "cancelar la suscripción",
        "anular suscripción", "desuscribirse", "desuscribirte", "dejar de recibir", "baja",  # es
        "annulla iscrizione", "annulla l'iscrizione", "annullare l'iscrizione", "cancella l'iscrizione",
        "cancella iscrizione", "disiscriviti", "disiscrizione", "cancellati", "cancellami",
        "non ricevere più", "disattiva la newsletter",  # it
        "descadastrar", "descadastre-se", "descadastrar-se", "cancelar inscrição", "cancelar a inscrição",
        "cancelar subscrição", "cancelar a subscrição", "anular subscrição", "anular a subscrição",
        "cancelar assinatura", "deixar de receber", "remover inscrição", "sair da lista",  # pt
        "avregistrera", "avsluta prenumeration", "afmeld", "meld deg av", "avmeld",  # sv, da, no
        "wypisz się", "wypisz mnie", "wypisanie", "zrezygnuj z subskrypcji", "zrezygnuj z newslettera",
        "rezygnacja z subskrypcji", "rezygnacja z newslettera", "anuluj subskrypcję",  # pl
        "odhlásit", "leiratkozás", "peruuta tilaus",  # cs, hu, fi
    ])
    # Words that make a link's URL an unsubscribe URL, whatever its text says.
    url_words: list[str] = Field(default_factory=lambda: [
        "unsubscribe", "unsub", "optout", "opt-out", "opt_out", "afmelden", "uitschrijven",
        "abmelden", "abbestellen", "desabonner", "desinscription", "darse-de-baja", "desuscri",
        "disiscri", "descadastr", "wypisz",
    ])
    _links: LinkWords = PrivateAttr()

    @model_validator(mode="after")
    def _compile(self) -> "UnsubscribeOptions":
        self._links = LinkWords("unsubscribe", self.words, self.url_words)
        return self

    def prepare(self) -> None:
        self._links.prepare()


@dataclass(frozen=True, slots=True)
class ListUnsubscribe:
    """A parsed List-Unsubscribe header: the URIs, and what is wrong with it."""

    uris: tuple[str, ...]
    problems: tuple[str, ...]

    @property
    def https(self) -> tuple[str, ...]:
        return tuple(u for u in self.uris if u.lower().startswith("https:"))


def parse_list_unsubscribe(values: list[str], allow_http: bool = False) -> ListUnsubscribe:
    """RFC 2369: a comma-separated list of angle-bracketed URIs, with optional comments and
    folding whitespace (whitespace inside the brackets is ignored); only https: and mailto:
    (and http: when allowed) are accepted."""
    return _parse_both(values)[allow_http]


def _parse_both(values: list[str]) -> tuple[ListUnsubscribe, ListUnsubscribe]:
    """`parse_list_unsubscribe` without and with http: allowed, from one reading of the
    header: the header check reads the one its options say, the body-link check the other
    (Message.memo). Only an http: URI reads differently."""
    entries = _entries(values)
    return _resolved(entries, False), _resolved(entries, True)


def _entries(values: list[str]) -> list[tuple[bool, str]]:
    """The header's bracketed URIs and its problems of form, in order: (True, uri) or
    (False, problem)."""
    entries: list[tuple[bool, str]] = []
    if len(values) > 1:
        entries.append((False, f"{len(values)} List-Unsubscribe headers (RFC 2369 allows one)"))
    for value in values:
        text = _COMMENT.sub(" ", value).strip()
        if not text:
            entries.append((False, "empty List-Unsubscribe header"))
            continue
        # Take the bracketed URIs out first: a URI may itself hold commas (in its query).
        bracketed = _BRACKETED.findall(text)
        rest = _BRACKETED.sub("\x00", text)
        for item in rest.split(","):
            item = item.strip()
            if item == "\x00":
                continue
            if not item:
                entries.append((False, "an empty entry between commas"))
            elif "\x00" in item:
                entries.append((False, "URIs not separated by commas"))
            else:
                entries.append((False, f"{item[:80]!r} is not an angle-bracketed URI"))
        entries.extend((True, "".join(raw_uri.split())) for raw_uri in bracketed)
    return entries


def _resolved(entries: list[tuple[bool, str]], allow_http: bool) -> ListUnsubscribe:
    uris: list[str] = []
    problems: list[str] = []
    for is_uri, text in entries:
        problem = _uri_problem(text, allow_http) if is_uri else text
        if problem:
            problems.append(problem)
        else:
            uris.append(text)
    return ListUnsubscribe(tuple(uris), tuple(problems))


def _list_unsubscribe(msg: Message, allow_http: bool) -> ListUnsubscribe:
    """The message's List-Unsubscribe parsed (once per message for both checks)."""
    return msg.memo("unsubscribe.list_unsubscribe", lambda: _parse_both(msg.raw_headers("List-Unsubscribe")))[allow_http]


def _uri_problem(uri: str, allow_http: bool) -> str:
    scheme = uri.partition(":")[0].lower()
    if scheme == "mailto":
        addr = unquote(uri[7:].split("?", 1)[0])
        return "" if _ADDR.match(addr) else f"mailto URI {uri[:80]!r} has no valid address"
    if scheme == "https" or (scheme == "http" and allow_http):
        try:
            host = urlsplit(uri).hostname
        except ValueError:
            host = None
        return "" if host and "." in host else f"URI {uri[:80]!r} has no valid host"
    if scheme == "http":
        return f"URI {uri[:80]!r} uses plain http (only https: and mailto: are accepted)"
    return f"URI {uri[:80]!r} is neither https: nor mailto:"


@check("unsubscribe", rules=("unsubscribe.header_missing", "unsubscribe.header_invalid", "unsubscribe.one_click_missing"), marketing_only=True)
def header(msg: Message, ctx: Context, opts: UnsubscribeOptions) -> Iterator[Finding]:
    values = msg.raw_headers("List-Unsubscribe")
    if not any(v.strip() for v in values):
        yield Finding(
            "unsubscribe.header_missing",
            "no List-Unsubscribe header",
            "add List-Unsubscribe: <https://...>, <mailto:...> and List-Unsubscribe-Post: List-Unsubscribe=One-Click",
        )
        return
    parsed = _list_unsubscribe(msg, opts.allow_http)
    if parsed.problems:
        yield Finding(
            "unsubscribe.header_invalid",
            "List-Unsubscribe: " + "; ".join(parsed.problems[:3]),
            "write List-Unsubscribe as <https://...> and/or <mailto:...> URIs in angle brackets, separated by commas",
        )
    if opts.require_one_click:
        posts = [" ".join(v.split()) for v in msg.raw_headers("List-Unsubscribe-Post")]
        if posts != [ONE_CLICK]:
            what = "no List-Unsubscribe-Post header" if not posts else f"List-Unsubscribe-Post is {' / '.join(p[:60] for p in posts)!r}"
            yield Finding("unsubscribe.one_click_missing", what, f"add exactly one header List-Unsubscribe-Post: {ONE_CLICK} (RFC 8058)")
        elif not parsed.https:
            yield Finding(
                "unsubscribe.one_click_missing",
                "List-Unsubscribe-Post is present but List-Unsubscribe has no https URI to POST to",
                "add an https URI to List-Unsubscribe that unsubscribes on a POST (RFC 8058)",
            )


@check("unsubscribe", rules=("unsubscribe.body_link_missing",), marketing_only=True)
def body_link(msg: Message, ctx: Context, opts: UnsubscribeOptions) -> Iterator[Finding]:
    if not opts.require_body_link:
        return
    header_uris = _list_unsubscribe(msg, True).uris
    table = msg.link_table
    shown = table.plain_and(lambda href: href.partition(":")[0].lower() in _BODY_SCHEMES)
    # Compared, not hashed, when every link counts: two header URIs against a hundred hrefs.
    hrefs = table.hrefs if len(shown) == len(table.hrefs) else {table.hrefs[i] for i in shown}
    if any(uri in hrefs for uri in header_uris) or opts._links.any_named(table, shown):
        return
    yield Finding(
        "unsubscribe.body_link_missing",
        f"none of the {len(msg.links)} links in the body is a visible unsubscribe link",
        "add a visible unsubscribe link to the body (HTML and text parts), e.g. <a href=\"https://.../unsubscribe\">Unsubscribe</a>",
    )
