"""The `<style>` blocks of an HTML body applied to its elements, as a mail client does, before
proxy/message/html.py decides what a reader sees (`.x{display:none}` on a link's cell hides it
as surely as the same declaration written inline).

css-inline does the cascade (selectors, specificity, `!important`, inline styles last): its
core is Rust, with Servo's `selectors` crate, the matching a browser does. The sheet is read
with tinycss2 first: only the declarations proxy/message/styles.py reads are kept (`_PROPERTIES`;
rules left with none are dropped, so `table{border-collapse:collapse}` costs nothing), the
`@media` blocks that apply to a desktop screen `VIEWPORT_PX` wide in its light colour scheme
(what the browser oracle in the tests renders) are opened and the others dropped (css-inline
leaves `@media` aside), and the result is handed to css-inline as its only sheet. Its output,
every winning declaration in a `style` attribute, is parsed again by libxml2, and the inline
reading judges it. On the benchmark's 30 KB newsletter given a hiding sheet, reading the HTML
takes 8.5 ms instead of 3.8 ms (css-inline 1.6 ms, the second parse 1 ms); a sheet that cannot
hide (most) costs the prefilter only.

Measured before choosing (tests/fixtures corpus newsletters; a 2-core VM): on a 24 KB newsletter
css-inline took 0.6 ms and reparsing 0.4 ms, where tinycss2 + cssselect2 (the other candidate,
from tinycss2's authors) took 8.6 ms to match on the tree already parsed. On hostile sheets
cssselect2, which backtracks through ancestors for each descendant combinator, took 92 s for
4,000 rules `* .cN *` on 10,000 elements, and a 10,000-deep `:not(` overflowed its stack;
css-inline took 24 ms. (lxml's cssselect, selectors turned into XPath, took 25 s for 400 rules
`div * p` on the same page.)

Bounds against hostile sheets (issue 20, point 4), checked before anything is parsed or matched:
at most `MAX_SHEET_CHARS` characters and `MAX_RULES` rules, a selector at most
`MAX_SELECTOR_TOKENS` tokens (nested blocks and functions counted in), `@media` nested at most
`_MAX_MEDIA_DEPTH` deep, at most `MAX_ELEMENTS` elements and `MAX_MATCHING` rule-element
pairs. Past a bound nothing is applied and the reason is returned: the message is reported as
unparseable.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

import css_inline
import tinycss2
from lxml import etree

from proxy.message import styles as inlinestyle

MAX_RULES = 3000
MAX_SELECTOR_TOKENS = 400
MAX_ELEMENTS = 20_000
# Rules times elements: matching costs ~50 ns a pair (1.5 s for 2,900 rules `div * p` on
# 10,000 elements); a large newsletter is 200 rules on 3,000 elements.
MAX_MATCHING = 5_000_000
MAX_SHEET_CHARS = 150_000
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
    """What of a style sheet can change visibility, as CSS text for css-inline (or why not)."""

    css: str
    problem: str = ""
    rules: int = 0


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
    compact = inlinestyle.compact(css)  # once: a newsletter's sheet is a few KB
    if inlinestyle.compact_may_hide(compact):
        return True
    return any(h in compact for h in inlinestyle.COLOUR_HINTS) and _colours_suspect(compact)


def paints_background(css: str) -> bool:
    """Whether the sheet may paint a background (under text whose inline colour is pale)."""
    return "backg" in css.lower()


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


def _rule_text(rule: tinycss2.ast.QualifiedRule, decls: list[tuple[str, str, bool]]) -> str:
    body = ";".join(f"{name}:{value}{' !important' if important else ''}" for name, value, important in decls)
    return f"{tinycss2.serialize(rule.prelude).strip()}{{{body}}}"


@lru_cache(maxsize=64)
def compile_sheet(css: str) -> Sheet:
    """The sheet's rules that can change what is visible, with the applicable `@media` blocks
    opened (or why the sheet is not applied). Remembered: a template sends the same sheet
    message after message."""
    if len(css) > MAX_SHEET_CHARS:
        return Sheet("", f"style sheet longer than {MAX_SHEET_CHARS} characters")
    if css.count("{") > 2 * MAX_RULES:
        return Sheet("", f"more than {MAX_RULES} style rules")
    out: list[str] = []
    # depth first, so the rules keep their order (of two equally specific, the later wins)
    stack = [(iter(tinycss2.parse_stylesheet(css, skip_comments=True, skip_whitespace=True)), 0)]
    rules = 0
    while stack:
        nodes, depth = stack[-1]
        rule = next(nodes, None)
        if rule is None:
            stack.pop()
            continue
        if rule.type == "at-rule" and rule.lower_at_keyword == "media" and rule.content is not None:
            if depth < _MAX_MEDIA_DEPTH and _media_applies(rule.prelude):
                stack.append((iter(tinycss2.parse_rule_list(rule.content, skip_comments=True, skip_whitespace=True)), depth + 1))
            continue
        if rule.type != "qualified-rule":
            continue
        rules += 1
        if rules > MAX_RULES:
            return Sheet("", f"more than {MAX_RULES} style rules")
        decls = _declarations(rule.content)
        if not decls:
            continue
        if _too_deep(rule.prelude):
            return Sheet("", f"a style selector longer than {MAX_SELECTOR_TOKENS} tokens")
        out.append(_rule_text(rule, decls))
    return Sheet("\n".join(out), rules=len(out))


@lru_cache(maxsize=64)
def _inliner(css: str) -> css_inline.CSSInliner:
    return css_inline.CSSInliner(inline_style_tags=False, keep_style_tags=True, keep_link_tags=True,
                                 load_remote_stylesheets=False, extra_css=css)


def inline(html: str, css: str, elements: int) -> tuple[str, str]:
    """The HTML with the sheet's winning declarations in the elements' style attributes (the
    sheet's normal ones, then the inline style's own, then the sheet's !important ones: the
    order the cascade ranks them) and ""; or the HTML unchanged and why it was not applied."""
    sheet = compile_sheet(css)
    if sheet.problem:
        return html, sheet.problem
    if not sheet.css:
        return html, ""
    if elements > MAX_ELEMENTS:
        return html, f"style sheet not applied to more than {MAX_ELEMENTS} elements"
    if elements * sheet.rules > MAX_MATCHING:
        return html, f"style sheet of {sheet.rules} rules not applied to {elements} elements (more than {MAX_MATCHING} pairs)"
    try:
        return str(_inliner(sheet.css).inline(html)), ""
    except (ValueError, css_inline.InlineError) as exc:  # malformed beyond what a browser drops
        return html, f"style sheet could not be applied ({exc})"


__all__ = ["MAX_ELEMENTS", "MAX_RULES", "MAX_SELECTOR_TOKENS", "Sheet", "compile_sheet", "inline", "may_hide", "style_text"]
