"""Whether an inline style hides its element from the reader.

Hidden text is what a spammer hides words in, and what a sender hides a required link in, so
the question is answered as a browser would: the declarations are parsed with tinycss2 (CSS
Syntax Level 3: comments, escapes, strings, `!important`; the last declaration of a property
wins unless an earlier one is important). A regex over the raw attribute was fooled both ways:
`display:<tab>none` and `display:/**/none` hid text it did not see, and
`font-family:"display:none"` hid text a reader does see.

Hiding, here: display:none, opacity 0 and max-height 0 with overflow hidden hide the element
and all inside it (the email preheader idioms); font-size 0 (also as `font: 0/0 a`) and
visibility hidden or collapse are inherited, and an element inside that sets a size or
visibility of its own is seen again (`Effect`; proxy/message/html.py walks that).

Parsing costs ~20 us a style and a newsletter styles most of its elements, so `suspects` first
looks at all style values at once, without whitespace and comments, for the few property:value
beginnings that can hide anything; only the styles that have one are parsed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Sequence

import tinycss2

# What a hiding declaration starts with, with whitespace and comments taken out and lower-cased
# ("opacity:" in any form: it is rare in email and hides with .0, -0, 0%, 0e1). A backslash
# is a CSS escape that may spell any of them (displ\61y).
_HINTS = ("display:none", "visibility:hidden", "visibility:collapse", "opacity:", "font-size:0",
          "font-size:.", "font-size:-", "font-size:+", "max-height:0", "max-height:.", "max-height:-",
          "max-height:+", "font:0", "font:.", "0/", "0px/", "0pt/", "0em/", "0%/", "\\")
# A comment ends at */ or, unterminated, with its style (a NUL separates styles in `suspects`).
_COMMENT = re.compile(r"/\*.*?(?:\*/|(?=\x00)|\Z)", re.S)
_SEPARATOR = "\x00"  # not in any attribute value: the HTML reader drops C0 controls


def _compact(text: str) -> str:
    if "/*" in text:
        text = _COMMENT.sub("", text)
    return "".join(text.split()).lower()


def may_hide(style: str) -> bool:
    """The cheap test: False when the style certainly hides nothing."""
    compact = _compact(style)
    return any(h in compact for h in _HINTS)


def suspects(styles: Sequence[str]) -> list[int]:
    """The indexes of the styles that may hide their element (`hides` decides), found in all of
    them at once: joined with NUL, compacted together, each hint's places counted back to
    the style it is in (no style is compacted on its own)."""
    if not styles:
        return []
    compact = _compact(_SEPARATOR.join(styles))
    places = []
    for hint in _HINTS:
        i = compact.find(hint)
        while i >= 0:
            places.append(i)
            i = compact.find(hint, i + 1)
    found: list[int] = []
    index = at = 0
    for i in sorted(places):  # counted from place to place: linear in the text
        index += compact.count(_SEPARATOR, at, i)
        at = i
        if not found or found[-1] != index:
            found.append(index)
    return found


def _declarations(style: str) -> dict[str, list[tinycss2.ast.Node]]:
    found: dict[str, tuple[bool, list[tinycss2.ast.Node]]] = {}
    for decl in tinycss2.parse_declaration_list(style, skip_comments=True, skip_whitespace=True):
        if decl.type != "declaration":
            continue
        earlier = found.get(decl.lower_name)
        if earlier is not None and earlier[0] and not decl.important:
            continue  # an important declaration is not overridden by a later normal one
        found[decl.lower_name] = (decl.important, [t for t in decl.value if t.type not in ("whitespace", "comment")])
    return {name: value for name, (_, value) in found.items()}


def _keyword(value: list[tinycss2.ast.Node] | None) -> str:
    if value and len(value) == 1 and value[0].type == "ident":
        return str(value[0].lower_value)
    return ""


def _zero(value: list[tinycss2.ast.Node] | None) -> bool:
    return bool(value) and len(value) == 1 and value[0].type in ("number", "dimension", "percentage") and value[0].value == 0


_RELATIVE_UNITS = frozenset({"em", "ex", "ch", "cap", "ic", "lh"})
_INHERITING = frozenset({"inherit", "unset", "revert", "revert-layer", "smaller", "larger", "math"})


def _font_size(value: list[tinycss2.ast.Node] | None) -> bool | None:
    """True: a zero size; False: a size of its own; None: relative to the parent's (inherits
    zero) or not a size at all."""
    if not value:
        return None
    token = value[0]
    if token.type in ("number", "dimension", "percentage"):
        if token.value == 0:
            return True
        if token.type == "percentage" or (token.type == "dimension" and token.lower_unit in _RELATIVE_UNITS):
            return None  # a share of the parent's size: zero stays zero
        return False
    if token.type == "ident":
        return None if token.lower_value in _INHERITING else False
    return None


def _shorthand_size(value: list[tinycss2.ast.Node] | None) -> list[tinycss2.ast.Node] | None:
    """The size in a `font` shorthand ([style] [variant] [weight] size[/line-height] family)."""
    for token in value or ():
        # a unitless number is a weight (700), but for 0
        if token.type in ("dimension", "percentage") or (token.type == "number" and token.value == 0):
            return [token]
    return None


@dataclass(frozen=True, slots=True)
class Effect:
    """What an inline style does to the reader's view of its element.

    `subtree`: the element and everything in it are not seen (display:none, opacity 0,
    max-height 0 with overflow hidden). Font size and visibility are inherited instead, and
    an element inside may set them back: `font-size:0` on a wrapper is how MJML and most
    responsive templates close the gaps between their columns, whose content sets its own
    size and is read. `text_zero`: the style sets a zero (True) or a real (False) font size,
    None when it sets none or a relative one. `visible`: visibility set to visible (True) or
    hidden/collapse (False), None when not set.
    """

    subtree: bool = False
    text_zero: bool | None = None
    visible: bool | None = None

    @property
    def blanks_text(self) -> bool:
        """A zero font size or hidden visibility: the text that inherits it is not seen."""
        return self.text_zero is True or self.visible is False


@lru_cache(maxsize=4096)
def effect(style: str) -> Effect:
    """What the style does (remembered: a template repeats its styles, message after message,
    and parsing one costs ~20 us)."""
    decls = _declarations(style)
    overflow = _keyword(decls.get("overflow")) or _keyword(decls.get("overflow-y"))
    subtree = (
        _keyword(decls.get("display")) == "none"
        or _zero(decls.get("opacity"))
        or (_zero(decls.get("max-height")) and overflow in ("hidden", "clip"))
    )
    size = decls.get("font-size") or _shorthand_size(decls.get("font"))
    visibility = _keyword(decls.get("visibility"))
    visible = True if visibility == "visible" else False if visibility in ("hidden", "collapse") else None
    return Effect(subtree, _font_size(size), visible)


def hides(style: str) -> bool:
    """Whether an inline style hides its element's own text (and, but for descendants that set
    a size or visibility of their own, everything in it)."""
    e = effect(style)
    return e.subtree or e.blanks_text


def may_restore(style: str) -> bool:
    """The cheap test inside hidden text: False when the style certainly sets neither a font
    size nor visibility."""
    low = style.lower()
    return "font" in low or "visib" in low or "\\" in low
