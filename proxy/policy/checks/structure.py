"""Message structure: a message the view could not see in full cannot be judged in full
(AUP: no malware, no prohibited content; content hidden below the parser's bounds must not
slip past the checks that look for it)."""

from __future__ import annotations

from typing import Iterator

from proxy.message import Message
from proxy.policy.registry import Context, Options, check
from proxy.policy.verdict import Finding


@check("message", rules=("message.unparseable",))
def parseable(msg: Message, ctx: Context, opts: Options) -> Iterator[Finding]:
    if msg.unjudgeable:
        yield Finding(
            "message.unparseable",
            f"not judged in full: {msg.unjudgeable}",
            "send the message with fewer, less deeply nested MIME parts",
        )
