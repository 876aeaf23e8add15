"""Load a TOML file into validated, frozen models, with every error a person must fix reported
in one run, each as `FILE:LINE: key: reason` in plain words.

tomllib (the standard library's parser) gives no positions, and tomlkit, which keeps them,
parses five to ten times slower and hands back its own container types that every model would
have to unwrap. The file has already parsed when a line is wanted, so `key_lines` finds the
lines with a small scan of the source instead: table headers, arrays of tables and `key =`
lines, skipping strings, comments and multi-line values. A key it cannot place (one inside an
inline table, an element of an array) gets the line of the nearest enclosing key.
"""

from __future__ import annotations

import difflib
import re
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence, TypeVar

from pydantic import BaseModel, ValidationError

M = TypeVar("M", bound=BaseModel)
Loc = tuple[str | int, ...]


@dataclass(frozen=True)
class Problem:
    """One thing wrong in a file: where, which key, and what is wrong, for people."""

    file: str
    line: int | None
    key: str
    reason: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.key}: {self.reason}" if self.key else f"{where}: {self.reason}"


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$", re.I)
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_duration(text: str) -> float:
    """'30d', '12h', '90m', '2w', '45s' → seconds, for the config and policy files alike. A
    bare number is refused: the unit matters."""
    m = _DURATION.match(text)
    if not m:
        raise ValueError(f"{text!r}: expected a number and a unit (s, m, h, d or w), such as 30d or 12h")
    return float(m.group(1)) * _UNIT[m.group(2).lower()]


class ConfigError(Exception):
    """A configuration or policy file is missing, unreadable, or wrong. The message is for
    people: one line per problem, `FILE:LINE: key: reason`."""

    def __init__(self, message: str | Sequence[Problem]) -> None:
        self.problems: tuple[Problem, ...] = () if isinstance(message, str) else tuple(message)
        super().__init__(message if isinstance(message, str) else "\n".join(map(str, self.problems)))

    @property
    def located(self) -> bool:
        """True when every line of the message names its file (printed as it is)."""
        return bool(self.problems)


# -- where keys are ------------------------------------------------------------------------------

_BARE = re.compile(r"[A-Za-z0-9_-]+")


def _key(text: str, i: int) -> tuple[list[str], int]:
    """A dotted key starting at text[i] → its parts and the index after it."""
    parts: list[str] = []
    while True:
        while text[i] in " \t":
            i += 1
        if text[i] in "\"'":
            q = text[i]
            j = i + 1
            while text[j] != q:
                j += 2 if (q == '"' and text[j] == "\\") else 1
            parts.append(tomllib.loads(f"k = {text[i:j + 1]}")["k"])
            i = j + 1
        else:
            m = _BARE.match(text, i)
            if not m:
                return parts, i
            parts.append(m.group())
            i = m.end()
        while i < len(text) and text[i] in " \t":
            i += 1
        if i < len(text) and text[i] == ".":
            i += 1
            continue
        return parts, i


def _line_end(text: str, i: int) -> int:
    """The index of the newline that ends the line at text[i], or len(text)."""
    j = text.find("\n", i)
    return len(text) if j < 0 else j


def _skip_value(text: str, i: int) -> int:
    """From just after `=`, the index of the newline that ends the value (or len(text))."""
    depth = 0
    n = len(text)
    while i < n:
        c = text[i]
        if c in "\"'":
            triple = text.startswith(c * 3, i)
            end = c * 3 if triple else c
            i += len(end)
            while i < n and not text.startswith(end, i):
                i += 2 if (c == '"' and text[i] == "\\") else 1
            i += len(end)
            if triple:
                while i < n and text[i] == c:  # up to two quotes may close a multi-line string
                    i += 1
            continue
        if c == "#":
            i = _line_end(text, i)
            continue
        if c in "[{":
            depth += 1
        elif c in "]}":
            depth -= 1
        elif c == "\n" and depth <= 0:
            return i
        i += 1
    return i


