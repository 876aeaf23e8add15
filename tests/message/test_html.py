"""What the HTML view reads out of a body: the visible text a reader sees and the links with the
words they show. The text pass runs in libxslt (proxy/message/html.py); these pin its semantics."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.message.html import MAX_ANCHORS, _colourish, extract
from proxy.message.mime import Link


def test_inline_elements_join_and_blocks_separate() -> None:
    view = extract("<p>un<b>subscribe</b> here</p><table><tr><td>a</td><td>b</td></tr></table>after")
    assert view.visible_text == "unsubscribe here a b after"


@pytest.mark.parametrize("style", ["display: none", "visibility:hidden", "opacity:0", "opacity: 0.0 !important",
                                   "font-size:0px", "max-height:0; overflow:hidden", "DISPLAY:NONE"])
def test_hidden_inline_styles_hide_the_text_but_keep_the_tail(style: str) -> None:
    view = extract(f"<p>before<div style='{style}'>secret <a href='https://h.example/'>h</a></div>tail</p>")
    assert view.visible_text == "before tail"
    assert view.anchors == ()


@pytest.mark.parametrize("style", ["opacity:0.9", "font-size:0.8em", "max-height:0", "display:block"])
def test_styles_that_hide_nothing(style: str) -> None:
    assert extract(f"<p style='{style}'>seen</p>").visible_text == "seen"


def test_a_hidden_inline_element_cannot_split_a_word() -> None:
    # what a reader sees is "Viagra": the content lists must see it too
    assert extract("V<span style='font-size:0'>xx</span>iagra and V<i hidden>q</i>iagra").visible_text == "Viagra and Viagra"


def test_invisible_elements() -> None:
    html = ("<html><head><title>T</title><style>p{}</style></head><body><p>a</p><script>s()</script>"
            "<noscript>n</noscript><select><option>o</option></select><textarea>t</textarea><template>x</template>b</body></html>")
    assert extract(html).visible_text == "a b"


def test_links_with_their_words_and_image_alts() -> None:
    view = extract("<p>Read <a href=' https://shop.example/a '>the <b>new</b> <img alt='Coats' src=x>"
                   "<span hidden><img alt='no'></span>collection</a>, now.</p><a>no href</a><a href=''>empty</a>")
    assert view.anchors == (Link("https://shop.example/a", "the new collection Coats", "html"), Link("", "empty", "html"))
    assert view.visible_text == "Read the new collection, now. no hrefempty"  # inline: no space between


def test_a_link_inside_a_link_is_text_of_the_outer_one() -> None:
    view = extract("<a href='https://a.example/'>one <a href='https://b.example/'>two</a></a>")
    assert [link.href for link in view.anchors][0] == "https://a.example/"
    assert view.anchors[0].text.startswith("one")


def test_forms_and_fields_a_reader_can_see() -> None:
    view = extract("<div hidden><form><input type=password></form></div><template><form></form></template>"
                   "<form action=' /login '><input type=password name=pw><input type=hidden name=t>"
                   "<button type=submit>Go</button><input type=email id=Mail></form>")
    assert (view.forms, view.password_inputs, view.form_actions) == (1, 1, ("/login",))
    assert view.inputs == (("password", "pw"), ("email", "mail"))


def test_controls_and_marker_characters_cannot_fool_the_reader() -> None:
    # C0 controls are not seen; DEL, which the text pass marks links with, is taken out of the
    # input, raw or as a character reference, so no link can be faked and no text hidden
    # from the word lists
    view = extract("via\x01gra &#x7f;Hhttps://evil.example/&#127;Tfake&#X7F;E <a href='https://x.example/\x7fE'>real</a> end")
    assert view.visible_text == "viagra Hhttps://evil.example/TfakeE real end"
    assert view.anchors == (Link("https://x.example/E", "real", "html"),)


def test_too_many_links_is_a_partial_view() -> None:
    view = extract("<p>" + "<a href='https://h.example/'>x</a>" * (MAX_ANCHORS + 5) + "</p>")
    assert len(view.anchors) == MAX_ANCHORS and "links" in view.problem


def test_a_hidden_document_shows_nothing() -> None:
    assert extract("<html hidden><body><p>all gone</p></body></html>").visible_text == ""


def test_non_ascii_text_survives() -> None:
    assert extract("<p>Café — €5 <b>korting</b>, 日本</p>").visible_text == "Café — €5 korting, 日本"


@pytest.mark.parametrize("distinct", [1, 3, 8, 9, 40])  # 2 x distinct hiding styles
def test_every_element_with_a_hiding_style_is_found_however_many_styles_differ(distinct: int) -> None:
    # The elements of the few distinct hiding styles are found by one path that compares
    # them; past 16 distinct styles (_FEW_STYLES) by a walk over every style. Both find them all, also
    # where several elements share a style, in document order (nested ones included).
    hidden = "".join(
        f"<div style='display:none; padding:{i % distinct}px'>gone{i}<span style='display:none; padding:{i % distinct}px'>in{i}</span></div>"
        f"<p style='font-size:0; margin:{i % distinct}px'>zero{i}<b style='font-size:14px'>shown{i}</b></p>"
        f"<p style='color:red; margin:{i}px'>seen{i}</p>"
        for i in range(2 * distinct)
    )
    view = extract(f"<body>start {hidden} end</body>")
    expected = ["start"] + [w for i in range(2 * distinct) for w in (f"shown{i}", f"seen{i}")] + ["end"]
    assert view.visible_text.split() == expected


# -- the style sheet and the sixteen ways of hiding (proxy/message/styles.py lists them)

@pytest.mark.parametrize("style", [
    "color:#ffffff", "color:#fefefe", "color:rgba(0,0,0,0)", "color:transparent", "font-size:1px", "font-size:0.5pt",
    "height:0;overflow:hidden", "width:0;overflow:hidden", "max-width:0px;overflow:hidden", "transform:scale(0)",
    "transform:scaleY(0)", "position:absolute;left:-9999px", "position:fixed;top:-5000px", "text-indent:-9999px",
    "margin-left:-3000px", "position:absolute;clip:rect(0 0 0 0)", "clip-path:inset(50%)", "clip-path:circle(0)",
    "content-visibility:hidden", "opacity:0.05",
])
def test_each_way_of_hiding(style: str) -> None:
    view = extract(f"<p>before</p><div style='{style}'>secret <a href='https://h.example/' style='{style}'>h</a></div><p>after</p>")
    assert view.visible_text == "before after"
    assert view.anchors == ()


@pytest.mark.parametrize("html", [
    "<p style='color:#999999;font-size:11px'>footer</p>",  # light-grey small footer, contrast 2.85
    "<p style='color:#cccccc'>footer</p>",  # 1.6: pale but read
    "<table bgcolor='#111111'><tr><td style='color:#ffffff'>footer</td></tr></table>",  # dark mode
    "<div style='background:#0066cc'><p style='color:#fff'>footer</p></div>",  # a button
    "<td style='background:url(x.png);color:#fff'>footer</td>",  # on an image: not known, read
    "<p style='position:relative;left:-20px'>footer</p>", "<p style='height:0'>footer</p>",
    "<p style='transform:scale(0.9)'>footer</p>", "<p style='font-size:2px'>footer</p>",
])
def test_ordinary_styles_hide_nothing(html: str) -> None:
    assert extract(html).visible_text == "footer"


def test_a_hidden_colour_is_set_back_by_an_element_inside_and_a_link_is_blue() -> None:
    view = extract("<div style='color:#fff'>gone <b style='color:#333'>kept</b> <a href='https://h.example/'>link</a></div>")
    assert view.visible_text == "kept link"
    assert [a.href for a in view.anchors] == ["https://h.example/"]


def test_a_link_whose_only_text_is_hidden_by_colour_is_gone() -> None:
    view = extract("<a href='https://p.example/'><font color='white'>Privacy</font></a> <a href='https://q.example/'><b style='color:#fff'>x</b> y</a>")
    assert [a.href for a in view.anchors] == ["https://q.example/"]


def test_the_style_sheet_hides_by_tag_class_id_attribute_descendant_and_child() -> None:
    css = ("<style>.a{display:none} #b{visibility:hidden} [data-x] {opacity:0} div.c p{font-size:0}"
           " ul > li.d{color:#fff} em{display:none}</style>")
    html = (css + "<p class=a>1</p><p id=b>2</p><p data-x>3</p><div class=c><p>4</p></div><ul><li class=d>5</li></ul>"
            "<em>6</em><p>seen</p>")
    assert extract(html).visible_text == "seen"


def test_specificity_important_and_inline_order() -> None:
    html = ("<style>#i p{display:none} p.k{display:block} .m{display:none!important} .n{display:none}</style>"
            "<div id=i><p class=k>by-id</p></div><p class=m style='display:block'>by-important</p>"
            "<p class=n style='display:block'>inline-wins</p>")
    assert extract(html).visible_text == "inline-wins"


def test_media_queries_for_a_desktop_screen() -> None:
    html = ("<style>.m{display:none} @media only screen and (max-width:600px){.m{display:block!important}.d{display:none!important}}"
            "@media print{.p{display:none}} @media screen and (min-width:480px){.s{display:none}}"
            "@media (prefers-color-scheme: dark){.l{display:none}}</style>"
            "<p class=m>mobile</p><p class=d>desktop</p><p class=p>print</p><p class=s>wide</p><p class=l>light</p>")
    assert extract(html).visible_text == "desktop print light"


def test_an_ordinary_style_sheet_is_not_applied() -> None:
    from proxy.message import cascade

    assert not cascade.may_hide("body{margin:0;font-family:Arial} a{color:#0066cc} td{padding:8px} .f{color:#999}")
    assert cascade.may_hide(".x{display:none}") and cascade.may_hide(".w{color:#fff}")
    assert cascade.may_hide(".b{background:#000} .t{color:#111}")


def test_inherited_visibility_from_the_sheet_is_set_back_inside() -> None:
    html = "<style>.h{visibility:hidden} .v{visibility:visible}</style><div class=h>gone <span class=v>back</span></div>"
    assert extract(html).visible_text == "back"


def test_a_partial_view_still_takes_out_what_is_hidden() -> None:
    from proxy.message.html import MAX_ELEMENTS

    view = extract("<p style='display:none'>secret</p><p>seen</p>" + "<b></b>" * (MAX_ELEMENTS + 1))
    assert view.problem and "secret" not in view.visible_text and "seen" in view.visible_text


def test_a_translucent_colour_is_judged_as_painted() -> None:
    assert extract("<p style='color:rgba(0,0,0,0.12)'>faded</p><p style='color:rgba(0,0,0,0.6)'>read</p>").visible_text == "read"


def test_a_transparent_background_inside_lets_the_one_below_show() -> None:
    html = ("<div style='background:#fff;color:#fff'>gone <span style='background-color:transparent'>gone too</span>"
            "<span style='background:#000'>kept</span></div>")
    assert extract(html).visible_text == "kept"


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from(["&#", "#", "&", "x7f", "X7F", "127", "0", ";", "a", "<p>", "\x7f", "\x01", "é", "&#x7f", "&#127"]),
                max_size=12).map("".join))
def test_markup_drops_the_references_as_before(html: str) -> None:
    """The references to DEL looked for by "#" and the regex: what `b"&#" in data` found."""
    from proxy.message.html import _CONTROLS, _MARKER_REFS, _markup

    data = html.encode("utf-8", "replace").translate(None, _CONTROLS)
    assert _markup(html) == (_MARKER_REFS.sub(b"", data) if b"&#" in data else data)


_COLOURISH_TEXT = st.text(st.sampled_from([*"colrbackgCOLRBACKG:;-\\ x", "\u212a", "\u0130", "\u017f", "\u0131", "\u1e9e",
                                           "\uff23", "\u01c4", "\u03a3"]), max_size=24)


@given(st.lists(st.sampled_from(["color", "backg", "COLOR", "BackG", "Color", "bac\u212ag"]), max_size=2).map("".join),
       _COLOURISH_TEXT, _COLOURISH_TEXT)
@settings(max_examples=500, deadline=None)
def test_colourish_reads_as_the_regex(middle: str, before: str, after: str) -> None:
    style = before + middle + after
    assert _colourish(style) == bool(re.compile(r"color|backg|\\", re.IGNORECASE).search(style))
