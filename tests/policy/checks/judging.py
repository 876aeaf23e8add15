"""Helpers for the rule-family tests: judge a message (bytes, text or a corpus file name)
under the default policy or a variant of it, and list the rule IDs found."""

from __future__ import annotations

import copy
import tomllib
from importlib import resources
from pathlib import Path
from typing import Any, Mapping

from proxy.message.mime import Message
from proxy.policy.engine import findings
from proxy.policy.loader import BUILTIN_DEFAULT, Policy, build, load_policy
from proxy.policy.registry import Context
from proxy.policy.verdict import Finding
from tests.conftest import FIXTURES, merge

CORPUS = FIXTURES / "corpus"
DEFAULT = load_policy(BUILTIN_DEFAULT)
_DEFAULT_DATA = tomllib.loads(resources.files("proxy.policies").joinpath("default.toml").read_text(encoding="utf-8"))


def policy(checks: Mapping[str, Any] | None = None, source: str = "policies/default.toml", **tables: Any) -> Policy:
    """The default policy with `[checks.FAMILY]` options (and other tables) merged in."""
    data = copy.deepcopy(_DEFAULT_DATA)
    extra: dict[str, Any] = dict(tables)
    if checks:
        extra["checks"] = dict(checks)
    return build(merge(data, extra), source)


def message(src: bytes | str | Path) -> Message:
    if isinstance(src, Path) or (isinstance(src, str) and src.endswith(".eml") and "\n" not in src):
        raw = (CORPUS / src).read_bytes() if not isinstance(src, Path) else src.read_bytes()
    elif isinstance(src, str):
        raw = src.encode("utf-8")
    else:
        raw = src
    if b"\r\n" not in raw:
        raw = raw.replace(b"\n", b"\r\n")
    return Message.from_bytes(raw)


def found(src: bytes | str | Path, pol: Policy | None = None, stream: str = "marketing",
          facts: Mapping[str, Any] | None = None, family: str | None = None) -> list[Finding]:
    """Every finding (optionally of one check family) for the message under the policy."""
    pol = pol or DEFAULT
    ctx = Context(stream=stream, marketing=pol.streams[stream].marketing, facts=facts)
    out = findings(pol, message(src), ctx)
    if family:
        out = [f for f in out if f.rule.startswith(_RULES_OF[family])]
    return out


def rules(src: bytes | str | Path, pol: Policy | None = None, stream: str = "marketing",
          facts: Mapping[str, Any] | None = None, family: str | None = None) -> list[str]:
    """The sorted rule IDs found."""
    return sorted(f.rule for f in found(src, pol, stream, facts, family))


# The rule-ID prefixes each check family emits (a family's checks may emit rules of others).
_RULES_OF = {
    "unsubscribe": ("unsubscribe.",),
    "privacy": ("privacy.",),
    "subject": ("subject.",),
    "content": ("content.prohibited",),
    "links": ("content.deceptive_link", "content.credential_form"),
    "attachment": ("attachment.", "lookup.failed"),
    "message": ("message.",),
    "compliance": ("compliance.",),
}


def mail(body_html: str = "", body_text: str = "", headers: Mapping[str, str] | None = None,
         subject: str = "Our winter sale", extra: str = "") -> bytes:
    """A small, otherwise compliant marketing message with the given bodies and headers."""
    h = {
        "From": "Example Shop <news@shop.example.com>",
        "To": "reader@example.org",
        "Subject": subject,
        "Date": "Sun, 29 Nov 2026 09:00:00 +0000",
        "Message-ID": "<t-1@shop.example.com>",
        "MIME-Version": "1.0",
        "List-Unsubscribe": "<https://shop.example.com/u/1>, <mailto:u@shop.example.com>",
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
    }
    for k, v in (headers or {}).items():
        if v is None:
            h.pop(k, None)
        else:
            h[k] = v
    head = "".join(f"{k}: {v}\r\n" for k, v in h.items())
    parts = []
    if body_text:
        parts.append(f"--b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{body_text}\r\n")
    if body_html:
        parts.append(f"--b\r\nContent-Type: text/html; charset=utf-8\r\n\r\n{body_html}\r\n")
    body = "".join(parts) + extra + "--b--\r\n"
    return (head + 'Content-Type: multipart/mixed; boundary="b"\r\n\r\n' + body).encode("utf-8")


FOOTER = ('<p><a href="https://shop.example.com/u/1">Unsubscribe</a> '
          '<a href="https://shop.example.com/privacy">Privacy policy</a></p>')
