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


class _Private:
    """Reads one private attribute (what an options model compiles at load) straight from
    pydantic's private store. Pydantic's own way, a failed attribute look-up and then its
    __getattr__, takes 1.7 us a read, and the checks read a dozen of them per message; writes
    still go through pydantic."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __get__(self, obj: Any, owner: type | None = None) -> Any:
        if obj is None:
            return self
        try:
            return obj.__pydantic_private__[self.name]
        except (KeyError, TypeError):  # not set yet; no private store at all
            raise AttributeError(self.name) from None


class Options(BaseModel):
    """Base of every family's options: strict, frozen, unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)
    enabled: bool = True

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        for name in cls.__private_attributes__:
            setattr(cls, name, _Private(name))

    def prepare(self) -> None:
        """Build now what the family's check would otherwise build on the first message that
        needs it (proxy/runtime/warmup.py calls it at start and after each reload)."""


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