def key_lines(text: str) -> dict[Loc, int]:
    """The line of every table header and `key =` of a valid TOML document, by key path;
    arrays of tables are indexed as the parsed document is (`("listeners", 1, "address")`)."""
    out: dict[Loc, int] = {}
    aot: dict[Loc, int] = {}  # array-of-tables path → how many so far
    table: Loc = ()
    i, n = 0, len(text)

    def resolve(parts: list[str]) -> Loc:
        path: Loc = ()
        for p in parts:
            path += (p,)
            if path in aot:
                path += (aot[path] - 1,)
        return path

    while i < n:
        c = text[i]
        if c in " \t\r\n":
            i += 1
            continue
        if c == "#":
            i = _line_end(text, i)
            continue
        line = text.count("\n", 0, i) + 1
        if c == "[":
            double = text.startswith("[[", i)
            parts, i = _key(text, i + (2 if double else 1))
            if double:
                parent = resolve(parts[:-1]) + (parts[-1],)
                aot[parent] = aot.get(parent, 0) + 1
            table = resolve(parts)
            out.setdefault(table, line)
            i = _line_end(text, i)
            continue
        parts, i = _key(text, i)
        if not parts:  # not something this scan understands: skip the line
            i = _line_end(text, i) + 1
            continue
        path = table
        for p in parts:
            path += (p,)
            out.setdefault(path, line)
        i = _skip_value(text, text.index("=", i) + 1)
    return out


@dataclass
class TomlDoc:
    """A parsed TOML file: its data, its name for messages, and where its keys are."""

    name: str
    data: dict[str, Any]
    text: str = ""
    _lines: dict[Loc, int] | None = field(default=None, repr=False)

    def line(self, loc: Loc) -> int | None:
        if self._lines is None:
            try:
                self._lines = key_lines(self.text)
            except (IndexError, ValueError, tomllib.TOMLDecodeError):  # never stand between a person and the error
                self._lines = {}
        loc = tuple(loc)
        while loc:
            if loc in self._lines:
                return self._lines[loc]
            loc = loc[:-1]
        return None


def load_toml(path: Path | str, text: str | None = None) -> TomlDoc:
    """Parse TOML from `path` (or from `text`, naming `path` in errors)."""
    try:
        if text is None:
            text = Path(path).read_text(encoding="utf-8")
        return TomlDoc(str(path), tomllib.loads(text), text)
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        m = re.search(r"\(at line (\d+), column \d+\)$", str(exc))
        if m:
            raise ConfigError([Problem(str(path), int(m.group(1)), "", f"not valid TOML: {exc}")]) from None
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None


def read_toml(path: Path | str, text: str | None = None) -> dict[str, Any]:
    """Parse TOML from `path` (or from `text`); the data only."""
    return load_toml(path, text).data


# -- plain words for pydantic's errors -----------------------------------------------------------

_TAG = re.compile(r"^(literal|list|dict|set|tuple|function-[a-z]+|constrained-[a-z]+|nullable|union|tagged-union|"
                  r"int|float|str|bool|none|is-instance)(\[.*\])?$")


