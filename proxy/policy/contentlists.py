"""Prohibited-content lists: editable TOML files, one per language, loaded and compiled once
when the policy loads.

A list file (see policies/content/en.toml):
    language = "en"
    [categories.weapons]
    terms = ["guns for sale", ...]     # a finding wherever one stands (proxy.message.patterns
                                       # has the term syntax)
    subjects = ["rifle*", "ammo", ...] # a finding only where an offer surrounds it (below)
    [offers]
    cues = ["price*", "shipping", ...] # selling: two different ones near a subject make an offer
    evasion = ["no licence check", ...]# selling around the law: one near a subject is enough
    context = ["museum", "police", ...]# legitimate settings: near one, cues do not count
    [allow]
    terms = ["drug store", ...]        # phrases that never count, whatever they contain
Lists are named in the policy as "builtin:en" (shipped inside the package) or as a path,
relative to the policy file. Every term of every list compiles into ONE pattern (one pass
over the text, whatever the number of languages), labelled with its language and category;
allow phrases count for every language (a cocktail name is one in any list). The offer
signals of all lists compile into a second pattern, run only around a subject's hits.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Iterable, Mapping

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from proxy.message.patterns import ALLOW, TermError, TermSet, check_term, compile_terms
from proxy.tomlfile import ConfigError, load_toml, problems

__all__ = ["CUE", "EVASION", "CONTEXT", "ContentLists", "Label", "compile_lists", "describe", "read_list"]

BUILTIN = "builtin:"
BUILTIN_LANGUAGES = ("en", "nl", "de", "fr", "es", "it", "pt", "pl")
# The kinds of offer signals; their labels are "<language>|<kind>".
CUE, EVASION, CONTEXT = "cue", "evasion", "context"
# A term's label in the combined pattern: "<language>|<category>" for a term, with "|~" for a
# subject ("en|~weapons"). "|" cannot occur in a language code or a category name.
_SUBJECT = "~"


class _CategoryLists(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    terms: list[str] = Field(default_factory=list)
    subjects: list[str] = Field(default_factory=list)
    description: str = ""


class _Terms(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)
    terms: list[str] = Field(default_factory=list)
    description: str = ""


class _Offers(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    cues: list[str] = Field(default_factory=list)
    evasion: list[str] = Field(default_factory=list)
    context: list[str] = Field(default_factory=list)
    description: str = ""


class ListFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)
    language: str = Field(min_length=2, max_length=16, pattern=r"^[A-Za-z0-9_-]+$")
    description: str = ""
    categories: dict[str, _CategoryLists] = Field(default_factory=dict)
    offers: _Offers = _Offers()
    allow: _Terms = _Terms()


@dataclass(frozen=True, slots=True)
class Label:
    """What a hit of the combined pattern is: its language, category, and whether it is a
    subject (which counts only within an offer) or a term (which counts on its own)."""

    language: str
    category: str
    subject: bool

    @classmethod
    def parse(cls, label: str) -> "Label":
        language, _, category = label.partition("|")
        subject = category.startswith(_SUBJECT)
        return cls(language, category[1:] if subject else category, subject)


@dataclass(frozen=True)
class ContentLists:
    """Every list of a policy, compiled: the terms and subjects of all languages in one
    pattern, the offer signals in another."""

    terms: TermSet
    offers: TermSet
    languages: tuple[str, ...]
    sources: Mapping[str, tuple[str, ...]]


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


# Compiled lists by what they were compiled from: a reload, or a second policy naming the same
# lists (every stream's, every test's), does not compile them again (half a second for all
# eight built-in languages). A list file is known by its path, size and modification time.
_COMPILED: dict[tuple[Any, ...], ContentLists] = {}
_MAX_COMPILED = 16


def _identity(spec: str, base: Path | None) -> tuple[Any, ...]:
    if spec.startswith(BUILTIN):
        return (spec,)
    path = Path(spec) if Path(spec).is_absolute() or base is None else base / spec
    try:
        st = path.stat()
    except OSError:
        return (spec, str(path))  # read_list reports it
    return (spec, str(path), st.st_size, st.st_mtime_ns)


def compile_lists(specs: list[str], base: Path | None, extra_terms: Mapping[str, Iterable[str]] | None = None,
                  extra_allow: Iterable[str] = ()) -> ContentLists:
    """Every named list, and the policy's own terms (language "policy") and allow phrases,
    compiled into the two patterns."""
    extra = tuple((k, tuple(v)) for k, v in (extra_terms or {}).items())
    allow = tuple(extra_allow)
    key = (tuple(_identity(spec, base) for spec in specs), extra, allow)
    found = _COMPILED.get(key)
    if found is None:
        if len(_COMPILED) >= _MAX_COMPILED:
            _COMPILED.clear()
        found = _COMPILED[key] = _compile(specs, base, dict(extra), allow)
    return found


def _compile(specs: list[str], base: Path | None, extra_terms: Mapping[str, Iterable[str]],
             extra_allow: Iterable[str]) -> ContentLists:
    labelled: dict[str, list[str]] = {ALLOW: []}
    offers: dict[str, list[str]] = {}
    sources: dict[str, list[str]] = {}
    for spec in specs:
        source, lf = read_list(spec, base)
        lang = lf.language.lower()
        sources.setdefault(lang, []).append(source)
        for category, cat in lf.categories.items():
            if category == ALLOW or "|" in category or category.startswith(_SUBJECT):
                raise ConfigError(f"{source}: categories.{category}: reserved name, use the [allow] table" if category == ALLOW
                                  else f"{source}: categories.{category}: a category name cannot hold '|' or start with '~'")
            _check_terms(source, f"categories.{category}.terms", cat.terms)
            _check_terms(source, f"categories.{category}.subjects", cat.subjects)
            labelled.setdefault(f"{lang}|{category}", []).extend(cat.terms)
            labelled.setdefault(f"{lang}|{_SUBJECT}{category}", []).extend(cat.subjects)
        for key, terms in ((CUE, lf.offers.cues), (EVASION, lf.offers.evasion), (CONTEXT, lf.offers.context)):
            _check_terms(source, f"offers.{key}", terms)
            offers.setdefault(f"{lang}|{key}", []).extend(terms)
        _check_terms(source, "allow.terms", lf.allow.terms)
        labelled[ALLOW].extend(lf.allow.terms)
    for category, own in extra_terms.items():
        _check_terms("[checks.content]", f"terms.{category}", list(own))
        labelled.setdefault(f"policy|{category}", []).extend(own)
        sources.setdefault("policy", ["[checks.content] terms"])
    allow = list(extra_allow)
    _check_terms("[checks.content]", "allow", allow)
    labelled[ALLOW].extend(allow)
    # Where a hit could be read as several labels, the first wins: allow, then terms, then
    # subjects (a term counts on its own; a subject only in an offer).
    ordered = sorted(labelled.items(), key=lambda kv: (kv[0] != ALLOW, f"|{_SUBJECT}" in kv[0]))
    try:
        return ContentLists(
            compile_terms({k: v for k, v in ordered if v}),
            compile_terms({k: v for k, v in offers.items() if v}),
            tuple(sources),
            {lang: tuple(s) for lang, s in sources.items()},
        )
    except TermError as exc:  # checked term by term above; a clash of terms lands here
        raise ConfigError(f"content lists: {exc}") from None


def _check_terms(source: str, key: str, terms: list[str]) -> None:
    for i, term in enumerate(terms):
        try:
            check_term(term)
        except TermError as exc:
            raise ConfigError(f"{source}: {key}[{i}]: {exc}") from None


def describe(lists: ContentLists) -> dict[str, Any]:
    return {"terms": lists.terms.size, "offer_signals": lists.offers.size,
            "languages": {lang: list(src) for lang, src in lists.sources.items()}}
