"""The `<style>` blocks of an HTML body applied to its elements, as a mail client does, before
proxy/message/html.py decides what a reader sees (`.x{display:none}` on a link's cell hides it
as surely as the same declaration written inline).

The cascade is cssselect2 (selectors on ElementTree/lxml trees) over tinycss2's parse, both from
the Kozea authors (WeasyPrint's own cascade). The winning declarations are written into each
element's `style` attribute, so the one reading of inline styles (proxy/message/styles.py)
judges both. Chosen over css-inline (a Rust core), measured on the corpus newsletters and on
hostile sheets (bench notes in the commit): css-inline returns an HTML string that has to be
parsed again, by html5ever, whose tree differs from libxml2's on broken markup (what it hides
would be judged on another tree); it cannot be bounded or stopped part-way; and it keeps
`@media` blocks aside rather than applying the ones a screen reader window meets. cssselect2
works on the tree already parsed, and its rule index (by id, class, tag) keeps the matching to
the selectors that can match each element.

Only what can change visibility is carried: the sheet's declarations are filtered to
`_PROPERTIES` when it is read, and rules left with none are dropped, so `table{border-collapse:
collapse}` costs nothing. The compiled sheet is remembered by its text (a template sends the
same `<style>` block message after message).

Media queries are evaluated for a desktop screen `VIEWPORT_PX` wide in its light colour scheme
(what the browser oracle in the tests renders); `print`, `speech` and unknown features do not
apply.

Bounds against hostile sheets (issue 20, point 4): at most `MAX_RULES` rules, a selector at most
`MAX_SELECTOR_TOKENS` tokens (cssselect2 compiles a selector into nested Python code: 10,000
levels overflow the stack), and the cascade runs on at most `MAX_ELEMENTS` elements. Past any
bound nothing is applied and the reason is returned: the message is reported as unparseable.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

import cssselect2
import tinycss2
from lxml import etree

from proxy.message import styles as inlinestyle

MAX_RULES = 5000
MAX_SELECTOR_TOKENS = 400
MAX_ELEMENTS = 20_000
MAX_SHEET_CHARS = 300_000
VIEWPORT_PX = 800  # chromium's default headless window; wider than a phone, as wide as a reading pane
_MAX_MEDIA_DEPTH = 4

# The properties proxy/message/styles.py reads.
_PROPERTIES = frozenset({
    "display", "visibility", "opacity", "font-size", "font", "color", "background", "background-color",
    "background-image", "height", "max-height", "width", "max-width", "overflow", "overflow-x", "overflow-y",
    "position", "left", "top", "inset", "margin", "margin-left", "margin-top", "text-indent", "clip",
    "clip-path", "transform", "content-visibility",
})
_STYLE_TEXT = etree.XPath("/descendant::style/text()", smart_strings=False)
_COLOUR_VALUE = re.compile(r"(?<![-\w])(color|background(?:-color)?):([^;}!]+)")


@dataclass(frozen=True)
class Sheet:
    """A compiled style sheet: the matcher, or why it was not applied."""

    matcher: cssselect2.Matcher | None
    problem: str = ""


def style_text(root: etree._Element) -> str:
    """The text of all `<style>` blocks, joined."""
    return "\n".join(_STYLE_TEXT(root))


def _colours_suspect(compact: str) -> bool:
    """Whether a text colour in the sheet may vanish on a background the sheet (or the page's
    white) paints: only then are colours worth a cascade."""
    texts: list[inlinestyle.RGBA] = []
    backs: list[inlinestyle.RGBA] = [inlinestyle.WHITE]
    for name, value in _COLOUR_VALUE.findall(compact):
        colour = inlinestyle.attribute_colour(value) if name == "color" else _first_colour(value)
        if colour is not None:
            (texts if name == "color" else backs).append(colour)
    return any(inlinestyle.unreadable(t, b) for t in texts for b in backs)


def _first_colour(value: str) -> inlinestyle.RGBA | None:
    for token in tinycss2.parse_component_value_list(value, skip_comments=True):
        found = inlinestyle.attribute_colour(tinycss2.serialize([token]))
        if found is not None:
            return found
    return None


def may_hide(css: str) -> bool:
    """The cheap test: False when no declaration in the sheet can hide anything (the cascade is
    then not run: most newsletters' sheets set fonts, paddings and link colours)."""
    if inlinestyle.may_hide(css):
        return True
    compact = inlinestyle.compact(css)
    return any(h in compact for h in inlinestyle.COLOUR_HINTS) and _colours_suspect(compact)


def _media_applies(prelude: list[tinycss2.ast.Node]) -> bool:
    """A media query list, for a screen VIEWPORT_PX wide in the light scheme."""
    text = tinycss2.serialize(prelude).lower()
    for query in text.split(","):
        words = query.replace("(", " ( ").replace(")", " ) ").split()
        negate = bool(words) and words[0] == "not"
        types = [w for w in words if w in ("screen", "print", "speech", "all")]
        ok = not types or types[0] in ("screen", "all")
        for feature, value in re.findall(r"\(\s*([a-z-]+)\s*(?::\s*([^)]*))?\)", query):
            ok = ok and _feature(feature, value.strip())
        if ok != negate:
            return True
    return False


def _feature(name: str, value: str) -> bool:
    px = None
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(px|em|rem)?", value)
    if m:
        px = float(m.group(1)) * (16 if m.group(2) in ("em", "rem") else 1)
    if name in ("max-width", "max-device-width") and px is not None:
        return VIEWPORT_PX <= px
    if name in ("min-width", "min-device-width") and px is not None:
        return VIEWPORT_PX >= px
    if name == "prefers-color-scheme":
        return value == "light"
    return name in ("color", "hover", "pointer")


def _declarations(content: list[tinycss2.ast.Node]) -> list[tuple[str, str, bool]]:
    out = []
    for decl in tinycss2.parse_declaration_list(content, skip_comments=True, skip_whitespace=True):
        if decl.type == "declaration" and decl.lower_name in _PROPERTIES:
            out.append((decl.lower_name, tinycss2.serialize(decl.value).strip(), decl.important))
    return out


def _too_deep(prelude: list[tinycss2.ast.Node]) -> bool:
    """More than MAX_SELECTOR_TOKENS tokens, nested blocks and functions counted in, without
    recursing (a hostile selector is nested 10,000 deep)."""
    count, stack = 0, [iter(prelude)]
    while stack:
        token = next(stack[-1], None)
        if token is None:
            stack.pop()
            continue
        count += 1
        if count > MAX_SELECTOR_TOKENS:
            return True
        inner = getattr(token, "arguments", None) or getattr(token, "content", None)
        if isinstance(inner, list):
            stack.append(iter(inner))
    return False


@lru_cache(maxsize=64)
def compile_sheet(css: str) -> Sheet:
    """The sheet's rules that can change what is visible, in a matcher (or why not)."""
    if len(css) > MAX_SHEET_CHARS:
        return Sheet(None, f"style sheet longer than {MAX_SHEET_CHARS} characters")
    matcher = cssselect2.Matcher()
    todo = [(tinycss2.parse_stylesheet(css, skip_comments=True, skip_whitespace=True), 0)]
    rules = 0
    while todo:
        nodes, depth = todo.pop()
        for rule in nodes:
            if rule.type == "at-rule" and rule.lower_at_keyword == "media" and rule.content is not None:
                if depth < _MAX_MEDIA_DEPTH and _media_applies(rule.prelude):
                    todo.append((tinycss2.parse_rule_list(rule.content, skip_comments=True, skip_whitespace=True), depth + 1))
                continue
            if rule.type != "qualified-rule":
                continue
            rules += 1
            if rules > MAX_RULES:
                return Sheet(None, f"more than {MAX_RULES} style rules")
            decls = _declarations(rule.content)
            if not decls:
                continue
            if _too_deep(rule.prelude):
                return Sheet(None, f"a style selector longer than {MAX_SELECTOR_TOKENS} tokens")
            try:
                selectors = cssselect2.compile_selector_list(rule.prelude)
            except (cssselect2.SelectorError, RecursionError):
                continue  # a selector a browser drops too
            for selector in selectors:
                if selector.pseudo_element is None:
                    matcher.add_selector(selector, decls)
    return Sheet(matcher)


def apply(root: etree._Element, css: str, elements: int) -> str:
    """Write the sheet's winning declarations into the elements' style attributes (the inline
    style's own after the sheet's normal ones, the sheet's !important after those, inline
    !important last: the order the cascade ranks them). Returns why it was not applied, or ""."""
    sheet = compile_sheet(css)
    if sheet.matcher is None:
        return sheet.problem
    if elements > MAX_ELEMENTS:
        return f"style sheet not applied to more than {MAX_ELEMENTS} elements"
    match = sheet.matcher.match
    for wrapper in cssselect2.ElementWrapper.from_html_root(root).iter_subtree():
        matches = match(wrapper)
        if not matches:
            continue
        el = wrapper.etree_element
        ranked: list[tuple[tuple[int, tuple[int, int, int], int], str, str]] = []
        for specificity, order, _pseudo, decls in matches:
            for name, value, important in decls:
                ranked.append(((2 if important else 0, specificity, order), name, value))
        inline = el.get("style")
        if inline:
            for decl in tinycss2.parse_declaration_list(inline, skip_comments=True, skip_whitespace=True):
                if decl.type == "declaration":
                    value = tinycss2.serialize(decl.value).strip()
                    ranked.append(((3 if decl.important else 1, (0, 0, 0), 0), decl.lower_name, value))
        ranked.sort(key=lambda r: r[0])
        el.set("style", ";".join(f"{name}:{value}" for _, name, value in ranked))
    return ""


__all__ = ["MAX_ELEMENTS", "MAX_RULES", "MAX_SELECTOR_TOKENS", "Sheet", "apply", "compile_sheet", "may_hide", "style_text"]
