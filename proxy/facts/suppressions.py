"""The after-DATA suppression lookup, as the `suppressions_after_data` fact of the optout check.

At RCPT the relay only knows the envelope; the message's headers can name a brand or a list
(`optout.late_scopes`) whose suppressions were not asked for then. This provider asks the store
for those, once per message, for every recipient at once.
"""

from __future__ import annotations

from typing import Awaitable

from proxy.facts.sources import FactSources
from proxy.message.mime import Message
from proxy.policy.families import optout
from proxy.policy.context import Context
from proxy.policy.recipientstate import Suppression

__all__ = ["suppressions_after_data"]


def suppressions_after_data(sources: FactSources, message: Message, ctx: Context,
                            opts: optout.OptoutOptions) -> dict[str, list[Suppression]] | None | Awaitable[dict[str, list[Suppression]]]:
    """Suppressions in the scopes only the headers revealed (see optout.late_scopes): None at
    once when there are none, else the store lookup to await."""
    scopes = optout.late_scopes(opts, message, ctx)
    if not scopes or not ctx.rcpts:
        return None
    return sources.store.suppressions_for(list(ctx.rcpts), scopes)
