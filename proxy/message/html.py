"""Extract what checks need from an HTML body in one pass, with lxml's HTML parser.

`extract` is the relay's view; it reads the body from lexbor's tree (proxy/message/html5.py),
which hands back here (`extract_lxml`) only what may hide beyond whole elements.

libxml2's HTML parser (through lxml, as lxml.html uses it) is the one beautifulsoup4 itself
prefers, at about a tenth of bs4's cost on the inline path (NOTES.md: 0.3 ms against 3.2 ms
on a 21 KB newsletter).

Visible text is what a reader sees: no script, style or head, nothing hidden by the `hidden`
attribute or by styles (proxy/message/styles.py lists the sixteen ways; the `<style>` blocks are
applied first where they may hide something, proxy/message/cascade.py), and no text whose
colour cannot be read on the background painted under it (the nearest ancestor's
background-color or bgcolor; a background image means it may be read). Hidden links are not
links of the view, so they count as no unsubscribe, privacy or complaints link. Inline
elements join their text without a space, so `un<b>subscribe</b>` reads "unsubscribe" and
`V<span>iagra</span>` cannot hide a word from the content lists. `mark_hidden` marks instead
of removing, for the reviewer's view.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterable
from typing import Any
from functools import lru_cache

from lxml import etree

from proxy.message import cascade
from proxy.message import styles as inlinestyle

from proxy.message.htmlview import HtmlView, Link

__all__ = ["HIDDEN_MARK", "HIDDEN_TEXT_TAG", "MAX_ANCHORS", "MAX_ELEMENTS", "MAX_HIDING",
           "MAX_INPUTS", "extract", "extract_lxml", "mark_hidden", "take_out_hidden", "text_links"]

MAX_ANCHORS = 5000
# A 100 KB newsletter has a few thousand elements; past this the walk stops (and says so).
MAX_ELEMENTS = 50_000
MAX_INPUTS = 500
# Honest mail hides a preheader and a few responsive variants; past this many hidden elements
# (or distinct styles that may hide) the message is hostile, and judged partly (see `problem`).
MAX_HIDING = 2000
_INVISIBLE_TAGS = frozenset({"script", "style", "head", "title", "template", "noscript", "select", "option", "textarea"})
_INLINE_TAGS = frozenset({
    "a", "abbr", "b", "bdi", "bdo", "big", "cite", "code", "data", "del", "dfn", "em", "font", "i",
    "ins", "kbd", "label", "mark", "q", "s", "samp", "small", "span", "strike", "strong", "sub",
    "sup", "time", "tt", "u", "var", "wbr",
})
_URL_IN_TEXT = re.compile(r"""(?:https?|mailto):[^\s<>"'\]\)]+""", re.I)
# The HTML goes to libxml2 as UTF-8 bytes (its own encoding declarations ignored). Removed
# first: C0 controls other than tab, newline and carriage return, which a reader never sees
# (`via\x01gra` reads "viagra"), and DEL, which the text pass marks links with (also when
# written as a character reference).
_CONTROLS = bytes(c for c in range(32) if c not in (9, 10, 13)) + b"\x7f"
_MARKER_REFS = re.compile(rb"&#(?:[xX]0*7[fF]|0*127)(?![0-9a-fA-F]);?")
_EMPTY = HtmlView(anchors=(), visible_text="", password_inputs=0, forms=0)
_LOCAL = threading.local()  # an lxml parser must not be shared between threads


def _parser() -> etree.HTMLParser:
    # libxml2's HTML parser, as lxml.html uses it, but with lxml's plain element classes:
    # lxml.html's own classes are looked up in Python for every element the walk touches.
    parser = getattr(_LOCAL, "parser", None)
    if parser is None:
        parser = _LOCAL.parser = etree.HTMLParser(no_network=True, remove_comments=True, remove_pis=True, encoding="utf-8")
    return parser


def _hides_all(el: etree._Element) -> bool:
    """Whether nothing in the element can be seen (hidden attribute, display:none, ...)."""
    if el.get("hidden") is not None:
        return True
    style = el.get("style")
    return bool(style) and inlinestyle.may_hide(style) and inlinestyle.effect(style).subtree


