"""proxy/message/html5.py (lexbor, the relay's view) reads every HTML body of the fixtures and
examples as proxy/message/html.py's extract_lxml (libxml2, the view before it) does: the same
links with their texts, the same visible text and words, the same forms and the same problem.
A message that html5.py hands to extract_lxml (something may hide that only html.py's walk or
the style sheet judges) is equal by construction; the test still runs it. Where the two differ,
lexbor builds the tree a browser builds (BROWSER_READS, each checked with chromium)."""

from __future__ import annotations

from pathlib import Path

import pytest
from selectolax.lexbor import LexborDocumentOptions, LexborHTMLParser
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.message import html as lxmlview
from proxy.message import html5 as lexview
from proxy.message.htmlview import HtmlView
from proxy.message.mime import Link, Message
from tests.conftest import FIXTURES
from tests.message.test_hostile_markup import SHAPES as HOSTILE

ROOT = FIXTURES.parent.parent
FILES = sorted([*FIXTURES.rglob("*.eml"), *(ROOT / "examples").glob("*.eml")])
FIELDS = ("anchors", "visible_text", "tokens", "password_inputs", "forms", "inputs", "form_actions", "problem")


BODIES = [(p, h) for p in FILES if (h := Message.from_bytes(p.read_bytes()).html)]


def test_the_corpus_has_html_bodies() -> None:
    assert len(BODIES) > 50


@pytest.mark.parametrize(("path", "html"), BODIES, ids=[str(p.relative_to(ROOT)) for p, _ in BODIES])
def test_lexbor_view_equals_lxml_view(path: Path, html: str) -> None:
    old, new = lxmlview.extract_lxml(html), lexview.extract(html)
    diffs = {f: (getattr(old, f), getattr(new, f)) for f in FIELDS if getattr(old, f) != getattr(new, f)}
    assert not diffs, diffs


# Shapes the fixtures may lack: where the two parsers build different trees (misnesting, stray
# text in tables, nested links), where lexbor's tree is edited (hidden inside hidden, invisible
# inside invisible) and where html5.py hands over to html.py.
SHAPES = {
    "inline joins": 'un<b>subscribe</b> <a href="u">here</a>. V<span hidden>x</span>iagra <wbr>un<wbr>sub',
    "hidden in hidden": '<div style="display:none"><p hidden>a</p><span style="display:none">b</span></div>c<i hidden>d</i>e',
    "hidden outside styled": '<p hidden><span style="display:none">x</span></p><a href="x"><img alt="Logo" src=x>Shop</a>',
    "invisible in invisible": '<select><option>o1<script>s</script></option></select>text<noscript><b>ns</b></noscript>'
                              '<textarea><input type=password></textarea><title>t</title>after',
    "forms": '<form action=" /go "><input type=password name=pw><input placeholder="Card" id=c><button>Go</button></form>'
             '<input type=hidden name=h><input type=submit>',
    "a form hidden": '<div style="display:none"><form><input type=password></form></div><p>x</p>',
    "nested links": '<a href="a">one<a href="b">two</a></a> and <a>no href</a> <a href="">empty</a>',
    "cells without a table": '<td>get rich</td><td>quick</td>',
    "stray text in a table": '<table><tr><td>a</td>stray<td>b</td></tr></table>after',
    "breaks and images": '<p>a<br>b<img src=x alt=y>c</p><h1>Title</h1>tail',
    "white font": '<font color="#ffffff">white</font> on white <font color="#000">black</font>',
    "tiny font restored": '<p style="font-size:0">x<span style="font-size:12px">y</span></p>',
    "entities": 'a&nbsp;b &amp; c&#8203;d &lt;tag&gt; &#127;x',
    "a root that hides": '<html hidden><body><p>x</p></body></html>',
    "a body that hides": '<body style="display:none"><p>x</p></body>',
    "a comment": '<p>x</p><!-- c --><p>y</p>coc<!-- x -->aine <b>y</b><!--z-->w<!--[if mso]><table><tr><td><![endif]-->',
    "bogus comments": 'a<?php echo 1 ?>b c<![CDATA[x]]>d e</ x>f g<!x>h <!-->i<!--->j',
    "a doctype": '<!DOCTYPE html><html><body>a<b>b</b></body></html>',
    "a doctype and a comment": '<!doctype html>\n<!-- top --><html><body>a<!-- c -->b</body></html><!-- end -->',
    "a processing instruction": '<?xml version="1.0"?><p>x<?pi y?>z</p>',
    "blocks in a link": '<a href="x"><div>block</div><div>two</div><img alt="pic"><image alt="im"></a>',
    "lists": '<ul><li>one<li>two</ul><dl><dt>t<dd>d</dl>',
    "misnested": '<b>bold <p>para</p> after</b><i>x<b>y</i>z</b>',
    "upper case": '<A HREF="X">Y</A><B>Z</B><SPAN STYLE="DISPLAY:NONE">hid</SPAN>',
    "svg and math": '<svg><text>svg text</text><a href="s">svg link</a></svg><math><mi>x</mi></math>after',
    "a white button": '<table><tr><td bgcolor="#0000ff"><a href="b" style="color:#ffffff">Buy</a></td></tr></table>',
    "a sheet that hides": '<style>.p{display:none}</style><p class=p>pre</p><p>x</p>',
    "a sheet that does not": '<style>p{padding:4px}</style><p>x</p>',
    "a sheet in the body": '<p>x</p><style>p{margin:0}</style><p>y</p>',
    "template": '<template><p>in template</p></template><p>x</p>',
    "text outside": 'before<html>in html</html>after',
    "deep": '<div>' * 240 + 'deep text' + '</div>' * 240 + '<a href="x">l</a>',
    "deep within the tag limit": '<div>' * (lexview.MAX_TAGS - 10) + 'deep text<a href="x">l</a>',
    "deep past the tag limit": '<div>' * (lexview.MAX_TAGS + 10) + 'deep text<a href="x">l</a>',
}


