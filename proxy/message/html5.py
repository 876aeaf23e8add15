"""The relay's HTML view (Message.html_view, through html.extract) from lexbor's tree, through
selectolax: the same HtmlView as html.py's extract_lxml (tests/message/test_html5.py holds them
equal on every fixture and example, the hostile markup and hand-made shapes), for fewer
instructions: 8.4 M against 12.7 M on the 30 KB newsletter of bench/ (callgrind;
bench/html_view_bench.py splits both in CPU time).
lexbor's parse costs half of libxml2's; what is left is selectolax's calls per link, the
selectors (styles, hidden elements, depth) and the Python around (the one walk that finds the
elements acted on; words split, joined and collected, as html.py does too). Each pass over the
source text costs about as much as a selector over the tree: the view makes few (the controls
looked for by memchr, or below 8 KB deleted in one pass; "#" looked for by memchr; the "<"
counted).

Why selectolax: lexbor is an HTML5 parser in C (the tree a browser builds) and selectolax gives
it whole-tree operations without a walk in Python: CSS selectors, elements by tag name,
unwrapping tags, merging text nodes and reading the text. bs4 costs ten times more.

The text model is html.py's: inline elements join their text without a space
(`un<b>subscribe</b>` reads "unsubscribe"), every other element stands apart from its
neighbours, the invisible ones (script, style, head...) read as one space. It is had by
unwrapping the inline elements and merging the text they leave side by side: then every text
node is a run a reader sees in one piece, and the runs are joined with spaces.

Hidden elements (the `hidden` attribute, an inline style that hides its whole subtree) are taken
out here as html.py takes them out. What needs html.py's inherited walk or the style sheet is
rare in ordinary mail and read by html.py itself, so the view stays the same: text blanked by a
tiny font or hidden visibility, a colour that cannot be read on its background, a `<style>`
block that may hide, more than MAX_TAGS tags or MAX_HIDING hidden elements, deep nesting
(libxml2 reads 256 levels and says so), a root that hides all.
"""

from __future__ import annotations

import re
from itertools import repeat

from selectolax.lexbor import LexborDocumentOptions, LexborHTMLParser, LexborNode

from proxy.message import cascade
from proxy.message import html as lxmlview
from proxy.message import styles as inlinestyle
from proxy.message.htmlview import HtmlView, Link

__all__ = ["extract"]

_INLINE = sorted(lxmlview._INLINE_TAGS - {"a"})
# The invisible elements, those that hold no element first (an element taken out frees what
# is inside it), head last. A template in a noscript or the other way round: html.py reads it.
_INVISIBLE = ("script", "style", "title", "textarea", "option", "select", "noscript", "template", "head")
# The elements this view acts on, found with the comment nodes in one walk of lexbor's tree in
# Python, by tag id (the HTML standard's names have fixed ids): a search of the source for their
# names costs twice as much (sre starts a match at every "<"), lexbor's search by tag name walks
# the tree once for each, and a selector of thirty tags costs more than the parse.
_LOOKED_FOR = frozenset({*_INLINE, *_INVISIBLE, "img", "form", "input", "button", "font", "a"})


def _tag_ids() -> dict[int, str]:
    """The tag id of each looked-for name."""
    probe = LexborHTMLParser("")
    return {probe.create_node(name).tag_id: name for name in _LOOKED_FOR}


_IDS = _tag_ids()
# "a", the first name of lexbor's table: the ids below it are the comment, the processing
# instruction, text, the document and the doctype.
_LINK_ID = min(_IDS)
assert len(_IDS) == len(_LOOKED_FOR) and _IDS[_LINK_ID] == "a", "lexbor's tag ids changed"
_FORM_SELECTOR = ", ".join(lxmlview._FORM_TAGS)
_NOSCRIPT = re.compile(rb"<noscript", re.IGNORECASE)
# libxml2 stops at 256 levels and html.py reports a partial view; past this depth (an element
# under 200 others, a selector lexbor answers from each element up) html.py reads the message.
# A selector of 200 steps costs as much to parse as to match: one of 50 steps rules out most.
# It is tried up from the last element children that hold no element only, a fifth to a half
# fewer steps: where an element is under 50 others, so is one of those (of the deepest
# elements, the last child of its parent). tests/message/test_html5.py holds it equal to
# "* > " * 50 + "*".
_DEEPER = ("* > " * 50 + ":last-child:not(:has(> *))",)
_DEEP = ("* > " * 200 + "*",)
# lexbor checks the open elements at each tag (the HTML standard's "in scope"), so a tree
# nested n deep costs n squared: 10,000 nested divs 0.18 s, 200,000 a minute. Past this many
# tags (a 30 KB newsletter has 1,500) html.py reads the message: libxml2 stops at 256 levels.
MAX_TAGS = 5000
# Without lexbor's mutation callbacks (what an element does when inserted, moved or removed,
# or when an attribute changes: no style sheets are kept, no selector here reads an id or a
# class, and the one element they fill, <selectedcontent>, stands in a <select>, read as a
# space): 3-5 % less parse. tests/message/test_html5.py holds the view equal either way.
_PARSE_OPTIONS = LexborDocumentOptions.WO_EVENTS
_new = tuple.__new__
def _styled(tree: LexborHTMLParser) -> tuple[list[LexborNode], list[str], list[str]]:
    """The elements with a style, their styles (two lists: no pair made for each of a
    newsletter's hundred styled cells), and the distinct styles in document order."""
    nodes = tree.css("[style]")
    values = [node.attrs["style"] or "" for node in nodes]
    return nodes, values, list(dict.fromkeys(values))


