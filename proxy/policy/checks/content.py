"""Prohibited content (AUP: no pornography, illegal drugs, weapons, unlicensed gambling,
get-rich-quick, MLM / pyramid schemes, "hot stocks", hate).

The categories and their words live in editable list files (policies/content/*.toml), one per
language (English, Dutch, German, French, Spanish, Italian, Portuguese, Polish are shipped),
compiled once at policy load into one pattern (proxy.policy.contentlists). The check scans the
subject and the visible text (text part, and HTML with no script, style or hidden elements),
case-insensitively on word boundaries, and also the passages that read differently once cheap
disguises are taken off (`Message.unmasked_text`: v1agra, c-a-s-i-n-o, look-alike letters).
A message is refused for
- a term: a phrase only prohibited mail uses ("buy cocaine", "online casino"), anywhere;
- an offer: a subject word ("rifles", "kokain", "casino") with, within OFFER_WINDOW
  characters, one evasion cue ("no licence check", "ohne Rezept", "discreet shipping") or two
  different selling cues (a price, "sale", "order", "shipping") and no legitimate setting
  ("museum", "police", "pharmacy", "licensed", "parents"): so a sale in plain words is refused
  while a news report, a museum or a pharmacy is not;
- a disguised subject: a subject word that is only there once the disguise is taken off (no
  one writes "c-a-s-i-n-o" but to slip past a filter).
Each finding names the category, the languages of the lists that matched and the words.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Iterator

from pydantic import Field, PrivateAttr, ValidationInfo, model_validator

from proxy.message.mime import Message
from proxy.message.unmask import CONTEXT as UNMASK_CONTEXT
from proxy.policy.contentlists import BUILTIN, BUILTIN_LANGUAGES, CONTEXT, CUE, EVASION, ContentLists, Label, compile_lists
from proxy.policy.context import Context
from proxy.policy.registry import Options, check, options
from proxy.policy.verdict import Finding
from proxy.tomlfile import ConfigError

MAX_TERMS_SHOWN = 3
# How far (in characters, either side) an offer's cues are looked for around its subject:
# about two sentences; the unmasked passages carry this much context around a disguise.
OFFER_WINDOW = UNMASK_CONTEXT


@options("content")
class ContentOptions(Options):
    """`[checks.content]`: which lists apply, the policy's own terms and allow phrases, and
    categories this policy does not enforce."""

    lists: list[str] = Field(default_factory=lambda: [f"{BUILTIN}{lang}" for lang in BUILTIN_LANGUAGES])
    ignore_categories: list[str] = Field(default_factory=list)
    # Terms of this policy's own, per category ({ gambling = ["lucky spin palace"] }).
    terms: dict[str, list[str]] = Field(default_factory=dict)
    # Phrases that never count here, whatever the lists say ("casino royale night").
    allow: list[str] = Field(default_factory=list)
    # Subjects with selling cues around them count (false: only the lists' terms do).
    offers: bool = True
    _lists: ContentLists = PrivateAttr()

    @model_validator(mode="after")
    def _compile(self, info: ValidationInfo) -> "ContentOptions":
        # Compiled here, once per policy load, where the policy file's folder is known.
        base = (info.context or {}).get("policy_dir")
        try:
            self._lists = compile_lists(self.lists, base, self.terms, self.allow)
        except ConfigError as exc:
            raise ValueError(str(exc)) from None
        return self

    @property
    def compiled(self) -> ContentLists:
        return self._lists

    def prepare(self) -> None:
        # Each label's own pattern is made on a list's first hit (TermSet.prepare): about
        # 180 ms with the built-in lists, which the first message with a hit would wait for.
        self._lists.terms.prepare()
        self._lists.offers.prepare()

    @property
    def languages(self) -> tuple[str, ...]:
        return self._lists.languages


@dataclass
class _CategoryMatch:
    """What one category matched, in order: the languages of the lists, terms, offered
    subjects with the cues that make them an offer, and subjects written in disguise."""

    languages: list[str] = field(default_factory=list)
    terms: list[str] = field(default_factory=list)
    offered: list[str] = field(default_factory=list)
    cues: list[str] = field(default_factory=list)
    disguised: list[str] = field(default_factory=list)

    def add(self, language: str, into: list[str], *words: str) -> None:
        if language not in self.languages:
            self.languages.append(language)
        into.extend(w for w in words if w not in into)

    def detail(self, category: str, order: dict[str, int]) -> str:
        languages = sorted(self.languages, key=lambda lang: order.get(lang, len(order)))
        parts = [_some(self.terms)] if self.terms else []
        if self.offered:
            parts.append(f"{_some(self.offered)} offered with {_some(self.cues)}")
        if self.disguised:
            parts.append(f"{_some(self.disguised)} written in disguise")
        return f"category {category} ({'/'.join(languages)} list): {'; '.join(parts)}"


def _some(words: list[str]) -> str:
    more = f" and {len(words) - MAX_TERMS_SHOWN} more" if len(words) > MAX_TERMS_SHOWN else ""
    return ", ".join(repr(w) for w in words[:MAX_TERMS_SHOWN]) + more


def _offer(lists: ContentLists, text: str, m: re.Match[str], labels: dict[str, str]) -> tuple[list[str], set[str]]:
    """The cues that make the text around a subject's hit an offer, and the languages of
    their lists (nothing when it is no offer); `labels`: the message's cues' labels so far."""
    window = text[max(m.start() - OFFER_WINDOW, 0): m.end() + OFFER_WINDOW]
    found: dict[str, list[str]] = {CUE: [], EVASION: [], CONTEXT: []}
    languages: set[str] = set()
    for label, cue in lists.offers.scan(window, labels=labels):
        language, _, kind = label.partition("|")
        if cue not in found[kind]:
            found[kind].append(cue)
        if kind != CONTEXT:
            languages.add(language)
    if found[EVASION] or (len(found[CUE]) >= 2 and not found[CONTEXT]):
        return found[EVASION] + found[CUE], languages
    return [], set()


def _plainly_there(word: str, folded: str) -> bool:
    """Whether `word` stands as a whole word in the text as written."""
    return re.search(rf"(?<!\w){re.escape(word)}(?!\w)", folded) is not None


@check("content", rules=("content.prohibited",))
def prohibited(msg: Message, ctx: Context, opts: ContentOptions) -> Iterator[Finding]:
    lists = opts.compiled
    folded = msg.folded_text
    texts: list[tuple[str, frozenset[str] | None]] = [(folded, msg.folded_words)]
    texts.extend((passage, None) for passage in msg.unmasked_text)
    hits: dict[str, _CategoryMatch] = {}
    # The label of each distinct hit and cue, found once for this message.
    term_labels: dict[str, str] = {}
    cue_labels: dict[str, str] = {}
    subject_labels: dict[str, tuple[str, ...]] = {}
    for n, (text, words) in enumerate(texts):
        for raw, m in lists.terms.matches(text, words, term_labels):
            label = Label.parse(raw)
            if label.category in opts.ignore_categories:
                continue
            word = m.group(0)
            found = hits.get(label.category) or _CategoryMatch()
            if not label.subject:
                found.add(label.language, found.terms, word)
            elif n and not _plainly_there(word, folded):
                found.add(label.language, found.disguised, word)
            elif opts.offers:
                cues, cue_languages = _offer(lists, text, m, cue_labels)
                if not cues:
                    continue
                # The word may be a subject of several lists: name those whose cues it met.
                if word not in subject_labels:
                    subject_labels[word] = lists.terms.labels_of(word)
                mine = [Label.parse(lb).language for lb in subject_labels[word]]
                found.add(next((lang for lang in mine if lang in cue_languages), label.language), found.offered, word)
                found.cues.extend(c for c in cues if c not in found.cues)
            else:
                continue
            hits[label.category] = found
    order = {lang: i for i, lang in enumerate(lists.languages)}
    for category, hit in hits.items():
        yield Finding(
            "content.prohibited",
            hit.detail(category, order),
            f"the AUP does not allow {category} content; remove it (subject and body)",
        )