_CONTROL_BYTES = [bytes([control]) for control in _CONTROLS]
# Below this many bytes one deletion pass costs less than looking for each control (31 calls,
# 3.6 us, most of it the calls: the deletion takes 0.4 us from 800 bytes, 11 us from 30 KB).
_DELETE_BELOW = 8192


def _without_controls(data: bytes) -> bytes:
    """The bytes without the controls (C0 but tab, newline and carriage return; DEL)."""
    if len(data) >= _DELETE_BELOW and not any(c in data for c in _CONTROL_BYTES):  # each a memchr
        return data
    return data.translate(None, _CONTROLS)


def _markup(html: str) -> bytes:
    """The body as libxml2 reads it (and lexbor, proxy/message/html5.py): UTF-8, without the
    controls and the references to DEL that could fake the walk's markers. The references are
    looked for by memchr ("#") and then the regex: `b"&#" in data`, a two-byte needle, scans
    slower than both."""
    data = _without_controls(html.encode("utf-8", "replace"))
    if b"#" in data and _MARKER_REFS.search(data):
        data = _MARKER_REFS.sub(b"", data)
    return data


def _parse(html: str) -> tuple[etree._Element | None, str]:
    data = _markup(html)
    parser = _parser()
    try:
        root = etree.fromstring(data, parser)
    except (etree.ParserError, etree.XMLSyntaxError, ValueError) as exc:
        return None, f"HTML body could not be parsed ({exc})" if data.strip() else ""
    if root is None:
        return None, ""
    problem = ""
    for err in parser.error_log:
        if "depth" in err.message.lower() or "huge" in err.message.lower():
            problem = f"HTML body nested too deeply to read whole ({err.message.strip()})"
            break
    return root, problem


def _input_label(el: etree._Element) -> str:
    return " ".join(v for v in (el.get("name"), el.get("id"), el.get("placeholder"), el.get("aria-label"), el.get("autocomplete")) if v).lower()


# The text is read out by an XSLT stylesheet: libxslt walks the tree in C, where a walk in
# Python costs about 5 us an element (the largest cost of judging a 30 KB newsletter). It
# writes the visible text, and marks each link as HREF href TEXT text ... END, with the alt
# text of the link's images as ALT alt ALT_END inside it. The markers are DEL (allowed in XML,
# unlike the other controls) and a letter; `_parse` removes DEL from the input, so no message
# can fake one, and the output of an ASCII newsletter stays an ASCII string (fast to split).
_HREF, _TEXT, _END, _ALT, _ALT_END = "\x7fH", "\x7fT", "\x7fE", "\x7fA", "\x7fB"
_SPACE = "<xsl:text> </xsl:text>"


def _stylesheet_source() -> str:
    invisible = "|".join(sorted(_INVISIBLE_TAGS))
    inline = "|".join(sorted(_INLINE_TAGS - {"a"}))
    templates = []
    for mode in ("", "in"):
        m = f' mode="{mode}"' if mode else ""
        apply = f"<xsl:apply-templates{m}/>"
        templates += [
            f'<xsl:template match="{invisible}"{m}>{_SPACE}</xsl:template>',
            f'<xsl:template match="{inline}"{m}>{apply}</xsl:template>',
            f'<xsl:template match="*"{m}>{_SPACE}{apply}{_SPACE}</xsl:template>',
        ]
    # Outside a link, <a href> opens one; inside, a nested <a> is just inline text, and an
    # image's alt text is what the link says.
    templates += [
        f'<xsl:template match="a"><xsl:choose><xsl:when test="@href">{_HREF}<xsl:value-of select="@href"/>{_TEXT}'
        f'<xsl:apply-templates mode="in"/>{_END}</xsl:when><xsl:otherwise><xsl:apply-templates/></xsl:otherwise></xsl:choose></xsl:template>',
        '<xsl:template match="a" mode="in"><xsl:apply-templates mode="in"/></xsl:template>',
        f'<xsl:template match="img" mode="in">{_SPACE}<xsl:if test="@alt != \'\'">{_ALT}<xsl:value-of select="@alt"/>{_ALT_END}</xsl:if>'
        f'<xsl:apply-templates mode="in"/>{_SPACE}</xsl:template>',
    ]
    return ('<xsl:stylesheet version="1.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform">'
            '<xsl:output method="text" encoding="utf-8"/>' + "".join(templates) + "</xsl:stylesheet>")


