"""Message structure: RFC 5322 header counts, and a message the view cannot judge.

`message.header_count`: From, Date, Message-ID and Subject each exactly once (RFC 5322 3.6
requires From and Date, allows at most one of each of the four; the 2024 bulk-sender rules
require RFC 5322 conformance and a Message-ID).
`message.unparseable`: what the parsed view could not read (broken MIME structure, absurd
nesting, bodies past the size bounds): a check that sees only part of a message must not
pass it as if it had seen all of it.
"""

from __future__ import annotations

from typing import Iterator

from pydantic import Field

from proxy.message.mime import Message
from proxy.policy.context import Context
from proxy.policy.registry import Options, check, options
from proxy.policy.verdict import Finding


@options("message")
class MessageOptions(Options):
    """`[checks.message]`."""

    # Headers that must appear exactly once.
    exactly_once: list[str] = Field(default_factory=lambda: ["From", "Date", "Message-ID", "Subject"])


@check("message", rules=("message.header_count",))
def header_count(msg: Message, ctx: Context, opts: MessageOptions) -> Iterator[Finding]:
    wrong = [(name, msg.count(name)) for name in opts.exactly_once if msg.count(name) != 1]
    if wrong:
        yield Finding(
            "message.header_count",
            ", ".join(f"{n} {name} headers" for name, n in wrong),
            "send exactly one of each of " + ", ".join(opts.exactly_once) + " (RFC 5322 3.6)",
        )


@check("message", rules=("message.unparseable",))
def unparseable(msg: Message, ctx: Context, opts: MessageOptions) -> Iterator[Finding]:
    if msg.problems:
        yield Finding(
            "message.unparseable",
            "; ".join(msg.problems)[:500],
            "send well-formed MIME (RFC 2045/2046) within the size bounds",
        )
