"""Prohibited content (AUP: no pornography, illegal drugs, weapons, unlicensed gambling,
get-rich-quick, MLM / pyramid schemes, "hot stocks", hate).

The categories and their terms live in editable list files (policies/content/*.toml), one per
language, compiled once at policy load into one pattern per language. The check scans the
subject and the visible text (text part, and HTML with no script, style or hidden elements),
case-insensitively on word boundaries, and names the category and the term it matched.
"""

from __future__ import annotations

from typing import Iterator

from pydantic import Field, PrivateAttr, ValidationInfo, model_validator

from proxy.message.mime import Message
from proxy.policy.contentlists import Language, compile_lists
from proxy.policy.registry import Context, Options, check, options
from proxy.policy.verdict import Finding
from proxy.tomlfile import ConfigError

MAX_TERMS_SHOWN = 3


@options("content")
class ContentOptions(Options):
    """`[checks.content]`: which lists apply, and categories this policy does not enforce."""

    lists: list[str] = Field(default_factory=lambda: ["builtin:en", "builtin:nl"])
    ignore_categories: list[str] = Field(default_factory=list)
    _languages: tuple[Language, ...] = PrivateAttr(default=())

    @model_validator(mode="after")
    def _compile(self, info: ValidationInfo) -> "ContentOptions":
        # Compiled here, once per policy load, where the policy file's folder is known.
        base = (info.context or {}).get("policy_dir")
        try:
            self._languages = compile_lists(self.lists, base)
        except ConfigError as exc:
            raise ValueError(str(exc)) from None
        return self

    @property
    def languages(self) -> tuple[Language, ...]:
        return self._languages


@check("content", rules=("content.prohibited",))
def prohibited(msg: Message, ctx: Context, opts: ContentOptions) -> Iterator[Finding]:
    text, words = msg.folded_text, msg.folded_words
    hits: dict[str, list[str]] = {}
    where: dict[str, list[str]] = {}
    for lang in opts.languages:
        for category, term in lang.terms.scan(text, words):
            if category in opts.ignore_categories:
                continue
            terms = hits.setdefault(category, [])
            langs = where.setdefault(category, [])
            if lang.language not in langs:
                langs.append(lang.language)
            if term not in terms:
                terms.append(term)
    for category, terms in hits.items():
        shown = ", ".join(repr(t) for t in terms[:MAX_TERMS_SHOWN])
        more = f" and {len(terms) - MAX_TERMS_SHOWN} more" if len(terms) > MAX_TERMS_SHOWN else ""
        yield Finding(
            "content.prohibited",
            f"category {category} ({'/'.join(where[category])} list): {shown}{more}",
            f"the AUP does not allow {category} content; remove it (subject and body)",
        )
