"""Whether an inline style hides its element from the reader.

Hidden text is what a spammer hides words in, and what a sender hides a required link in, so
the question is answered as a browser would: the declarations are parsed with tinycss2 (CSS
Syntax Level 3: comments, escapes, strings, `!important`; the last declaration of a property
wins unless an earlier one is important). A regex over the raw attribute was fooled both ways:
`display:<tab>none` and `display:/**/none` hid text it did not see, and
`font-family:"display:none"` hid text a reader does see.

Hiding, here, the sixteen kinds of the "Email Cloaking" study (ESORICS 2025) in its five groups
(only the published summary was at hand, which names the groups and the count; the list is ours,
each kind with one message in tests/fixtures/enforcement/visibility/):

  visibility control  1 display:none  2 visibility:hidden/collapse  3 opacity 0 (below 0.1)
  colour              4 colour equal to the background  5 nearly equal (contrast below
                      `MIN_CONTRAST`)  6 colour transparent (alpha below 0.1)
  size                7 font-size 1px or less  8 height 0 with overflow hidden  9 max-height 0
                      with overflow hidden  10 width or max-width 0 with overflow hidden
                      11 transform scale(0)
  layout              12 positioned off-screen (absolute/fixed/relative, left or top -1000px or less;
                      also a margin that far out)  13 text-indent off-screen  14 clip to no area
                      (absolute/fixed with clip: rect(0 0 0 0))  15 clip-path that leaves nothing
                      (inset 50 % or more, circle(0), ellipse(0))
  content             16 content-visibility:hidden

Kinds 1, 3, 8-16 hide the element and all inside it (`Effect.subtree`); font size and visibility
are inherited, and an element inside that sets a size or visibility of its own is seen again;
colour (4-6) is judged against the background the text is painted on, which proxy/message/html.py
finds among the element's ancestors (`Effect.color`, `Effect.background`).

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
import tinycss2.color3

# What a hiding declaration starts with, with whitespace and comments taken out and lower-cased
# ("opacity:" in any form: it is rare in email and hides with .0, -0, 0%, 0e1). A backslash
# is a CSS escape that may spell any of them (displ\61y).
_HINTS = (
    "display:none", "visibility:hidden", "visibility:collapse", "opacity:", "content-visibility:", "transform:",
    "clip", "\\",
    # a size of 1px or less, also in the font shorthand (font: 0/0 a)
    "font-size:0", "font-size:.", "font-size:-", "font-size:+", "font-size:1p", "font-size:1.", "font:0", "font:.",
    "font:1p", *(f"font-size:{n}%" for n in range(1, 7)), "0/", "0px/", "0pt/", "0em/", "0%/", "1px/",
    # no height or width (max- too), with overflow hidden
    "height:0", "height:.", "height:-", "height:+", "width:0", "width:.", "width:-", "width:+",
    # off-screen: a negative length of 1000 or more, wherever it stands (margin: 0 0 0 -5000px)
    *(f"-{d}" for d in range(1, 10)),
)
# The hints as they are looked for: each whole; a beginning several share, found once, then what
# may follow it tested at each place (one startswith); the sizes before a "/", tested at each
# "/" (one endswith); a minus and a digit by one regex. 45 finds over a newsletter's styles
# cost 26 us, mostly the calls; these few, 8 us (`_hint_places`, held equal to the plain
# search by tests/message/test_styles.py).
_WHOLE = ("display:none", "visibility:hidden", "visibility:collapse", "opacity:", "content-visibility:", "transform:",
          "clip", "\\")
_SIGN = ("0", ".", "-", "+")
_FOLLOWED = (
    ("font-size:", (*_SIGN, "1p", "1.", *(f"{n}%" for n in range(1, 7)))),
    ("font:", ("0", ".", "1p")),
    ("height:", _SIGN),
    ("width:", _SIGN),
)
_BEFORE_SLASH = ("0", "0px", "0pt", "0em", "0%", "1px")
_NEGATIVE = re.compile("-[1-9]")
assert {*_WHOLE, *(a + b for a, bs in _FOLLOWED for b in bs), *(a + "/" for a in _BEFORE_SLASH),
        *(f"-{d}" for d in range(1, 10))} == set(_HINTS), "the hints and their grouping differ"
# What a colour or a background starts with (judged against the backgrounds, not by `suspects`).
COLOUR_HINTS = ("color:", "background")
# A comment ends at */ or, unterminated, with its style (a NUL separates styles in `suspects`).
_COMMENT = re.compile(r"/\*.*?(?:\*/|(?=\x00)|\Z)", re.S)
_SEPARATOR = "\x00"  # not in any attribute value: the HTML reader drops C0 controls


def _compact(text: str) -> str:
    if "/*" in text:
        text = _COMMENT.sub("", text)
    return "".join(text.split()).lower()


def compact(text: str) -> str:
    """The text without comments and whitespace, lower-cased: what the hints are looked for in."""
    return _compact(text)


def may_hide(style: str) -> bool:
    """The cheap test: False when the style certainly hides nothing."""
    return compact_may_hide(_compact(style))


def compact_may_hide(compact: str) -> bool:
    """`may_hide` of a text already made `compact` (a style sheet's is read twice)."""
    return any(h in compact for h in _WHOLE) or bool(_hint_places(compact, first=True))


def suspects(styles: Sequence[str]) -> list[int]:
    """The indexes of the styles that may hide their element (`hides` decides), found in all of
    them at once: joined with NUL, compacted together, each hint's places counted back to
    the style it is in (no style is compacted on its own)."""
    if not styles:
        return []
    compact = _compact(_SEPARATOR.join(styles))
    return _found(compact, _hint_places(compact))


def _hint_places(compact: str, first: bool = False) -> list[int]:
    """A place in each of the hints' places in the text (a place of each hint found, within
    it); with `first`, of the hints not in _WHOLE, and as soon as one is found."""
    places = []
    if not first:
        for hint in _WHOLE:
            i = compact.find(hint)
            while i >= 0:
                places.append(i)
                i = compact.find(hint, i + 1)
    for start, follows in _FOLLOWED:
        i = compact.find(start)
        while i >= 0:
            if compact.startswith(follows, i + len(start)):
                places.append(i)
                if first:
                    return places
            i = compact.find(start, i + 1)
    i = compact.find("/")
    while i >= 0:
        if compact.endswith(_BEFORE_SLASH, 0, i):
            places.append(i)
            if first:
                return places
        i = compact.find("/", i + 1)
    if first:
        found = _NEGATIVE.search(compact)
        return [found.start()] if found else places
    places.extend(m.start() for m in _NEGATIVE.finditer(compact))
    return places


def _found(compact: str, places: list[int]) -> list[int]:
    """The indexes of the NUL-separated parts of `compact` the places are in, in order."""
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
    return value is not None and len(value) == 1 and value[0].type in ("number", "dimension", "percentage") and value[0].value == 0


_RELATIVE_UNITS = frozenset({"em", "ex", "ch", "cap", "ic", "lh"})
_INHERITING = frozenset({"inherit", "unset", "revert", "revert-layer", "smaller", "larger", "math"})
# Absolute lengths in CSS px (a reader's default font is 16px; rem is the root's, which email
# does not change).
_PX = {"px": 1.0, "pt": 4 / 3, "pc": 16.0, "in": 96.0, "cm": 96 / 2.54, "mm": 96 / 25.4, "q": 96 / 101.6, "rem": 16.0}
TINY_FONT_PX = 1.0  # a size of 1px or less cannot be read
OFF_SCREEN_PX = -1000.0  # positioned this far left or up, nothing of a mail's width is left in view
MIN_OPACITY = 0.1


def _font_size(value: list[tinycss2.ast.Node] | None) -> bool | None:
    """True: a size of 1px or less; False: a size of its own; None: relative to the parent's (a
    tiny one stays tiny) or not a size at all."""
    if not value:
        return None
    token = value[0]
    if token.type in ("number", "dimension", "percentage"):
        if token.value <= 0:
            return True
        if token.type == "percentage":
            return True if token.value * 16 / 100 <= TINY_FONT_PX else None
        if token.type == "dimension" and token.lower_unit in _RELATIVE_UNITS:
            return True if token.value * 16 <= TINY_FONT_PX else None
        if token.type == "dimension" and token.lower_unit in _PX:
            return bool(token.value * _PX[token.lower_unit] <= TINY_FONT_PX)
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


def _px(value: list[tinycss2.ast.Node] | None) -> float | None:
    """A length in px (None: not an absolute length)."""
    if not value or value[0].type not in ("number", "dimension"):
        return None
    token = value[0]
    if token.type == "number":
        return float(token.value) if token.value == 0 else None
    factor = _PX.get(token.lower_unit)
    return None if factor is None else float(token.value) * factor


def _off_screen(decls: dict[str, list[tinycss2.ast.Node]]) -> bool:
    """Moved out of view: positioned, or by a margin or a text indent, this far left or up."""
    far = [decls.get("text-indent"), decls.get("margin-left"), decls.get("margin-top")]
    margin = decls.get("margin")
    if margin:
        far.append(margin[:1])  # top
        far.append(margin[3:4] or margin[1:2] or margin[:1])  # left
    if _keyword(decls.get("position")) in ("absolute", "fixed", "relative"):
        far += [decls.get("left"), decls.get("top"), decls.get("inset")]
    return any((px := _px(v)) is not None and px <= OFF_SCREEN_PX for v in far)


def _numbers(token: tinycss2.ast.Node) -> list[tinycss2.ast.Node]:
    return [t for t in getattr(token, "arguments", ()) if t.type in ("number", "dimension", "percentage")]


def _scaled_away(value: list[tinycss2.ast.Node] | None) -> bool:
    """transform: scale(0), scaleX(0), scaleY(0), scale3d(0, ...), matrix(0, 0, 0, 0, ...)."""
    for token in value or ():
        if token.type != "function":
            continue
        name, args = token.lower_name, _numbers(token)
        if name.startswith("scale") and any(a.value == 0 for a in args[:2]):
            return True
        if name == "matrix" and len(args) >= 4 and (args[0].value == args[1].value == 0 or args[2].value == args[3].value == 0):
            return True
    return False


def _clipped_away(decls: dict[str, list[tinycss2.ast.Node]]) -> bool:
    """clip: rect() with no width or height on a positioned element; a clip-path that leaves
    nothing (inset 50 % or more from both sides, a circle or ellipse of radius 0)."""
    clip = decls.get("clip")
    if clip and clip[0].type == "function" and clip[0].lower_name == "rect" and \
            _keyword(decls.get("position")) in ("absolute", "fixed"):
        edges = [_px([t]) for t in _numbers(clip[0])]
        if len(edges) == 4 and None not in edges:
            top, right, bottom, left = edges
            if right - left <= 1 or bottom - top <= 1:  # type: ignore[operator]
                return True
    for token in decls.get("clip-path") or ():
        if token.type != "function":
            continue
        args = _numbers(token)
        if token.lower_name in ("circle", "ellipse") and args and args[0].value == 0:
            return True
        if token.lower_name == "inset" and args and all(a.type == "percentage" and a.value >= 50 for a in args[:1]):
            return True
    return False


def _box_zero(decls: dict[str, list[tinycss2.ast.Node]]) -> bool:
    """No height or no width, and what overflows is cut."""
    overflow = {_keyword(decls.get(p)) for p in ("overflow", "overflow-y", "overflow-x")}
    if not overflow & {"hidden", "clip"}:
        return False
    return any(_zero(decls.get(p)) for p in ("height", "max-height", "width", "max-width"))


RGBA = tuple[float, float, float, float]
IMAGE: RGBA = (-1.0, -1.0, -1.0, -1.0)  # a background image or gradient: the colour under the text is not known


def _colour(value: list[tinycss2.ast.Node] | None) -> RGBA | None:
    if not value or len(value) != 1:
        return None
    parsed = tinycss2.color3.parse_color(value[0])
    if parsed is None or isinstance(parsed, str):  # currentColor: the inherited colour
        return None
    return (parsed.red, parsed.green, parsed.blue, parsed.alpha)


def _background(decls: dict[str, list[tinycss2.ast.Node]]) -> RGBA | None:
    """The background an element paints (IMAGE when an image or gradient may be under the text)."""
    image = decls.get("background-image")
    if image and _keyword(image) != "none":
        return IMAGE
    colour = _colour(decls.get("background-color"))
    for token in decls.get("background") or ():
        if token.type in ("url", "function") and not (token.type == "function" and token.lower_name in ("rgb", "rgba", "hsl", "hsla")):
            return IMAGE
        found = _colour([token])
        if found is not None:
            colour = found
    return colour


def luminance(c: RGBA) -> float:
    """WCAG 2 relative luminance."""
    def channel(v: float) -> float:
        return v / 12.92 if v <= 0.04045 else ((v + 0.055) / 1.055) ** 2.4
    return 0.2126 * channel(c[0]) + 0.7152 * channel(c[1]) + 0.0722 * channel(c[2])


def contrast(a: RGBA, b: RGBA) -> float:
    """WCAG 2 contrast ratio, 1 (the same) to 21 (black on white)."""
    la, lb = luminance(a), luminance(b)
    return (max(la, lb) + 0.05) / (min(la, lb) + 0.05)


# Below this contrast ratio text is not read. WCAG asks 4.5 (3 for large text), but mail is full
# of paler text that is still read: the #999 on #fff footer is 2.85, a #ccc copyright line 1.6.
# At #ddd on #fff (1.36) and paler text disappears on most screens: that is a choice to hide.
MIN_CONTRAST = 1.5
WHITE: RGBA = (1.0, 1.0, 1.0, 1.0)


@lru_cache(maxsize=4096)  # a page tests its few colours against its few backgrounds again and again
def unreadable(colour: RGBA, background: RGBA | None) -> bool:
    """Text of this colour cannot be read on this background (None: unknown, it may be read)."""
    if colour[3] < MIN_OPACITY:
        return True
    if background is None or background == IMAGE:
        return False
    a = colour[3]  # a translucent colour is painted over the background: blend them
    seen = (a * colour[0] + (1 - a) * background[0], a * colour[1] + (1 - a) * background[1], a * colour[2] + (1 - a) * background[2], 1.0)
    return contrast(seen, background) < MIN_CONTRAST


def attribute_colour(value: str) -> RGBA | None:
    """A bgcolor= or <font color=> value (HTML reads "ffffff" without # as a colour too)."""
    value = value.strip()
    if re.fullmatch(r"[0-9a-fA-F]{6}|[0-9a-fA-F]{3}", value):
        value = "#" + value
    return _colour(tinycss2.parse_component_value_list(value, skip_comments=True)[:1] or None)


@dataclass(frozen=True, slots=True)
class Effect:
    """What a style does to the reader's view of its element.

    `subtree`: the element and everything in it are not seen (display:none, opacity below 0.1,
    no height or width with overflow hidden, scaled to nothing, clipped to nothing, off-screen,
    content-visibility hidden). Font size and visibility are inherited instead, and an element
    inside may set them back: `font-size:0` on a wrapper is how MJML and most responsive
    templates close the gaps between their columns, whose content sets its own size and is read.
    `text_zero`: the style sets a size of 1px or less (True) or a real one (False), None when it
    sets none or a relative one. `visible`: visibility set to visible (True) or hidden/collapse
    (False), None when not set. `color` and `background`: the colours set (None when not), the
    background IMAGE when an image or gradient is painted.
    """

    subtree: bool = False
    text_zero: bool | None = None
    visible: bool | None = None
    color: RGBA | None = None
    background: RGBA | None = None

    @property
    def blanks_text(self) -> bool:
        """A tiny font size or hidden visibility: the text that inherits it is not seen."""
        return self.text_zero is True or self.visible is False


def _opacity(value: list[tinycss2.ast.Node] | None) -> float | None:
    if not value or value[0].type not in ("number", "percentage"):
        return None
    return float(value[0].value) / (100 if value[0].type == "percentage" else 1)


@lru_cache(maxsize=4096)
def effect(style: str) -> Effect:
    """What the style does (remembered: a template repeats its styles, message after message,
    and parsing one costs ~20 us)."""
    decls = _declarations(style)
    opacity = _opacity(decls.get("opacity"))
    subtree = (
        _keyword(decls.get("display")) == "none"
        or (opacity is not None and opacity < MIN_OPACITY)
        or _box_zero(decls)
        or _scaled_away(decls.get("transform"))
        or _clipped_away(decls)
        or _off_screen(decls)
        or _keyword(decls.get("content-visibility")) == "hidden"
    )
    size = decls.get("font-size") or _shorthand_size(decls.get("font"))
    visibility = _keyword(decls.get("visibility"))
    visible = True if visibility == "visible" else False if visibility in ("hidden", "collapse") else None
    return Effect(subtree, _font_size(size), visible, _colour(decls.get("color")), _background(decls))


def hides(style: str) -> bool:
    """Whether an inline style hides its element's own text (and, but for descendants that set
    a size or visibility of their own, everything in it)."""
    e = effect(style)
    return e.subtree or e.blanks_text


def may_restore(style: str) -> bool:
    """The cheap test inside hidden text: False when the style certainly sets neither a font
    size, visibility, nor a colour or background."""
    low = style.lower()
    return "font" in low or "visib" in low or "color" in low or "background" in low or "\\" in low
