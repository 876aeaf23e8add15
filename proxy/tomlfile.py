"""Load a TOML file into a validated, frozen model, with errors that name the file and key."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

M = TypeVar("M", bound=BaseModel)


class ConfigError(Exception):
    """A configuration or policy file is missing, unreadable, or wrong. The message is for people:
    `FILE: KEY: what is wrong`."""

    located = False  # True when every line of the message already names its file (and line)


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