def _colour_suspects(tree: LexborHTMLParser, styled: tuple[list[LexborNode], list[str], list[str]],
                     fonts: list[LexborNode]) -> list[tuple[LexborNode, inlinestyle.RGBA]]:
    """html.py's `_colour_suspects` on lexbor's tree: the elements whose own colour may not be
    read on some background of the page, with that colour. `styled`: `_styled`; `fonts`: the
    font elements."""
    nodes, values, styles = styled
    coloured = [s for s in styles if lxmlview._colourish(s)][: lxmlview.MAX_HIDING]
    font_nodes = [node for node in fonts if node.attrs.get("color")]
    if not coloured and not font_nodes:
        return []
    bgcolors = (node.attrs["bgcolor"] or "" for node in tree.css("[bgcolor]"))
    suspects, suspect = lxmlview.colour_suspects(coloured, bgcolors)
    found = [(node, suspects[style]) for node, style in zip(nodes, values, strict=True) if style in suspects]
    for node in font_nodes:
        colour = inlinestyle.attribute_colour(node.attrs["color"] or "")
        if colour is not None and suspect(colour):
            found.append((node, colour))
    return found


def _element_attr(node: LexborNode, name: str) -> str | None:
    return node.attrs.get(name)


def _element_parent(node: LexborNode) -> LexborNode | None:
    up = node.parent
    return up if up is not None and up.is_element_node else None


def _background(node: LexborNode | None) -> inlinestyle.RGBA | None:
    """html.py's `background` on lexbor's tree (from an element, up to the root element)."""
    if node is not None and not node.is_element_node:
        node = None
    return lxmlview.background(node, _element_attr, _element_parent)


def _hidden(tree: LexborHTMLParser, found: dict[str, list[LexborNode]], tags: int) -> list[LexborNode] | None:
    """The elements to take out whole, in document order; None when html.py must read the
    message (see the module's docstring). `found`: `_elements`; `tags`: the "<" counted."""
    fonts = found.get("font", [])
    colours: list[tuple[LexborNode, inlinestyle.RGBA]] | None = None
    css = "\n".join(node.text() for node in found["style"]) if "style" in found else ""
    # html.py looks for a sheet where the source says "<style" in one of three cases; one read
    # here where html.py does not read it hands over to html.py, or is read the same. Before
    # the styled elements are read: a sheet that may hide hands the message over at once.
    if css and cascade.may_hide(css):
        return None
    styled = _styled(tree)
    nodes, values, styles = styled
    if css and cascade.paints_background(css):
        colours = _colour_suspects(tree, styled, fonts)
        if colours:
            return None
    suspects = inlinestyle.suspects(styles)
    if len(suspects) > lxmlview.MAX_HIDING:
        return None
    hiding = set()
    for i in suspects:
        effect = inlinestyle.effect(styles[i])
        if effect.subtree:  # html.py takes it out whole, whatever else the style says
            hiding.add(styles[i])
        elif effect.blanks_text:
            return None
    gone = tree.css("[hidden]")
    hidden = [node for node, style in zip(nodes, values, strict=True) if style in hiding] if hiding else []
    if len(gone) + len(hidden) > lxmlview.MAX_HIDING or (tags > 200 and tree.any_css_matches(_DEEPER) and tree.any_css_matches(_DEEP)):
        return None
    if colours is None:
        colours = _colour_suspects(tree, styled, fonts)
    if any(inlinestyle.unreadable(colour, _background(node)) for node, colour in colours):
        return None
    root = tree.root
    # By identity: a node's == compares the HTML of both (the whole document's, for the root).
    ids = {node.mem_id for node in gone} | {node.mem_id for node in hidden}
    if root is not None and root.mem_id in ids:
        return None
    if gone and hidden:  # in document order, so that the inner ones go first
        return [node for node in tree.css("[hidden], [style]") if node.mem_id in ids]
    return gone or hidden


def _anchors(links: list[tuple[LexborNode, str]], alts: dict[int, list[str]]) -> tuple[Link, ...]:
    """The links with what each says (its text, then its images' alt texts), words one space
    apart: a text that repeats (a template's "Read more") is split and joined once. Past the
    texts read from lexbor, the Links are made by map and zip in C: a Python loop over a
    hundred links cost as much again as reading their texts."""
    texts = [node.text(separator=" ") for node, _ in links]
    if alts:
        texts = [text + "".join(" " + alt for alt in extra) if (extra := alts.get(node.mem_id)) else text
                 for (node, _), text in zip(links, texts, strict=True)]
    spaced = dict.fromkeys(texts, "")
    for text in spaced:
        spaced[text] = " ".join(text.split())[:500]
    hrefs = map(str.strip, [href for _, href in links])
    return tuple(map(_new, repeat(Link), zip(hrefs, map(spaced.__getitem__, texts), repeat("html"))))