def dotted(loc: Iterable[str | int]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            text = str(part)
            if not text or not text.replace("_", "").replace("-", "").isalnum():
                text = f'"{text}"'
            out += ("." if out else "") + text
    return out or "(top level)"


def _unwrap(tp: Any) -> Any:
    """The model type behind Optional/Annotated, or the type itself."""
    while True:
        origin = typing.get_origin(tp)
        if origin is typing.Annotated:
            tp = typing.get_args(tp)[0]
        elif origin in (typing.Union, types.UnionType):
            models = [a for a in typing.get_args(tp) if a is not type(None)]
            if len(models) != 1:
                return tp
            tp = models[0]
        else:
            return tp


def model_at(model: Any, loc: Loc) -> Any:
    """The model class that validates the table at `loc` (None when it is not a model)."""
    tp: Any = model
    for part in loc:
        tp = _unwrap(tp)
        origin = typing.get_origin(tp)
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            info = tp.model_fields.get(str(part))
            if info is None:
                return None
            tp = info.annotation
        elif origin in (list, tuple) and isinstance(part, int):
            tp = typing.get_args(tp)[0]
        elif origin is dict:
            tp = typing.get_args(tp)[1]
        else:
            return None
    tp = _unwrap(tp)
    return tp if isinstance(tp, type) and issubclass(tp, BaseModel) else None


def did_you_mean(word: str, known: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(known), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def unknown_key(model: Any, loc: Loc) -> str:
    parent = model_at(model, loc[:-1])
    known = sorted(parent.model_fields) if parent else []
    hint = did_you_mean(str(loc[-1]), known) if known else ""
    return "unknown key" + (hint or (f" (known: {', '.join(known)})" if 0 < len(known) <= 12 else ""))


def _limit(ctx: dict[str, Any], key: str) -> str:
    value = ctx.get(key)
    return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)


def plain(err: Any) -> str:
    """pydantic's error in words an ops person reads without knowing pydantic."""
    kind = err["type"]
    ctx = err.get("ctx") or {}
    if kind == "missing":
        return "required, but not set"
    if kind in ("bool_type", "bool_parsing"):
        return "expected true or false (without quotes)"
    if kind in ("int_type", "int_parsing", "int_from_float"):
        return "expected a whole number (without quotes)"
    if kind in ("float_type", "float_parsing"):
        return "expected a number (without quotes)"
    if kind in ("string_type", "str_type"):
        return "expected a string (in quotes)"
    if kind in ("list_type", "tuple_type", "set_type"):
        return "expected a list, [...]"
    if kind in ("dict_type", "model_type", "model_attributes_type"):
        return "expected a table"
    if kind == "literal_error":
        return "expected " + str(ctx.get("expected", "one of the allowed values")).replace("'", '"')
    if kind == "greater_than_equal":
        return f"must be at least {_limit(ctx, 'ge')}"
    if kind == "greater_than":
        return f"must be more than {_limit(ctx, 'gt')}"
    if kind == "less_than_equal":
        return f"must be at most {_limit(ctx, 'le')}"
    if kind == "less_than":
        return f"must be less than {_limit(ctx, 'lt')}"
    if kind in ("string_too_long", "too_long"):
        return f"too long: at most {ctx.get('max_length')}" + (" characters" if kind == "string_too_long" else " items")
    if kind in ("string_too_short", "too_short"):
        n = ctx.get("min_length")
        return "must not be empty" if n == 1 else f"too short: at least {n}" + (" characters" if kind == "string_too_short" else " items")
    if kind == "string_pattern_mismatch":
        return f"does not have the expected form ({ctx.get('pattern')})"
    if kind in ("value_error", "assertion_error"):
        return str(ctx.get("error", err["msg"]))
    msg = str(err["msg"])
    return re.sub(r"^Input should be", "expected", msg)


_MISMATCH = ("literal_error", "bool_type", "int_type", "float_type", "string_type", "list_type", "dict_type", "model_type")


def problems(doc: TomlDoc, model: Any, exc: ValidationError, prefix: Loc = ()) -> list[Problem]:
    """Every error of one validation as problems. The alternatives of a union (`"auto"` or a
    list of CPU numbers) become one: the branch the value's type matched speaks when there is
    one, otherwise every branch's expectation is listed."""
    merged: dict[Loc, list[tuple[str, str]]] = {}
    union: set[Loc] = set()
    for err in exc.errors():
        loc: Loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and _TAG.match(p)))
        if len(loc) != len(err["loc"]):
            union.add(loc[:1])
        reason = unknown_key(model, loc) if err["type"] == "extra_forbidden" else plain(err)
        reasons = merged.setdefault(loc, [])
        if reason not in (r for _, r in reasons):
            reasons.append((err["type"], reason))
    out = []
    for loc, found in merged.items():
        if loc[:1] in union:
            if any(other[:len(loc)] == loc and len(other) > len(loc) for other in merged):
                continue  # a deeper error of the matching branch says more
            if any(kind not in _MISMATCH for kind, _ in found):
                found = [(k, r) for k, r in found if k not in _MISMATCH]
        out.append(Problem(doc.name, doc.line(prefix + loc), dotted(prefix + loc), ", or ".join(r for _, r in found)))
    return out


class Problems:
    """Collects every problem of a file before anything is raised, so that one run of a
    check reports all of them."""

    def __init__(self, doc: TomlDoc) -> None:
        self.doc = doc
        self.found: list[Problem] = []

    def add(self, loc: Loc, reason: str) -> None:
        self.found.append(Problem(self.doc.name, self.doc.line(loc), dotted(loc), reason))

    def validate(self, model: type[M], data: Any, prefix: Loc = (), context: dict[str, Any] | None = None) -> M | None:
        try:
            return model.model_validate(data, context=context)
        except ValidationError as exc:
            self.found.extend(problems(self.doc, model, exc, prefix))
            return None

    def check(self) -> None:
        if self.found:
            raise ConfigError(sorted(self.found, key=lambda p: (p.line or 0)))


def validation_message(path: Path | str, exc: ValidationError, prefix: Loc = (), model: Any = None) -> str:
    return "\n".join(str(p) for p in problems(TomlDoc(str(path), {}), model, exc, prefix))


def validate(model: type[M], data: dict[str, Any] | TomlDoc, path: Path | str, prefix: Loc = (),
             context: dict[str, Any] | None = None) -> M:
    """Validate `data` (a parsed document, for line numbers, or plain data); `context` reaches
    the model's validators (e.g. the policy file's folder, against which the policy's relative
    file names resolve). Every error is reported at once."""
    doc = data if isinstance(data, TomlDoc) else TomlDoc(str(path), data)
    found = Problems(doc)
    result = found.validate(model, doc.data, prefix, context)
    found.check()
    assert result is not None
    return result
