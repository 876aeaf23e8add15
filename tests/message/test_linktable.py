"""The link table: what the link checks read of all a message's links at once must be what
they would read link by link."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.message.htmlview import Link
from proxy.message.linktable import LinkTable
from proxy.message.urls import scheme_and_host


def _table(*hrefs: str) -> LinkTable:
    return LinkTable(tuple(Link(h, "", "html") for h in hrefs))


def _plain_pairs(table: LinkTable) -> list[tuple[str, str]]:
    pairs = {pair: table.where({pair}) for pair in table.kinds}
    out = [("", "")] * len(table.links)
    for pair, positions in pairs.items():
        for i in positions:
            out[i] = pair
    return out


def test_plain_links_are_read_with_their_hosts() -> None:
    table = _table("https://Shop.Example.com/p/1", "HTTP://shop.example.com.:8080?x", "mailto:a@example.com",
                   "https://user@evil.example/", "https://a.example\\@b.example/", "httpſ://a.example/", "https://a.example")
    assert _plain_pairs(table) == [("https", "Shop.Example.com"), ("HTTP", "shop.example.com"), ("", ""), ("", ""),
                                   ("", ""), ("", ""), ("https", "a.example")]
    assert list(table.web) == [0, 1, 3, 4, 6]
    assert table.containing(["example.com", "@"]) == {0, 1, 2, 3, 4}


def test_a_newline_in_an_href_reads_each_on_its_own() -> None:
    table = _table("https://a.example/", "https://b.exa\nmple/", "https://c.example/x")
    assert _plain_pairs(table) == [("https", "a.example"), ("", ""), ("https", "c.example")]
    assert table.containing(["b.exa"]) == {1} and table.containing(["mple/x"]) == {2}


_PIECES = st.sampled_from(["https://", "HTTP://", "http:", "//", "a.example", "B.", "-x", ":80", ":123456", "/", "?q", "#f",
                           "@", "\\", " ", "\n", "\x00", "\t", "ſ", "İ", "mailto:", "javascript:", "."])


@settings(max_examples=500, deadline=None)
@given(st.lists(st.lists(_PIECES, max_size=6).map("".join), max_size=6))
def test_a_plain_pair_is_what_scheme_and_host_reads(hrefs: list[str]) -> None:
    table = _table(*hrefs)
    for href, (scheme, host) in zip(hrefs, _plain_pairs(table), strict=True):
        if scheme:
            assert scheme_and_host(href) == (scheme.lower(), host.lower())
    assert list(table.web) == [i for i, h in enumerate(hrefs) if h[:8].lower().startswith(("https://", "http://"))]
    for word in ("a.example", "http", "i̇", "/", "b.", "-x", "q", ""):
        assert table.containing([word]) == {i for i, h in enumerate(hrefs) if word in h.lower()}


_TEXTS = st.sampled_from(["", "Shop now", "shop.example.com", "a.example", "Unsubscribe", "x.", "Shop now "])


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(_TEXTS, st.sampled_from(["html", "text"])), max_size=10), st.sets(_TEXTS))
def test_texts_found_by_index_as_by_a_pass_over_every_link(links: list[tuple[str, str]], wanted: set[str]) -> None:
    table = LinkTable(tuple(Link(f"https://a.example/{i}", text, source) for i, (text, source) in enumerate(links)))
    assert table.with_texts(wanted) == [i for i, (text, _) in enumerate(links) if text in wanted]
    assert table.texts_at(range(len(links))) == {text for text, _ in links} == table.distinct_texts
    if len(links) > 1:
        assert table.texts_at([0]) == {links[0][0]}
