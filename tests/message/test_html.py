"""What the HTML view reads out of a body: the visible text a reader sees and the links with the
words they show. The text pass runs in libxslt (proxy/message/html.py); these pin its semantics."""

from __future__ import annotations

import pytest

from proxy.message.html import MAX_ANCHORS, extract
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
