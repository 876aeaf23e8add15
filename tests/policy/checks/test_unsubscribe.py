"""unsubscribe.*: RFC 2369 List-Unsubscribe, RFC 8058 one-click, a visible body link."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.policy.checks.unsubscribe import _BRACKETED, _COMMENT, ListUnsubscribe, _parse_both, _uri_problem, parse_list_unsubscribe
from tests.policy.checks.judging import FOOTER, mail, policy, rules

PRIVACY = '<a href="https://shop.example.com/privacy">Privacy</a>'


def unsub(headers: dict[str, str | None] | None = None, html: str = FOOTER, text: str = "") -> list[str]:
    return rules(mail(html, text, headers), family="unsubscribe")


@pytest.mark.parametrize("value", [
    "<https://shop.example.com/u/1>",
    "<mailto:u@shop.example.com?subject=unsubscribe>",
    "<https://shop.example.com/u/1>, <mailto:u@shop.example.com>",
    "<mailto:u@shop.example.com>,<https://shop.example.com/u/1>",
    "  <HTTPS://shop.example.com/u/1> ,\r\n\t<MailTo:u@shop.example.com>  ",
    "<https://shop.example.com/u/1> (one-click), <mailto:u@shop.example.com> (by mail)",
    "<https://shop.example.com/very/long/\r\n path/u/1>",  # RFC 2369: whitespace inside brackets is ignored
    "<mailto:unsubscribe%2B7f3a@shop.example.com>",
    "<https://shop.example.com/u?lists=1,2,3>, <mailto:u@shop.example.com>",  # commas inside a URI
])
def test_valid_headers(value: str) -> None:
    parsed = parse_list_unsubscribe([value])
    assert parsed.problems == () and parsed.uris


@pytest.mark.parametrize("values, problem", [
    (["<http://shop.example.com/u/1>"], "plain http"),
    (["https://shop.example.com/u/1"], "not an angle-bracketed URI"),
    (["<https://shop.example.com/u/1>, , <mailto:u@shop.example.com>"], "empty entry"),
    (["<ftp://shop.example.com/u/1>"], "neither https: nor mailto:"),
    (["<mailto:>"], "no valid address"),
    (["<https:///nohost>"], "no valid host"),
    (["<https://shop.example.com/u/1>", "<mailto:u@shop.example.com>"], "2 List-Unsubscribe headers"),
    (["(only a comment)"], "empty List-Unsubscribe header"),
    (["<https://shop.example.com/u/1"], "not an angle-bracketed URI"),
    (["<https://shop.example.com/u/1> <mailto:u@shop.example.com>"], "not separated by commas"),
])
def test_invalid_headers(values: list[str], problem: str) -> None:
    parsed = parse_list_unsubscribe(values)
    assert any(problem in p for p in parsed.problems), parsed.problems


def test_http_is_accepted_when_the_policy_allows_it() -> None:
    headers = {"List-Unsubscribe": "<http://shop.example.com/u/1>", "List-Unsubscribe-Post": None}
    pol = policy({"unsubscribe": {"allow_http": True, "require_one_click": False}})
    assert rules(mail(FOOTER, "", headers), pol, family="unsubscribe") == []
    assert unsub(headers) == ["unsubscribe.header_invalid", "unsubscribe.one_click_missing"]


def test_missing_header_is_one_finding() -> None:
    assert unsub({"List-Unsubscribe": None, "List-Unsubscribe-Post": None}) == ["unsubscribe.header_missing"]
    assert unsub({"List-Unsubscribe": "   "}) == ["unsubscribe.header_missing"]


@pytest.mark.parametrize("post", [None, "List-Unsubscribe=Yes", "list-unsubscribe=one-click", "One-Click"])
def test_one_click_value_must_be_exact(post: str | None) -> None:
    assert unsub({"List-Unsubscribe-Post": post}) == ["unsubscribe.one_click_missing"]


def test_one_click_needs_an_https_uri() -> None:
    assert unsub({"List-Unsubscribe": "<mailto:u@shop.example.com>"}) == ["unsubscribe.one_click_missing"]


def test_one_click_twice_is_not_one_click() -> None:
    raw = mail(FOOTER).replace(b"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n",
                               b"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\nList-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n")
    assert rules(raw, family="unsubscribe") == ["unsubscribe.one_click_missing"]


def test_one_click_can_be_switched_off() -> None:
    pol = policy({"unsubscribe": {"require_one_click": False}})
    assert rules(mail(FOOTER, "", {"List-Unsubscribe-Post": None}), pol, family="unsubscribe") == []


@pytest.mark.parametrize("anchor", [
    '<a href="https://shop.example.com/x">Unsubscribe</a>',
    '<a href="https://shop.example.com/x">Click here to <b>un</b>subscribe</a>',
    '<a href="https://shop.example.com/x">Afmelden</a>',
    '<a href="https://shop.example.com/x">Uitschrijven voor deze nieuwsbrief</a>',
    '<a href="https://shop.example.com/x">Newsletter abbestellen</a>',
    '<a href="https://shop.example.com/x">Se désabonner</a>',
    '<a href="https://shop.example.com/x">Darse de baja</a>',
    '<a href="https://shop.example.com/x"><img src="x.png" alt="Unsubscribe"></a>',
    '<a href="https://shop.example.com/optout?u=1">click here</a>',
    '<a href="https://shop.example.com/u/1">click here</a>',  # the List-Unsubscribe URI itself
    '<a href="mailto:u@shop.example.com?subject=stop">Opt out</a>',
    # as natives word it, in the languages the content lists cover
    '<a href="https://shop.example.com/x">Annulla l\'iscrizione</a>',
    '<a href="https://shop.example.com/x">Cancella l’iscrizione</a>',
    '<a href="https://shop.example.com/x">Disiscriviti dalla newsletter</a>',
    '<a href="https://shop.example.com/x">Vom Newsletter abmelden</a>',
    '<a href="https://shop.example.com/x">Se désinscrire</a>',
    '<a href="https://shop.example.com/x">Ne plus recevoir nos e-mails</a>',
    '<a href="https://shop.example.com/x">Darte de baja</a>',
    '<a href="https://shop.example.com/x">Cancelar a subscrição</a>',
    '<a href="https://shop.example.com/x">Descadastre-se</a>',
    '<a href="https://shop.example.com/x">Wypisz się</a>',
    '<a href="https://shop.example.com/x">Zrezygnuj z subskrypcji</a>',
])
def test_body_link_found(anchor: str) -> None:
    assert unsub(html=f"<p>Sale!</p><p>{anchor} {PRIVACY}</p>") == []


@pytest.mark.parametrize("html", [
    f"<p>Sale! {PRIVACY}</p>",
    f'<p>Sale! {PRIVACY}</p><div style="display:none"><a href="https://shop.example.com/x">Unsubscribe</a></div>',
    f'<p>Sale! {PRIVACY}</p><p>To unsubscribe, write to us.</p>',  # words, but no link
    f'<p>Sale! {PRIVACY}</p><a href="#">Unsubscribe</a>',
    f'<p>Sale! {PRIVACY}</p><a href="javascript:void(0)">Unsubscribe</a>',
])
def test_body_link_missing(html: str) -> None:
    assert unsub(html=html) == ["unsubscribe.body_link_missing"]


def test_text_part_link_counts() -> None:
    text = "Sale!\n\nNo longer interested? Unsubscribe here:\nhttps://shop.example.com/x\n"
    assert unsub(html="", text=text) == []
    assert unsub(html="", text="Sale!\nhttps://shop.example.com/sale\n") == ["unsubscribe.body_link_missing"]


def test_body_link_words_come_from_the_policy() -> None:
    pol = policy({"unsubscribe": {"words": ["hier afmelden"], "url_words": []}})
    html = '<a href="https://shop.example.com/x">Unsubscribe</a>'
    assert rules(mail(html), pol, family="unsubscribe") == ["unsubscribe.body_link_missing"]
    assert rules(mail('<a href="https://shop.example.com/x">Hier afmelden</a>'), pol, family="unsubscribe") == []


def test_transactional_streams_skip_unsubscribe() -> None:
    assert rules(mail("<p>Your receipt</p>", "", {"List-Unsubscribe": None}), stream="transactional", family="unsubscribe") == []


def _parse_alone(values: list[str], allow_http: bool) -> ListUnsubscribe:
    """The parse of one allow_http, as it was before both were read from one pass: the path
    `_parse_both` replaces."""
    uris: list[str] = []
    problems: list[str] = []
    if len(values) > 1:
        problems.append(f"{len(values)} List-Unsubscribe headers (RFC 2369 allows one)")
    for value in values:
        text = _COMMENT.sub(" ", value).strip()
        if not text:
            problems.append("empty List-Unsubscribe header")
            continue
        found = _BRACKETED.findall(text)
        rest = _BRACKETED.sub("\x00", text)
        for item in rest.split(","):
            item = item.strip()
            if item == "\x00":
                continue
            if not item:
                problems.append("an empty entry between commas")
            elif "\x00" in item:
                problems.append("URIs not separated by commas")
            else:
                problems.append(f"{item[:80]!r} is not an angle-bracketed URI")
        for raw_uri in found:
            uri = "".join(raw_uri.split())
            problem = _uri_problem(uri, allow_http)
            if problem:
                problems.append(problem)
            else:
                uris.append(uri)
    return ListUnsubscribe(tuple(uris), tuple(problems))


# Entries: URIs of every scheme, with and without a host, brackets and comments, between
# commas or not.
_ENTRY = st.tuples(st.sampled_from(["<", "", "(c) <"]), st.sampled_from(["http://", "HTTP://", "https://", "mailto:", "ftp://", "http:"]),
                   st.sampled_from(["shop.example.com", "u@shop.example.com", "", "nohost", "[::1"]),
                   st.sampled_from(["/u/1", "/u?a=1,2", "", " /x"]), st.sampled_from([">", "", "> (c)"])).map("".join)
_HEADER = st.lists(st.tuples(_ENTRY, st.sampled_from([", ", ",", " ", ",,", "\r\n "])).map("".join), max_size=4).map("".join)


@settings(max_examples=400, deadline=None)
@given(st.lists(_HEADER, max_size=3))
def test_one_pass_reads_as_each_parse_alone(values: list[str]) -> None:
    strict, lenient = _parse_both(values)
    assert strict == _parse_alone(values, False) == parse_list_unsubscribe(values)
    assert lenient == _parse_alone(values, True) == parse_list_unsubscribe(values, True)
