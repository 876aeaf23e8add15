"""Whether an inline style hides its element from the reader.

Hidden text is what a spammer hides words in, and what a sender hides a required link in, so
the question is answered as a browser would: the declarations are parsed with tinycss2 (CSS
Syntax Level 3: comments, escapes, strings, `!important`; the last declaration of a property
wins unless an earlier one is important). A regex over the raw attribute was fooled both ways:
`display:<tab>none` and `display:/**/none` hid text it did not see, and
`font-family:"display:none"` hid text a reader does see.

Hiding, here: display:none, visibility:hidden or collapse, opacity 0, font-size 0, and
max-height 0 with overflow hidden (the email preheader idioms).

Parsing costs ~20 us a style and a newsletter styles most of its elements, so `suspects` first
looks at all style values at once, without whitespace and comments, for the few property:value
beginnings that can hide anything; only the styles that have one are parsed.
"""

from __future__ import annotations

import re
from typing import Sequence

import tinycss2

# What a hiding declaration starts with, with whitespace and comments taken out and lower-cased
# ("opacity:" in any form: it is rare in email and hides with .0, -0, 0%, 0e1). A backslash
# is a CSS escape that may spell any of them (displ\61y).
_HINTS = ("display:none", "visibility:hidden", "visibility:collapse", "opacity:", "font-size:0",
          "font-size:.", "font-size:-", "font-size:+", "max-height:0", "max-height:.", "max-height:-",
          "max-height:+", "\\")
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


def hides(style: str) -> bool:
    """Whether the declarations of an inline style make its element invisible."""
    decls = _declarations(style)
    overflow = _keyword(decls.get("overflow")) or _keyword(decls.get("overflow-y"))
    return (
        _keyword(decls.get("display")) == "none"
        or _keyword(decls.get("visibility")) in ("hidden", "collapse")
        or _zero(decls.get("opacity"))
        or _zero(decls.get("font-size"))
        or (_zero(decls.get("max-height")) and overflow in ("hidden", "clip"))
    )
