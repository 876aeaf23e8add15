"""Which inline styles hide their element (proxy/message/styles.py), as a browser reads them."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.message.html import extract
from proxy.message.styles import _HINTS, _SEPARATOR, _compact, hides, may_hide, suspects

HIDING = [
    "display:none", "display: none", "DISPLAY:NONE", "display:\tnone", "display:\nnone", "display:/**/none",
    "displ\\61y:none", "color:red;display:none", "display:none!important; display:block", "visibility:hidden",
    "visibility: collapse", "opacity:0", "opacity: 0.0 !important", "opacity:.0", "opacity:0%", "font-size:0",
    "font-size:0px", "font-size: 0em;", "max-height:0; overflow:hidden", "max-height:0px;overflow-y:hidden",
    "overflow:hidden;max-height:0", "font-size:1px", "font-size:0.7pt", "font:1px/1px a", "height:0;overflow:hidden",
    "width:0px;overflow:clip", "max-width:0;overflow-x:hidden", "transform:scale(0)", "transform: scale(1, 0)",
    "transform:matrix(0,0,0,0,0,0)", "position:absolute;left:-9999px", "position:fixed; top:-2000px", "position:relative;left:-9999px",
    "text-indent:-9999px", "margin-left:-5000px", "margin:-3000px 0 0 0", "margin: 0 0 0 -5000px", "position:absolute;clip:rect(0 0 0 0)",
    "position:absolute;clip:rect(1px,1px,1px,1px)", "clip-path:inset(50%)", "clip-path:circle(0)",
    "content-visibility:hidden", "opacity:0.05",
]
SHOWING = [
    "", "color:red", "display:block", "display:none; display:block", "font-family:\"display:none\"",
    "font-family:'a;display:none'", "opacity:0.9", "opacity:1", "font-size:0.8em", "font-size:12px",
    "max-height:0", "max-height:10px; overflow:hidden", "visibility:visible", "/* display:none */ color:red",
    "display:none-ish", "display", "font-size:2px", "font-size:11px", "height:0", "width:0", "transform:scale(0.5)",
    "transform:rotate(0)", "position:static;left:-9999px", "left:-9999px", "text-indent:-20px", "margin:-10px",
    "clip:rect(0 0 0 0)", "clip-path:inset(10%)", "content-visibility:auto", "opacity:0.5",
]


@pytest.mark.parametrize("style", HIDING)
def test_styles_that_hide(style: str) -> None:
    assert may_hide(style) and hides(style)
    assert suspects(["color:red", style, "font-weight:bold"]) == [1]
    assert extract(f"<p>a <span style='{style}'>HIDDEN</span> b</p>").visible_text == "a b"


@pytest.mark.parametrize("style", SHOWING)
def test_styles_that_show(style: str) -> None:
    assert not hides(style)
    assert "HIDDEN" in extract(f"<p>a <span style=\"{style.replace(chr(34), '&quot;')}\">HIDDEN</span> b</p>").visible_text


def test_an_unterminated_comment_ends_with_its_own_style() -> None:
    assert suspects(["color:red /* open", "display:none", "x:/*", "opacity:0"]) == [1, 3]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.lists(st.sampled_from(["display", "opacity", ":", "none", "0", " ", "/*", "*/", ";", "\\", "a",
                                          "font-size", "max-height", "overflow:hidden", "!important", "\t", "1px",
                                          "-9999px", "position:absolute", "left", "text-indent", "transform",
                                          "scale(0)", "width", "clip-path", "inset(50%)", "content-visibility",
                                          "hidden"]),
                         max_size=8).map("".join), max_size=6))
def test_suspects_of_many_styles_are_each_styles_own_test(styles: list[str]) -> None:
    """Looking at all styles at once finds the same styles as looking at each, and no style
    that hides is missed by the cheap test."""
    assert suspects(styles) == [i for i, s in enumerate(styles) if may_hide(s)]
    assert all(may_hide(s) for s in styles if hides(s))


_HINT_PIECES = st.sampled_from([
    "font-size:", "font:", "height:", "width:", "max-", "line-", "0", "1", "5", "6", "7", ".", "+", "-", "%", "p", "px",
    "pt", "em", "/", "//", "display:none", "visibility:", "hidden", "collapse", "opacity:", "content-", "transform:",
    "clip", "\\", " ", "/*", "*/", ";", "a", "\x00"])


@settings(max_examples=500, deadline=None)
@given(st.lists(st.lists(_HINT_PIECES, max_size=12).map("".join), max_size=6))
def test_the_hints_are_found_as_by_a_search_for_each(styles: list[str]) -> None:
    """The grouped search of the hints (styles._hint_places) finds the styles, and the cheap
    test answers, as a plain search for each of the 45 hints does."""
    compact = _compact(_SEPARATOR.join(styles))
    assert suspects(styles) == [i for i, part in enumerate(compact.split(_SEPARATOR)) if any(h in part for h in _HINTS)]
    for style in styles:
        assert may_hide(style) == any(h in _compact(style) for h in _HINTS)


# -- inherited hiding: font size and visibility ------------------------------------------------

MJML = ('<body><div style="margin:0px auto;max-width:600px;"><table><tr>'
        '<td style="direction:ltr;font-size:0px;padding:20px 0;text-align:center;">'
        '<div class="mj-column-per-100" style="font-size:0px;text-align:left;display:inline-block;width:100%;">'
        '<table><tr><td style="font-size:0px;padding:10px 25px;">'
        '<div style="font-family:Ubuntu, Helvetica, Arial, sans-serif;font-size:13px;line-height:1;color:#000000;">'
        'Hello reader. <a href="https://shop.example.com/unsubscribe">Unsubscribe</a></div>'
        '</td></tr></table></div></td></tr></table></div></body>')


def test_a_zero_font_wrapper_does_not_hide_content_that_sets_its_own_size() -> None:
    """MJML and most responsive templates put font-size:0 on column wrappers (it closes the
    gaps between inline blocks); the content inside sets its own size and is read."""
    view = extract(MJML)
    assert view.visible_text == "Hello reader. Unsubscribe"
    assert [(a.href, a.text) for a in view.anchors] == [("https://shop.example.com/unsubscribe", "Unsubscribe")]


@pytest.mark.parametrize(("html", "text", "links"), [
    # the wrapper's own text and the tails in it are hidden; a child with a size of its own is not
    ('<p style="font-size:0">gap <span style="font-size:12px">shown</span> gap</p>', "shown", []),
    # a relative size of zero is zero; an absolute one (or a keyword) is a size
    ('<div style="font-size:0">a <span style="font-size:2em">b</span> <i style="font-size:150%">c</i></div>', "", []),
    ('<div style="font-size:0">a <span style="font-size:medium">b</span></div>', "b", []),
    ('<div style="font:0/0 a">x <span style="font: bold 14px Arial">y</span></div>', "y", []),
    ('<div style="font: 700 0/0 a">x</div>', "", []),
    # zero again inside a restored part
    ('<div style="font-size:0">a<div style="font-size:14px">b<span style="font-size:0">c</span>d</div></div>', "bd", []),
    # visibility is inherited and can be set back
    ('<p style="visibility:hidden">x <b style="visibility:visible">back</b> y</p>', "back", []),
    ('<p style="font-size:0">x <b style="visibility:visible">still zero</b></p>', "", []),
    # a link with nothing to see is not a link; an image in a zero font size is seen
    ('<p style="font-size:0"><a href="https://x.example/u">Unsubscribe</a></p>', "", []),
    ('<p style="font-size:0"><a href="https://x.example/c"><img src="c.png" alt="Coat"></a></p>', "", [("https://x.example/c", "Coat")]),
    ('<p style="visibility:hidden"><a href="https://x.example/c"><img src="c.png" alt="Coat"></a></p>', "", []),
    ('<p style="font-size:0"><a href="https://x.example/u"><span style="font-size:11px">Unsubscribe</span></a></p>',
     "Unsubscribe", [("https://x.example/u", "Unsubscribe")]),
    # display:none hides whatever is inside, sizes or not
    ('<div style="display:none"><span style="font-size:14px">x</span></div>ok', "ok", []),
    # the document itself in a zero font size, its body in a real one
    ('<html style="font-size:0"><body style="font-size:16px">read <a href="https://x.example/p">Privacy</a></body></html>',
     "read Privacy", [("https://x.example/p", "Privacy")]),
])
def test_inherited_hiding(html: str, text: str, links: list[tuple[str, str]]) -> None:
    view = extract(html)
    assert view.visible_text == text
    assert [(a.href, a.text) for a in view.anchors] == links