def _alts(tree: LexborHTMLParser) -> dict[int, list[str]]:
    """The alt texts of the images in each link (by the link's mem_id), in document order."""
    out: dict[int, list[str]] = {}
    for img in tree.css("a[href] img[alt]"):
        alt = img.attrs["alt"] or ""
        if not alt:
            continue
        node = img.parent
        while node is not None and not (node.tag == "a" and "href" in node.attrs):
            node = node.parent
        if node is not None:
            out.setdefault(node.mem_id, []).append(alt)
    return out


def _forms(tree: LexborHTMLParser) -> tuple[int, int, list[tuple[str, str]], list[str]]:
    password_inputs = forms = 0
    inputs: list[tuple[str, str]] = []
    actions: list[str] = []
    for node in tree.css(_FORM_SELECTOR):
        attrs = node.attrs
        if node.tag == "form":
            forms += 1
            actions.append((attrs.get("action") or "").strip())
        elif len(inputs) < lxmlview.MAX_INPUTS:
            kind = (attrs.get("type") or "text").strip().lower()
            if kind == "password":
                password_inputs += 1
            if node.tag == "input" and kind not in ("hidden", "submit", "button", "image", "reset"):
                label = (attrs.get(k) for k in ("name", "id", "placeholder", "aria-label", "autocomplete"))
                inputs.append((kind, " ".join(v for v in label if v).lower()))
    return password_inputs, forms, inputs, actions


def _elements(tree: LexborHTMLParser) -> tuple[dict[str, list[LexborNode]], list[LexborNode]]:
    """The looked-for elements by name, and the comment nodes (processing instructions too), in
    document order. Of the links only that there are some ("a" with no nodes): the text pass
    finds them again where they are after the edits, and a newsletter has a hundred."""
    found: dict[str, list[LexborNode]] = {}
    comments: list[LexborNode] = []
    if tree.root is None:
        return found, comments
    ids, link = _IDS, _LINK_ID
    for node in tree.root.traverse():
        tag = node.tag_id
        if tag in ids:
            if tag != link:
                found.setdefault(ids[tag], []).append(node)
            elif "a" not in found:
                found["a"] = []
        elif tag < link:
            comments.append(node)
    return found, comments


def extract(html: str) -> HtmlView:
    """What html.py's `extract_lxml` returns, from lexbor's tree (or from html.py's, for what
    only it reads)."""
    if not html.strip():
        return lxmlview._EMPTY
    data = lxmlview._markup(html)  # the bytes libxml2 reads: without controls and DEL references
    tags = data.count(b"<")
    if tags > MAX_TAGS:
        return lxmlview.extract_lxml(html)
    tree = LexborHTMLParser(data, options=_PARSE_OPTIONS)
    found, comments = _elements(tree)
    # A noscript may stand in a template's content, which is no part of the tree walked.
    if "template" in found and ("noscript" in found or _NOSCRIPT.search(data)):
        return lxmlview.extract_lxml(html)
    gone = _hidden(tree, found, tags)
    if gone is None:
        return lxmlview.extract_lxml(html)
    # Inner ones first: an element taken out frees what is inside it. An element found in the
    # walk above that was inside one taken out is edited where it now is, out of the document.
    for node in reversed(gone):
        if node.tag in lxmlview._INLINE_TAGS:
            node.decompose()
        else:
            node.replace_with(" ")
    for tag in _INVISIBLE:
        for node in found.get(tag, ()):
            node.replace_with(" ")
    for tag in _INLINE:
        for node in found.get(tag, ()):
            node.unwrap(delete_empty=True)
    # A comment (or a processing instruction) is a node of lexbor's tree, across which text
    # does not merge (libxml2's parser drops them).
    for node in comments:
        node.decompose()
    tree.merge_text_nodes()
    elements = tree.tags("a") if "a" in found else []
    links = [(node, href) for node in elements if (href := node.attrs.get("href")) is not None]
    problem = ""
    if len(links) > lxmlview.MAX_ANCHORS:
        problem = f"more than {lxmlview.MAX_ANCHORS} links in the HTML body"
        del links[lxmlview.MAX_ANCHORS:]
    alts = _alts(tree) if links and "img" in found else {}
    anchors = _anchors(links, alts)
    password_inputs, forms, inputs, actions = _forms(tree) if not found.keys().isdisjoint(lxmlview._FORM_TAGS) else (0, 0, [], [])
    if elements:
        for node in elements:
            node.unwrap(delete_empty=True)
        tree.merge_text_nodes()
    tokens = tree.root.text(separator=" ").split() if tree.root is not None else []
    return HtmlView(
        anchors=anchors,
        visible_text=" ".join(tokens),
        tokens=frozenset(tokens),
        password_inputs=password_inputs,
        forms=forms,
        inputs=tuple(inputs),
        form_actions=tuple(actions),
        problem=problem,
    )