# Where lexbor reads as a browser does and libxml2 does not (chromium's --dump-dom of each shape
# builds lexbor's tree): the difference, (html.py's, html5.py's), and nothing else.
BROWSER_READS = {
    # An <image> is an <img> (HTML standard, "in body" insertion mode): its alt text is what the
    # link says. libxml2 keeps an unknown element <image>.
    "blocks in a link": {"anchors": ((Link("x", "block two pic", "html"),), (Link("x", "block two pic im", "html"),))},
    # Text in a table outside its cells is put before the table ("foster parenting"), where a
    # reader sees it; libxml2 leaves it between the cells.
    "stray text in a table": {"visible_text": ("a stray b after", "stray a b after")},
    # Cells outside a table are no cells: their tags are dropped and the text runs on.
    "cells without a table": {"visible_text": ("get rich quick", "get richquick"),
                              "tokens": (frozenset({"get", "rich", "quick"}), frozenset({"get", "richquick"}))},
}


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_lexbor_view_equals_lxml_view_on_shapes(name: str) -> None:
    old, new = lxmlview.extract_lxml(SHAPES[name]), lexview.extract(SHAPES[name])
    diffs = {f: (getattr(old, f), getattr(new, f)) for f in FIELDS if getattr(old, f) != getattr(new, f)}
    assert diffs == BROWSER_READS.get(name, {})


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_lexbor_view_equals_lxml_view_on_hostile_markup(name: str) -> None:
    html = HOSTILE[name][0]
    old, new = lxmlview.extract_lxml(html), lexview.extract(html)
    diffs = {f: (getattr(old, f), getattr(new, f)) for f in FIELDS if getattr(old, f) != getattr(new, f)}
    assert not diffs, {f: (repr(a)[:300], repr(b)[:300]) for f, (a, b) in diffs.items()}


# The shortcuts html5.py takes, each against what it stands for.

