"""Extract what checks need from an HTML body in one pass, with lxml's HTML parser.

libxml2's HTML parser (through lxml, as lxml.html uses it) is the one beautifulsoup4 itself
prefers, at about a tenth of bs4's cost on the inline path (NOTES.md: 0.3 ms against 3.2 ms
on a 21 KB newsletter).

Visible text is what a reader sees: no script, style or head, nothing hidden by the `hidden`
attribute or by inline styles that make an element invisible (display:none, visibility:hidden,
opacity:0, font-size:0, max-height:0 with overflow hidden: the email preheader idioms). Inline
elements join their text without a space, so `un<b>subscribe</b>` reads "unsubscribe" and
`V<span>iagra</span>` cannot hide a word from the content lists.
"""

from __future__ import annotations

import re
import threading
from functools import lru_cache

from lxml import etree

from proxy.message import styles as inlinestyle

from proxy.message.mime import HtmlView, Link

MAX_ANCHORS = 5000
# A 100 KB newsletter has a few thousand elements; past this the walk stops (and says so).
MAX_ELEMENTS = 50_000
MAX_INPUTS = 500
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


def _parse(html: str) -> tuple[etree._Element | None, str]:
    data = html.encode("utf-8", "replace").translate(None, _CONTROLS)
    if b"&#" in data:
        data = _MARKER_REFS.sub(b"", data)
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


def _drop(el: etree._Element) -> None:
    """Take a hidden element out of the tree, keeping its tail; a block element leaves the
    space it would have put between words (an inline one none: `V<span hidden>x</span>iagra`
    reads "Viagra")."""
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


def _take_out_hidden(root: etree._Element) -> None:
    """Take out of the tree what a reader does not see (proxy/message/styles.py says which styles
    hide; most newsletters hide nothing but a preheader, so all styles are looked at together
    first). Elements with the hidden attribute, display:none and the like go whole; text in a
    zero font size or hidden visibility is blanked, except where an element inside sets a size
    or visibility of its own (see inlinestyle.Effect)."""
    styles = _STYLES(root)
    gone = [v.getparent() for v in _HIDDEN_ATTRIBUTES(root)]
    faint: list[tuple[etree._Element, inlinestyle.Effect]] = []
    hiding: set[str] = set()
    for i in inlinestyle.suspects(styles):
        effect = inlinestyle.effect(styles[i])
        if effect.subtree or effect.blanks_text:
            hiding.add(styles[i])
    for el, style in _with_styles(root, hiding) if hiding else ():
        effect = inlinestyle.effect(style)
        if effect.subtree:
            gone.append(el)
        else:
            faint.append((el, effect))
    for el in gone:
        _drop(el)
    walked: set[etree._Element] = set()
    for el, effect in faint:
        if el not in walked and _in_tree(el, root):
            _blank(el, bool(effect.text_zero), effect.visible is False, walked)


def _in_tree(el: etree._Element, root: etree._Element) -> bool:
    """Whether el is still in the document (not inside an element taken out)."""
    top = el
    while (parent := top.getparent()) is not None:
        top = parent
    return top is root


def _blank(start: etree._Element, zero: bool, invisible: bool, walked: set[etree._Element]) -> None:
    """Blank the text that inherits a zero font size or hidden visibility from `start`; an
    element that sets them back is left as it is, with all inside it. A link left with nothing
    to see (no text; no image, or an invisible one) is taken out."""
    links: list[tuple[etree._Element, bool]] = []
    stack = [(start, zero, invisible)]
    while stack:
        el, zero, invisible = stack.pop()
        walked.add(el)
        el.text = None
        if el.tag == "a" and el.get("href") is not None:
            links.append((el, invisible))
        for child in el:
            child.tail = None  # the tail is the parent's text
            child_zero, child_invisible = zero, invisible
            style = child.get("style")
            if style and inlinestyle.may_restore(style):
                effect = inlinestyle.effect(style)
                if effect.text_zero is not None:
                    child_zero = effect.text_zero
                if effect.visible is not None:
                    child_invisible = not effect.visible
            if child_zero or child_invisible:
                stack.append((child, child_zero, child_invisible))
    for link, invisible in links:
        if not "".join(link.itertext()).strip() and (invisible or link.find(".//img") is None):
            _drop(link)


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


def extract(html: str) -> HtmlView:
    """Anchors, visible text, forms and their fields: hidden elements are taken out of the
    tree, then one XSLT pass in C writes the text and marks the links."""
    if not html.strip():
        return _EMPTY
    root, problem = _parse(html)
    if root is None:
        return HtmlView((), "", 0, 0, problem=problem) if problem else _EMPTY
    # An element takes at least three characters ("<b>"); only then are the "<" worth counting.
    if len(html) > 3 * MAX_ELEMENTS and html.count("<") > MAX_ELEMENTS and int(root.xpath("count(//*)")) > MAX_ELEMENTS:
        problem = problem or f"more than {MAX_ELEMENTS} HTML elements"
    _take_out_hidden(root)
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
