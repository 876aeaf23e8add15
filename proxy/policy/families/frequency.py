"""Frequency (AUP: respect the recipient's frequency preferences).

Caps per scope and window (e.g. 3 per 7 days per brand); a recipient's own override replaces
the policy's cap for the same scope. Sends are counted by the shell only once the upstream
accepted a message. Checked at RCPT time; whether a capped recipient gets 4xx (try later) or
5xx is the policy's choice.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from proxy.policy.registry import Options, options
from proxy.policy.verdict import Finding
from proxy.policy.recipientstate import GLOBAL, RecipientState, Scope
from proxy.tomlfile import parse_duration

def window(text: str) -> float:
    """A cap's window ('24h', '7d', '2w', as every duration in sendwarden's files): more than
    nothing."""
    seconds = parse_duration(text)
    if seconds <= 0:
        raise ValueError(f"{text!r}: a frequency window must be longer than nothing, such as 24h, 7d or 2w")
    return seconds


class Cap(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)
    scope: Literal["global", "brand", "stream"] = "brand"
    max: int = Field(ge=0)
    per: str

    @field_validator("per")
    @classmethod
    def _per(cls, v: str) -> str:
        window(v)
        return v

    @property
    def seconds(self) -> float:
        return window(self.per)


@options("frequency")
class FrequencyOptions(Options):
    caps: list[Cap] = Field(default_factory=list)
    # Streams the caps apply to; empty: every marketing stream.
    streams: list[str] = Field(default_factory=list)
    # Honour per-recipient overrides (`sendwarden frequency set`).
    overrides: bool = True
    # A capped recipient: "temporary" answers 450 4.7.1 (the app may retry later), "permanent"
    # 550 5.7.1 (the app drops the recipient from this send).
    reply: Literal["temporary", "permanent"] = "temporary"

    def validate_policy(self, streams: set[str]) -> list[str]:
        return [f"streams: no stream named {s!r}" for s in self.streams if s not in streams]


def applies(opts: FrequencyOptions, stream: str, marketing: bool) -> bool:
    if not opts.enabled or not (opts.caps or opts.overrides):
        return False
    return stream in opts.streams if opts.streams else marketing


def cap_scope(kind: str, brand: str, stream: str) -> Scope | None:
    if kind == "global":
        return GLOBAL
    value = brand if kind == "brand" else stream
    return Scope(kind, value) if value else None


def windows(opts: FrequencyOptions, brand: str, stream: str) -> tuple[tuple[Scope, float], ...]:
    out = []
    for cap in opts.caps:
        scope = cap_scope(cap.scope, brand, stream)
        if scope is not None:
            out.append((scope, cap.seconds))
    return tuple(out)


def _span(seconds: float) -> str:
    for unit, size in (("w", 7 * 86400), ("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


def findings(state: RecipientState, address: str, opts: FrequencyOptions, brand: str, stream: str) -> list[Finding]:
    caps: dict[tuple[Scope, float], tuple[int, str]] = {}
    for cap in opts.caps:
        scope = cap_scope(cap.scope, brand, stream)
        if scope is not None:
            key = (scope, cap.seconds)
            caps[key] = (min(cap.max, caps.get(key, (cap.max, ""))[0]), "policy")
    if opts.overrides:
        for o in state.overrides:
            if o.scope.kind == "global" or o.scope in (Scope("brand", brand), Scope("stream", stream)):
                # The recipient's own preference replaces the policy's caps for that scope.
                caps = {k: v for k, v in caps.items() if k[0] != o.scope}
                caps[(o.scope, o.window)] = (o.max_count, "recipient's preference")
    out = []
    for (scope, seconds), (limit, origin) in caps.items():
        count = state.sends.get((scope, seconds), 0)
        if count >= limit:
            out.append(Finding(
                "frequency.exceeded",
                f"{address}: {count} messages in the last {_span(seconds)} for {scope}, cap {limit} ({origin})",
                "send to this recipient less often; try again after the window",
            ))
    return out