_STYLESHEET = etree.fromstring(_stylesheet_source().encode())
_LINK = re.compile("\x7fH([^\x7f]*)\x7fT(.*?)\x7fE", re.S)
_ALT_TEXT = re.compile("\x7fA([^\x7f]*)\x7fB")
# What is not text in the text pass's output: a link's href with its markers, a link's end,
# an image's alt text with its markers. One pass (sre finds the DEL that starts each):
# splitting at the hrefs, joining, then replacing took twice as long.
_NOT_TEXT = re.compile("\x7f(?:H[^\x7f]*\x7fT|E|A[^\x7f]*\x7fB)")
# Two paths, not one union: the union's document-order sort cost as much as both walks. The
# styles come as plain strings (lxml's "smart" strings, which know their element, cost twice
# as much to make); the few elements whose style may hide are found by a second path.
_STYLES = etree.XPath("/descendant::*/@style", smart_strings=False)
_HIDDEN_ATTRIBUTES = etree.XPath("/descendant::*/@hidden")
_STYLE_ATTRIBUTES = etree.XPath("/descendant::*/@style")
# More distinct suspect styles than this (hostile markup) are matched to their elements by one
# walk over all styles instead of one path with as many comparisons.
_FEW_STYLES = 16


@lru_cache(maxsize=_FEW_STYLES)
def _styled(count: int) -> etree.XPath:
    """The elements, in document order, whose style is one of `count` strings $s0, $s1..."""
    return etree.XPath("/descendant::*[" + " or ".join(f"@style=$s{i}" for i in range(count)) + "]")


def _with_styles(root: etree._Element, styles: set[str]) -> list[tuple[etree._Element, str]]:
    """The elements whose style is one of `styles`, with it, in document order."""
    if len(styles) <= _FEW_STYLES:
        found = _styled(len(styles))(root, **{f"s{i}": s for i, s in enumerate(styles)})
        return [(el, el.get("style")) for el in found]
    return [(v.getparent(), str(v)) for v in _STYLE_ATTRIBUTES(root) if v in styles]


_FORM_TAGS = ("form", "input", "button")


def _transform() -> etree.XSLT:
    xslt = getattr(_LOCAL, "xslt", None)
    if xslt is None:
        xslt = _LOCAL.xslt = etree.XSLT(_STYLESHEET)
    return xslt


_BGCOLORS = etree.XPath("/descendant::*/@bgcolor", smart_strings=False)
_FONT_COLORS = etree.XPath("/descendant::font/@color")
_FONT_TAG = re.compile("<font", re.IGNORECASE)
_LINK_COLOUR: inlinestyle.RGBA = (0.0, 0.0, 0.933, 1.0)  # a link not coloured by the sender: a browser's blue
_MAX_ANCESTORS = 300  # libxml2 nests at most 256 deep
HIDDEN_MARK = "data-sendwarden-hidden"
HIDDEN_TEXT_TAG = "sendwarden-hidden"


def _colourish(style: str) -> bool:
    """Whether the style may set a colour or a background (a backslash: a CSS escape may spell
    either). As re.compile(r"color|backg|\\\\", re.IGNORECASE).search reads it (the Kelvin sign
    is a "k" either way; tests/message/test_html.py holds them equal), for a fifth of the cost:
    a newsletter's twenty styles took 11 us through the regex."""
    low = style.lower()
    return "color" in low or "backg" in low or "\\" in low


