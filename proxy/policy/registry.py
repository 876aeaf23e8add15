"""Where checks register: a check is a small pure function with a family, the rule IDs it may
emit, and whether it applies to marketing streams only. Options live per family in the policy
file (`[checks.FAMILY]`), validated by the family's options model."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable

from pydantic import BaseModel, ConfigDict

from proxy.message.mime import Message
from proxy.policy.context import Context
from proxy.policy.rules import RULES
from proxy.policy.verdict import Finding


class Options(BaseModel):
    """Base of every family's options: strict, frozen, unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    enabled: bool = True


CheckFn = Callable[[Message, Context, Any], Iterable[Finding]]


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    family: str
    rules: tuple[str, ...]
    run: CheckFn
    marketing_only: bool


CHECKS: dict[str, Check] = {}
FAMILY_OPTIONS: dict[str, type[Options]] = {}


def options(family: str) -> Callable[[type[Options]], type[Options]]:
    """Class decorator: this model validates `[checks.FAMILY]` in policy files."""

    def register(model: type[Options]) -> type[Options]:
        FAMILY_OPTIONS[family] = model
        return model

    return register


def check(family: str, *, rules: tuple[str, ...], marketing_only: bool = False) -> Callable[[CheckFn], CheckFn]:
    """Function decorator: register a check that may emit `rules`."""

    def register(fn: CheckFn) -> CheckFn:
        unknown = [r for r in rules if r not in RULES]
        if unknown:
            raise ValueError(f"check {fn.__name__} emits rules missing from the catalogue: {unknown}")
        name = f"{family}.{fn.__name__}"
        CHECKS[name] = Check(name, family, rules, fn, marketing_only)
        FAMILY_OPTIONS.setdefault(family, Options)
        return fn

    return register
