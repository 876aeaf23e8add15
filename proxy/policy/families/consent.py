"""Consent (AUP: affirmative, recorded opt-in; it covers only the brand/use it was given for).

Checked per recipient at RCPT time by the shell for the streams listed in the policy; the
pure function here turns the store's answer into findings.
"""

from __future__ import annotations

import string
import time

from pydantic import Field, field_validator

from proxy.policy.registry import Options, options
from proxy.policy.verdict import Finding
from proxy.policy.recipientstate import RecipientState


@options("consent")
class ConsentOptions(Options):
    # Streams whose recipients need a consent record. Empty: consent is not checked (the
    # baseline, since an empty store would refuse everyone); list your marketing streams.
    streams: list[str] = Field(default_factory=list)
    # The consent scope a stream needs: "{brand}" (the transaction's brand, see
    # [checks.optout]), "{brand}/newsletter" for a brand and use, "{stream}", or a fixed name.
    scope: str = "{brand}"

    @field_validator("scope")
    @classmethod
    def _scope(cls, v: str) -> str:
        try:
            names = {f for _, f, _, _ in string.Formatter().parse(v) if f is not None}
        except ValueError as exc:
            raise ValueError(f"bad template {v!r}: {exc}") from None
        if not names <= {"brand", "stream"}:
            raise ValueError(f"{v!r}: only {{brand}} and {{stream}} may appear")
        if not v.strip():
            raise ValueError("the scope may not be empty")
        return v

    def validate_policy(self, streams: set[str]) -> list[str]:
        return [f"streams: no stream named {s!r}" for s in self.streams if s not in streams]


def required_scope(opts: ConsentOptions, stream: str, brand: str) -> str | None:
    """The consent scope the stream needs, or None when it needs none."""
    if not opts.enabled or stream not in opts.streams:
        return None
    return opts.scope.format(brand=brand, stream=stream)


def findings(state: RecipientState, address: str, scope: str) -> list[Finding]:
    c = state.consent
    if c is not None and c.status == "granted":
        return []
    if c is not None:
        when = time.strftime("%Y-%m-%d", time.gmtime(c.consented_at))
        return [Finding("consent.missing", f"{address}: consent for {scope} was withdrawn on {when} ({c.source})",
                        "stop sending to this recipient unless they opt in again")]
    if state.consent_scopes:
        given = ", ".join(state.consent_scopes[:5])
        return [Finding("consent.wrong_scope", f"{address}: consent was given for {given}, not for {scope}",
                        "consent covers only the brand and use it was given for; ask for consent for this one")]
    return [Finding("consent.missing", f"{address}: no consent record for {scope}",
                    "record the recipient's opt-in (time, source, proof) with `sendwarden consent add` or import")]