class _Hider:
    """Takes what a reader does not see out of the tree, or (`mark`, for the reviewer's view in
    proxy/quarantine/render.py) marks it: a hidden element gets the HIDDEN_MARK attribute, hidden
    text is wrapped in a HIDDEN_TEXT_TAG element."""

    def __init__(self, root: etree._Element, mark: bool) -> None:
        self.root, self.mark = root, mark
        self.walked: set[etree._Element] = set()

    def drop(self, el: etree._Element) -> None:
        """Take a hidden element out of the tree, keeping its tail; a block element leaves the
        space it would have put between words (an inline one none: `V<span hidden>x</span>iagra`
        reads "Viagra")."""
        if self.mark:
            el.set(HIDDEN_MARK, "")
            return
        parent = el.getparent()
        if parent is None:
            return
        tail = ("" if el.tag in _INLINE_TAGS else " ") + (el.tail or "")
        prev = el.getprevious()
        if prev is not None:
            prev.tail = (prev.tail or "") + tail
        else:
            parent.text = (parent.text or "") + tail
        parent.remove(el)

    def shown(self, el: etree._Element) -> bool:
        """Whether el is still in the document (not inside an element taken out or marked)."""
        top = el
        while (parent := top.getparent()) is not None:
            if self.mark and top.get(HIDDEN_MARK) is not None:
                return False
            top = parent
        return top is self.root and not (self.mark and top.get(HIDDEN_MARK) is not None)

    def _hide_text(self, el: etree._Element, child: etree._Element | None) -> None:
        """Blank el's own text (child None) or child's tail."""
        if not self.mark:  # a space stays a space: words either side of hidden text stay apart
            if child is None:
                el.text = " " if el.text and el.text.split() != [el.text] else None
            else:
                child.tail = " " if child.tail and child.tail.split() != [child.tail] else None
            return
        text = el.text if child is None else child.tail
        if not text or not text.strip():
            return
        wrap = etree.Element(HIDDEN_TEXT_TAG)
        wrap.text = text
        if child is None:
            el.text = None
            el.insert(0, wrap)
        else:
            child.tail = None
            child.addnext(wrap)

    def blank(self, start: etree._Element, zero: bool, invisible: bool, colour: inlinestyle.RGBA | None) -> None:
        """Blank the text that inherits a tiny font size, hidden visibility or a colour that
        cannot be read on its background from `start`; an element that sets them back is left
        as it is, with all inside it. A link left with nothing to see (no text; no image, or an
        invisible one) is taken out."""
        links: list[tuple[etree._Element, bool]] = []
        outer = next(start.iterancestors("a"), None)  # <a><font color=white>text</font></a>
        if outer is not None and outer.get("href") is not None:
            links.append((outer, invisible))
        stack = [(start, zero, invisible, colour, _background(start))]
        while stack:
            el, zero, invisible, colour, back = stack.pop()
            self.walked.add(el)
            self._hide_text(el, None)
            if el.tag == "a" and el.get("href") is not None:
                links.append((el, invisible))
            for child in list(el):
                if child.tag == HIDDEN_TEXT_TAG:
                    continue
                self._hide_text(el, child)  # the tail is the parent's text
                z, inv, col, b = zero, invisible, colour, back
                own = None
                attr = child.get("bgcolor")
                if attr:
                    b = _painted(inlinestyle.attribute_colour(attr), b)
                if child.tag == "font" and child.get("color"):
                    own = inlinestyle.attribute_colour(child.get("color") or "")
                style = child.get("style")
                if style and inlinestyle.may_restore(style):
                    effect = inlinestyle.effect(style)
                    if effect.text_zero is not None:
                        z = effect.text_zero
                    if effect.visible is not None:
                        inv = not effect.visible
                    own = effect.color or own
                    b = _painted(effect.background, b)
                if own is None and child.tag == "a" and col is not None:
                    own = _LINK_COLOUR
                col = own or col
                if z or inv or (col is not None and inlinestyle.unreadable(col, _known(b))):
                    stack.append((child, z, inv, col, b))
        for link, invisible in links:
            text = "".join(link.itertext()) if not self.mark else \
                "".join(link.xpath(f"text()|.//*[not(self::{HIDDEN_TEXT_TAG})]/text()"))
            if not text.strip() and (invisible or link.find(".//img") is None):
                self.drop(link)


def _painted(own: inlinestyle.RGBA | None, below: inlinestyle.RGBA | None) -> inlinestyle.RGBA | None:
    """The background under an element's text: its own, unless it sets none or a transparent one."""
    return own if own is not None and (own == inlinestyle.IMAGE or own[3] >= 0.5) else below


