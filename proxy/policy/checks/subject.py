"""Subject line: present, and not deceptive about the content (AUP).

A reply or forward prefix ("RE:", "AW:", "FWD:", "回复：" ...) on a message that replies to
nothing (no In-Reply-To, no References) pretends to continue a conversation the recipient
never had: the classic trick to get a mailing opened. Subjects are RFC 2047-decoded first and
invisible characters removed, so neither encoding nor a zero-width space hides a prefix.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from functools import lru_cache
from typing import ClassVar

import regex
from pydantic import Field, PrivateAttr, model_validator

from proxy.message.mime import Message
from proxy.message.opsregex import OpsPattern, PatternError
from proxy.policy.context import Context
from proxy.policy.registry import Options, check, options
from proxy.policy.verdict import Finding

# Characters that render as nothing, or reorder text, which a sender could slip into a subject.
_INVISIBLE = re.compile(r"[\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2064\u206a-\u206f\ufeff]")

# Reply and forward prefixes of mail clients in many languages (Wikipedia's "List of email
# subject abbreviations" and clients' localisations).
DEFAULT_PREFIXES = [
    "re", "fw", "fwd", "fwdg",  # English and the international default
    "aw", "wg", "wtrlt",  # German: Antwort, Weitergeleitet
    "antw", "doorst", "dnst",  # Dutch: Antwoord, Doorsturen
    "tr", "rép",  # French: Transféré, Réponse
    "rv", "rpta", "resp",  # Spanish: Reenviado, Respuesta
    "res", "enc", "encam",  # Portuguese: Resposta, Encaminhado
    "r", "i", "rif", "inoltro",  # Italian: Risposta, Inoltro
    "sv", "vs", "vb", "vl", "fs",  # Scandinavian, Finnish, Icelandic
    "odp", "pd",  # Polish, Czech: Odpowiedź / Odpověď, Przekazanie dalej
    "vá", "továbbítás", "továbbítva",  # Hungarian
    "ynt", "ilt", "i̇lt",  # Turkish
    "atb", "pārs", "ats", "prs",  # Latvian, Lithuanian
    "odg", "posr", "tr",  # Slovenian, Croatian
    "отв", "пер", "перес", "fw",  # Russian
    "απ", "σχετ", "πρθ",  # Greek
    "השב", "הועבר",  # Hebrew
    "رد", "إعادة توجيه",  # Arabic
    "回复", "回覆", "答复", "答覆", "转发", "轉寄", "转寄", "轉發",  # Chinese
    "返信", "転送", "re", "fw",  # Japanese
    "회신", "전달", "답장",  # Korean
]


def _prefix_regex(prefixes: list[str]) -> re.Pattern[str]:
    words = sorted({p.strip().lower() for p in prefixes if p.strip()}, key=len, reverse=True)
    alternation = "|".join(re.escape(w) for w in words) or r"(?!x)x"
    # An optional list tag ("[news]") first; then a prefix with an optional counter (Re[2],
    # Re(3), Re^2), and a colon (ASCII or full-width).
    return re.compile(
        rf"^\s*(?:\[[^\]]{{0,60}}\]\s*)?((?:{alternation})\s*(?:\[\d+\]|\(\d+\)|\^\d+)?)\s*[:：]",
        re.IGNORECASE,
    )

@options("subject")
class SubjectOptions(Options):
    """`[checks.subject]`."""

    # Reply/forward prefixes that need In-Reply-To or References to be honest.
    reply_prefixes: list[str] = Field(default_factory=lambda: list(DEFAULT_PREFIXES))
    # Further deceptive patterns (Python regular expressions, case-insensitive), matched
    # against the decoded subject; e.g. fake urgency about an account the recipient has.
    patterns: list[str] = Field(default_factory=lambda: [
        r"\byour (?:account|mailbox|password) (?:has been|is|was|will be) (?:suspended|locked|closed|deactivated|disabled|compromised)\b",
        r"\b(?:final|last) (?:notice|warning)\b.*\b(?:account|payment|invoice)\b",
        r"\bje (?:account|rekening|wachtwoord) (?:is|wordt) (?:geblokkeerd|opgeschort|gesloten)\b",
        r"\byou(?:'ve| have) (?:won|been selected)\b",
        r"\bu heeft gewonnen\b|\bje hebt gewonnen\b",
    ])
    _prefix: re.Pattern[str] = PrivateAttr()
    # What the patterns found in a subject (the text matched, or None), remembered for the
    # last MAX_SUBJECTS subjects: a campaign's messages share their subject.
    _found: Callable[[str], str | None] | None = PrivateAttr(default=None)
    MAX_SUBJECTS: ClassVar[int] = 4096

    @model_validator(mode="after")
    def _compile(self) -> "SubjectOptions":
        self._prefix = _prefix_regex(self.reply_prefixes)
        for i, p in enumerate(self.patterns):
            try:
                OpsPattern(p, regex.IGNORECASE)
            except PatternError as exc:
                raise ValueError(f"patterns[{i}]: {p!r}: {exc}") from None
        if self.patterns:
            search = OpsPattern("|".join(f"(?:{p})" for p in self.patterns), regex.IGNORECASE, probe=False).search

            def found(subject: str) -> str | None:
                m = search(subject)  # a PatternTimeout is raised, never remembered
                return m.group(0) if m else None

            self._found = lru_cache(maxsize=self.MAX_SUBJECTS)(found)  # thread-safe, unlike a dict read twice
        return self

    def deceptive_match(self, subject: str) -> str | None:
        """The text of `subject` that a deceptive pattern matches, or None."""
        return None if self._found is None else self._found(subject)


def visible_subject(msg: Message) -> str:
    return _INVISIBLE.sub("", msg.subject)


@check("subject", rules=("subject.missing",))
def present(msg: Message, ctx: Context, opts: SubjectOptions) -> Iterator[Finding]:
    if not visible_subject(msg).strip():
        yield Finding("subject.missing", "the Subject header is missing or empty", "give the message a subject that says what it is about")


@check("subject", rules=("subject.deceptive",))
def deceptive(msg: Message, ctx: Context, opts: SubjectOptions) -> Iterator[Finding]:
    subject = visible_subject(msg)
    if not subject:
        return
    m = opts._prefix.match(subject)
    if m and not (msg.count("In-Reply-To") or msg.count("References")):
        yield Finding(
            "subject.deceptive",
            f"subject starts with the reply/forward prefix {m.group(1).strip()!r} but the message replies to nothing (no In-Reply-To or References)",
            "remove the fake reply/forward prefix from the subject",
        )
    matched = opts.deceptive_match(subject)
    if matched is not None:
        yield Finding(
            "subject.deceptive",
            f"subject matches a deceptive pattern: {matched[:80]!r}",
            "write a subject that honestly says what the message is about",
        )
