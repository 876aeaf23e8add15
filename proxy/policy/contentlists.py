"""Prohibited-content lists: editable TOML files, one per language, loaded and compiled once
when the policy loads.

A list file (see policies/content/en.toml):
    language = "en"
    [categories.adult]
    terms = ["porn*", "xxx", ...]      # see proxy.message.patterns for the term syntax
    [allow]
    terms = ["drug store", ...]        # phrases that never count, whatever they contain
Lists are named in the policy as "builtin:en" (shipped inside the package) or as a path,
relative to the policy file. Several files of one language merge into one compiled pattern.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from proxy.message.patterns import ALLOW, TermError, TermSet, check_term, compile_terms
from proxy.tomlfile import ConfigError, load_toml, problems

BUILTIN = "builtin:"


class _Terms(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)
    terms: list[str] = Field(default_factory=list)
    description: str = ""


class ListFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)
    language: str = Field(min_length=2, max_length=16)
    description: str = ""
    categories: dict[str, _Terms] = Field(default_factory=dict)
    allow: _Terms = _Terms()


@dataclass(frozen=True)
class Language:
    """The compiled lists of one language."""

    language: str
    terms: TermSet
    sources: tuple[str, ...]


def read_list(spec: str, base: Path | None) -> tuple[str, ListFile]:
    """Read one list file named in the policy; errors name the file and key."""
    if spec.startswith(BUILTIN):
        name = spec[len(BUILTIN):]
        try:
            text = resources.files("proxy.policies").joinpath("content", f"{name}.toml").read_text(encoding="utf-8")
        except (FileNotFoundError, OSError):
            raise ConfigError(f"{spec}: no built-in content list of that name") from None
        source = f"policies/content/{name}.toml"
        doc = load_toml(source, text)
    else:
        path = Path(spec)
        if not path.is_absolute() and base is not None:
            path = base / path
        source = str(path)
        doc = load_toml(path)
    try:
        return source, ListFile.model_validate(doc.data)
    except ValidationError as exc:
        raise ConfigError(problems(doc, ListFile, exc)) from None


def compile_lists(specs: list[str], base: Path | None) -> tuple[Language, ...]:
    """Every named list, merged per language and compiled: one pattern per language."""
    merged: dict[str, dict[str, list[str]]] = {}
    sources: dict[str, list[str]] = {}
    for spec in specs:
        source, lf = read_list(spec, base)
        lang = lf.language.lower()
        bucket = merged.setdefault(lang, {})
        sources.setdefault(lang, []).append(source)
        for category, terms in lf.categories.items():
            if category == ALLOW:
                raise ConfigError(f"{source}: categories.{ALLOW}: reserved name, use the [allow] table")
            _check_terms(source, f"categories.{category}.terms", terms.terms)
            bucket.setdefault(category, []).extend(terms.terms)
        _check_terms(source, "allow.terms", lf.allow.terms)
        bucket.setdefault(ALLOW, []).extend(lf.allow.terms)
    return tuple(Language(lang, compile_terms(cats), tuple(sources[lang])) for lang, cats in merged.items())


def _check_terms(source: str, key: str, terms: list[str]) -> None:
    for i, term in enumerate(terms):
        try:
            check_term(term)
        except TermError as exc:
            raise ConfigError(f"{source}: {key}[{i}]: {exc}") from None


def describe(languages: tuple[Language, ...]) -> dict[str, Any]:
    return {lang.language: {"terms": lang.terms.size, "sources": list(lang.sources)} for lang in languages}