def _known(background: inlinestyle.RGBA | None) -> inlinestyle.RGBA | None:
    return None if background == inlinestyle.IMAGE else background


def background(node: Any, attr: Callable[[Any, str], str | None], parent: Callable[[Any], Any]) -> inlinestyle.RGBA | None:
    """The colour painted under a node's text: its own or its nearest ancestor's background (a
    transparent one lets the one below show), white when none; None when an image may be under
    it. `attr` and `parent` read the tree (lxml's here, lexbor's in html5.py); `parent` gives
    None above the root."""
    for _ in range(_MAX_ANCESTORS):
        if node is None:
            break
        style = attr(node, "style")
        if style and "backg" in style.lower():
            back = inlinestyle.effect(style).background
            if back == inlinestyle.IMAGE:
                return None
            if back is not None and back[3] >= 0.5:
                return back
        if attr(node, "background"):
            return None  # <td background="image.png">
        colour = attr(node, "bgcolor")
        if colour and (back := inlinestyle.attribute_colour(colour)) is not None and back[3] >= 0.5:
            return back
        node = parent(node)
    return inlinestyle.WHITE


def _background(el: etree._Element) -> inlinestyle.RGBA | None:
    return background(el, etree._Element.get, etree._Element.getparent)


def colour_suspects(coloured: list[str], bgcolors: Iterable[str]) -> tuple[dict[str, inlinestyle.RGBA], Callable[[inlinestyle.RGBA], bool]]:
    """Of the distinct styles `coloured`, those whose text colour may not be read on some
    background of the page (its white, the styles' backgrounds, the `bgcolor` values), each
    with that colour; and the test itself, for <font color>. Shared by both trees' views."""
    texts: dict[inlinestyle.RGBA, list[str]] = {}  # a template uses a few colours in many styles
    backs = {inlinestyle.WHITE}
    for style in coloured:
        e = inlinestyle.effect(style)
        if e.color is not None:
            texts.setdefault(e.color, []).append(style)
        if e.background is not None and e.background != inlinestyle.IMAGE:
            backs.add(e.background)
    for value in set(bgcolors):
        if (back := inlinestyle.attribute_colour(value)) is not None:
            backs.add(back)

    def suspect(colour: inlinestyle.RGBA) -> bool:
        return any(inlinestyle.unreadable(colour, b) for b in backs)

    return {style: colour for colour, styles in texts.items() if suspect(colour) for style in styles}, suspect


def _colour_suspects(root: etree._Element, coloured: list[str], fonts_too: bool) -> list[tuple[etree._Element, inlinestyle.RGBA]]:
    """The elements whose own colour may not be read on some background of the page (its white
    included), with that colour: only these are worth finding the background they are on.
    `coloured`: the distinct styles that may set a colour or a background; `fonts_too`: the page
    may have <font color> (a path over every element, else not walked)."""
    fonts = _FONT_COLORS(root) if fonts_too else []
    if not coloured and not fonts:
        return []
    suspects, suspect = colour_suspects(coloured, _BGCOLORS(root))
    found = [(el, suspects[style]) for el, style in _with_styles(root, set(suspects))] if suspects else []
    for value in fonts:
        colour = inlinestyle.attribute_colour(str(value))
        if colour is not None and suspect(colour):
            found.append((value.getparent(), colour))
    return found