_BYTES = st.lists(st.sampled_from([*range(33), 60, 62, 97, 127, 195, 169]), max_size=64).map(bytes)


@given(st.lists(_BYTES, max_size=4), st.sampled_from([0, 1, 300]))
@settings(max_examples=200, deadline=None)
def test_controls_taken_out_as_by_one_deletion(pieces: list[bytes], repeat: int) -> None:
    # short and long (past _DELETE_BELOW): deleted in one pass, or looked for first
    data = b"<p>" * (lxmlview._DELETE_BELOW // 3 + 1 if repeat == 300 else 0) + b"".join(pieces) * repeat
    assert lxmlview._without_controls(data) == data.translate(None, lxmlview._CONTROLS)


def _with_mutation_events(html: str) -> HtmlView:
    """The view from a tree parsed with lexbor's mutation callbacks (its default)."""
    kept = lexview._PARSE_OPTIONS
    lexview._PARSE_OPTIONS = LexborDocumentOptions.UNDEF
    try:
        return lexview.extract(html)
    finally:
        lexview._PARSE_OPTIONS = kept


_EVERY = {**{str(p.relative_to(ROOT)): h for p, h in BODIES}, **{f"shape: {k}": v for k, v in SHAPES.items()},
          **{f"hostile: {k}": v[0] for k, v in HOSTILE.items()}}


@pytest.mark.parametrize("html", list(_EVERY.values()), ids=list(_EVERY))
def test_the_view_is_the_same_without_mutation_events(html: str) -> None:
    assert lexview.extract(html) == _with_mutation_events(html)


_MARKUP = st.sampled_from([
    "<div>", "</div>", "<p>", "</p>", "<b>", "</b>", "<i>", "</i>", "<span>", "</span>", "<a href='x'>", "</a>", "<a>",
    "<span style='display:none'>", "<span style='color:#fefefe'>", "<p style='font-size:0'>", "<p hidden>",
    "<font color=white>", "<td bgcolor=black>", "<table>", "<tr>", "<td>", "</td>", "</table>", "<img alt=y src=x>",
    "<br>", "<select>", "</select>", "<option selected>", "<option>", "</option>", "<button>", "</button>",
    "<selectedcontent>", "</selectedcontent>", "<form action=go>", "</form>", "<input type=password name=pw>",
    "<template>", "</template>", "<noscript>", "</noscript>", "<style>p{margin:0}</style>", "<title>t</title>",
    "<textarea>", "</textarea>", "<script>s</script>", "<svg>", "</svg>", "<math>", "<!-- c -->", "<li>", "<ul>",
    "text", "word", " ", "\n", "&amp;", "&nbsp;", "un", "sub",
])


@given(st.lists(_MARKUP, max_size=40).map("".join))
@settings(max_examples=300, deadline=None)
def test_the_view_is_the_same_without_mutation_events_on_any_markup(html: str) -> None:
    assert lexview.extract(html) == _with_mutation_events(html)


_NESTING = st.sampled_from(["<div>", "<span>", "<b>", "<table><tr><td>", "<ul><li>", "<p>", "<svg><g>", "<template>",
                            "</div>", "</span>", "</b>", "</td></tr></table>", "</p>", "</g></svg>", "</template>",
                            "<img src=x>", "<br>", "text", " ", "<!-- c -->", "<i>x</i>", "<font>", "</font>"])


@given(st.lists(_NESTING, max_size=30).map("".join), st.integers(40, 60), st.lists(_NESTING, max_size=30).map("".join),
       st.integers(0, 60), st.lists(_NESTING, max_size=30).map("".join))
@settings(max_examples=300, deadline=None)
def test_the_depth_test_from_the_last_leaves_is_the_plain_one(before: str, depth: int, inner: str, closed: int,
                                                              after: str) -> None:
    html = before + "<div>" * depth + inner + "</div>" * closed + after
    tree = LexborHTMLParser(html)
    assert tree.any_css_matches(lexview._DEEPER) == tree.any_css_matches(("* > " * 50 + "*",))
