"""Load a TOML file into a validated, frozen model, with errors that name the file and key."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

M = TypeVar("M", bound=BaseModel)


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
    """A configuration or policy file is missing, unreadable, or wrong. The message is for people:
    `FILE: KEY: what is wrong`."""


def read_toml(path: Path | str, text: str | None = None) -> dict[str, Any]:
    """Parse TOML from `path` (or from `text`, naming `path` in errors)."""
    try:
        if text is None:
            text = Path(path).read_text(encoding="utf-8")
        return tomllib.loads(text)
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None


def _loc(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            text = str(part)
            if not text.replace("_", "").replace("-", "").isalnum():
                text = f'"{text}"'
            out += ("." if out else "") + text
    return out or "(top level)"


def validation_message(path: Path | str, exc: ValidationError, prefix: tuple[Any, ...] = ()) -> str:
    lines = []
    for err in exc.errors():
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        lines.append(f"{path}: {_loc(prefix + tuple(err['loc']))}: {msg}")
    return "\n".join(lines)


def validate(model: type[M], data: dict[str, Any], path: Path | str, prefix: tuple[Any, ...] = (),
             context: dict[str, Any] | None = None) -> M:
    """Validate `data`; `context` reaches the model's validators (e.g. the policy file's folder,
    against which the policy's relative file names resolve)."""
    try:
        return model.model_validate(data, context=context)
    except ValidationError as exc:
        raise ConfigError(validation_message(path, exc, prefix)) from None