def take_out_hidden(root: etree._Element, mark: bool = False, fonts: bool = True) -> str:
    """Take out of the tree (or `mark`) what a reader does not see (proxy/message/styles.py says
    which styles hide; most newsletters hide nothing but a preheader, so all styles are looked
    at together first). Elements with the hidden attribute, display:none and the like go whole;
    text in a tiny font size, hidden visibility or a colour that cannot be read on its
    background is blanked, except where an element inside sets a size, visibility or colour of
    its own (see inlinestyle.Effect). Returns why the view is partial ("" when whole): past
    MAX_HIDING hidden elements or distinct hiding styles the rest is left as it is."""
    hider = _Hider(root, mark)
    # A template repeats its styles: each distinct one is looked at once (in document order).
    styles = list(dict.fromkeys(_STYLES(root)))
    gone = [v.getparent() for v in _HIDDEN_ATTRIBUTES(root)]
    faint: list[tuple[etree._Element, inlinestyle.Effect]] = []
    hiding: set[str] = set()
    suspects = inlinestyle.suspects(styles)
    coloured = [style for style in styles if _colourish(style)]
    cut = len(suspects) > MAX_HIDING or len(coloured) > MAX_HIDING  # each is parsed once, ~20 us
    for i in suspects[:MAX_HIDING]:
        effect = inlinestyle.effect(styles[i])
        if effect.subtree or effect.blanks_text:
            hiding.add(styles[i])
    for el, style in _with_styles(root, hiding) if hiding else ():
        effect = inlinestyle.effect(style)
        if effect.subtree:
            gone.append(el)
        else:
            faint.append((el, effect))
    colours = _colour_suspects(root, coloured[:MAX_HIDING], fonts)
    if cut or len(gone) + len(faint) + len(colours) > MAX_HIDING:
        cut = True
        del gone[MAX_HIDING:], faint[MAX_HIDING:], colours[MAX_HIDING:]
    for el in gone:
        hider.drop(el)
    for el, effect in faint:
        if el not in hider.walked and hider.shown(el):
            hider.blank(el, bool(effect.text_zero), effect.visible is False, None)
    for el, colour in colours:
        if el not in hider.walked and hider.shown(el) and inlinestyle.unreadable(colour, _background(el)):
            hider.blank(el, False, False, colour)
    return f"more than {MAX_HIDING} hidden elements or hiding styles" if cut else ""


def _forms(root: etree._Element) -> tuple[int, int, list[tuple[str, str]], list[str]]:
    """Forms and their fields, where a reader can see them: (password inputs, forms, inputs,
    form actions)."""
    password_inputs = forms = 0
    inputs: list[tuple[str, str]] = []
    actions: list[str] = []
    for el in root.iter(*_FORM_TAGS):
        if next(el.iterancestors(*_INVISIBLE_TAGS), None) is not None:
            continue
        tag = el.tag
        if tag == "form":
            forms += 1
            actions.append((el.get("action") or "").strip())
        elif len(inputs) < MAX_INPUTS:
            kind = (el.get("type") or "text").strip().lower()
            if kind == "password":
                password_inputs += 1
            if tag == "input" and kind not in ("hidden", "submit", "button", "image", "reset"):
                inputs.append((kind, _input_label(el)))
    return password_inputs, forms, inputs, actions


def _visible(out: str) -> tuple[str, frozenset[str]]:
    """The text pass's output without the markup, whitespace collapsed, and its distinct
    tokens: hrefs and alt texts are not seen as text (str.split and join: a regex or
    str.translate collapsing the whitespace costs ten times more)."""
    tokens = _NOT_TEXT.sub("", out).split()
    return " ".join(tokens), frozenset(tokens)


_new = tuple.__new__


def _with_alt(body: str) -> str:
    """A link's text with what its images say after it (the alt texts marked by the text pass)."""
    return _ALT_TEXT.sub("", body) + "".join(" " + alt for alt in _ALT_TEXT.findall(body))


def _inline_colours_suspect(root: etree._Element, html: str) -> bool:
    """Whether an inline or <font> colour may not be read on white: the sheet's backgrounds
    decide (white text on a dark band whose colour a class sets)."""
    styles = [style for style in dict.fromkeys(_STYLES(root)) if _colourish(style)]
    return bool(_colour_suspects(root, styles[:MAX_HIDING], _FONT_TAG.search(html) is not None))


