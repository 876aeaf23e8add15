"""Every fact provider of the relay, in one explicit list: what `gather` runs before judging.

A new provider is a function `(sources, message, context, family options) -> fact or awaitable`
in a module of this package, and one line here naming its fact and the check family that reads
it (it runs only when that family is enabled for the stream).
"""

from __future__ import annotations

from proxy.facts.blocklist import blocklist_fact
from proxy.facts.clamav import scan_fact
from proxy.facts.dkim import dkim_fact
from proxy.facts.reputation import complaint_rate_fact, privacy_dead_fact
from proxy.facts.sources import Provider
from proxy.facts.suppressions import suppressions_after_data
from proxy.policy.families import blocklist, complaints
from proxy.policy.families.optout import LATE_FACT
from proxy.policy.families.privacy import DEAD_FACT

__all__ = ["PROVIDERS"]

PROVIDERS: tuple[Provider, ...] = (
    Provider("dkim", "sender", dkim_fact),
    Provider("clamav", "attachment", scan_fact),
    Provider(LATE_FACT, "optout", suppressions_after_data),
    Provider(blocklist.FACT, "blocklist", blocklist_fact),
    Provider(DEAD_FACT, "privacy", privacy_dead_fact),
    Provider(complaints.FACT, "complaint_rate", complaint_rate_fact),
)
