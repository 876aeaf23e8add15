"""Subject line: present, and (with issue 3) not deceptive about the content."""

from __future__ import annotations

from typing import Iterator

from proxy.message import Message
from proxy.policy.registry import Context, Options, check
from proxy.policy.verdict import Finding


@check("subject", rules=("subject.missing",))
def present(msg: Message, ctx: Context, opts: Options) -> Iterator[Finding]:
    if not msg.subject.strip():
        yield Finding("subject.missing", "the Subject header is missing or empty", "give the message a subject that says what it is about")