def _styled_and_hidden(root: etree._Element, html: str, problem: str, mark: bool = False) -> tuple[etree._Element, str]:
    """Apply the style sheet where it may hide something (the tree is then the styled HTML's),
    then take out (or mark) what is hidden; returns the tree and the problem found on the way
    (or the one given)."""
    # An element takes at least three characters ("<b>"); only then are the "<" worth counting.
    elements = 0
    if len(html) > 3 * MAX_ELEMENTS and html.count("<") > MAX_ELEMENTS:
        elements = int(root.xpath("count(//*)"))
        if elements > MAX_ELEMENTS:
            problem = problem or f"more than {MAX_ELEMENTS} HTML elements"
    if "<style" in html or "<STYLE" in html or "<Style" in html:
        css = cascade.style_text(root)
        if css and (cascade.may_hide(css) or (cascade.paints_background(css) and _inline_colours_suspect(root, html))):
            styled, why = cascade.inline(html, css, elements or int(root.xpath("count(//*)")))
            if why:
                problem = problem or f"HTML style sheet not applied: {why}"
            elif styled is not html:
                again, _ = _parse(styled)
                if again is not None:
                    root = again
    partial = take_out_hidden(root, mark, _FONT_TAG.search(html) is not None)
    return root, problem or partial


def mark_hidden(html: str) -> str:
    """The HTML with what a reader does not see marked (HIDDEN_MARK on hidden elements, hidden
    text wrapped in HIDDEN_TEXT_TAG), for the reviewer's view."""
    if not html.strip():
        return html
    root, problem = _parse(html)
    if root is None or problem:  # libxml2 read only part of it (nested too deeply): show it all
        return html
    root, _ = _styled_and_hidden(root, html, "", mark=True)
    if _hides_all(root):
        root.set(HIDDEN_MARK, "")
    return str(etree.tostring(root, encoding="unicode", method="html"))


def extract(html: str) -> HtmlView:
    """Anchors, visible text, forms and their fields, as a reader sees them: the relay's view.
    Read from lexbor's tree (proxy/message/html5.py), which hands back here (`extract_lxml`)
    what may hide beyond whole elements."""
    from proxy.message import html5

    return html5.extract(html)


def extract_lxml(html: str) -> HtmlView:
    """`extract` from libxml2's tree: hidden elements are taken out of the tree, then one XSLT
    pass in C writes the text and marks the links."""
    if not html.strip():
        return _EMPTY
    root, problem = _parse(html)
    if root is None:
        return HtmlView((), "", 0, 0, problem=problem) if problem else _EMPTY
    root, problem = _styled_and_hidden(root, html, problem)
    if _hides_all(root):
        return HtmlView((), "", 0, 0, problem=problem)
    try:
        out = str(_transform()(root))
    except etree.XSLTError as exc:
        return HtmlView((), "", 0, 0, problem=f"HTML body could not be read ({exc})")
    found = _LINK.findall(out)
    if len(found) > MAX_ANCHORS:
        problem = problem or f"more than {MAX_ANCHORS} links in the HTML body"
        del found[MAX_ANCHORS:]
    # tuple.__new__ makes the Link without NamedTuple's __new__, a Python function (a fifth of
    # this loop's time for a hundred links).
    anchors = [_new(Link, (href.strip(), " ".join((_with_alt(body) if _ALT in body else body).split())[:500], "html"))
               for href, body in found]
    password_inputs, forms, inputs, actions = _forms(root)
    visible, tokens = _visible(out)
    return HtmlView(
        anchors=tuple(anchors),
        visible_text=visible,
        tokens=tokens,
        password_inputs=password_inputs,
        forms=forms,
        inputs=tuple(inputs),
        form_actions=tuple(actions),
        problem=problem,
    )


def text_links(text: str) -> tuple[Link, ...]:
    """URLs written out in a plain-text body, each with the words of its line (or, when the
    URL stands alone, of the line before) as the text a reader sees with it."""
    out: list[Link] = []
    for m in _URL_IN_TEXT.finditer(text):
        if len(out) >= MAX_ANCHORS:
            break
        start = text.rfind("\n", 0, m.start()) + 1
        end = text.find("\n", m.end())
        end = len(text) if end < 0 else end
        words = (text[start:m.start()] + " " + text[m.end():end]).strip()
        if not words and start > 1:
            words = text[text.rfind("\n", 0, start - 1) + 1 : start - 1].strip()
        out.append(Link(m.group(0).rstrip(".,;:!?"), " ".join(words.split())[:200], "text"))
    return tuple(out)
