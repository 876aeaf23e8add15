"""Which inline styles hide their element (proxy/inlinestyle.py), as a browser reads them."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.htmlview import extract
from proxy.inlinestyle import hides, may_hide, suspects

HIDING = [
    "display:none", "display: none", "DISPLAY:NONE", "display:\tnone", "display:\nnone", "display:/**/none",
    "displ\\61y:none", "color:red;display:none", "display:none!important; display:block", "visibility:hidden",
    "visibility: collapse", "opacity:0", "opacity: 0.0 !important", "opacity:.0", "opacity:0%", "font-size:0",
    "font-size:0px", "font-size: 0em;", "max-height:0; overflow:hidden", "max-height:0px;overflow-y:hidden",
    "overflow:hidden;max-height:0",
]
SHOWING = [
    "", "color:red", "display:block", "display:none; display:block", "font-family:\"display:none\"",
    "font-family:'a;display:none'", "opacity:0.9", "opacity:1", "font-size:0.8em", "font-size:12px",
    "max-height:0", "max-height:10px; overflow:hidden", "visibility:visible", "/* display:none */ color:red",
    "display:none-ish", "display",
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
                                          "font-size", "max-height", "overflow:hidden", "!important", "\t"]),
                         max_size=8).map("".join), max_size=6))
def test_suspects_of_many_styles_are_each_styles_own_test(styles: list[str]) -> None:
    """Looking at all styles at once finds the same styles as looking at each, and no style
    that hides is missed by the cheap test."""
    assert suspects(styles) == [i for i, s in enumerate(styles) if may_hide(s)]
    assert all(may_hide(s) for s in styles if hides(s))
