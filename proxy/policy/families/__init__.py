"""What a rule family shares between its checks and the shell: its options (`[checks.FAMILY]`),
the names of the facts the shell looks up for it, and the pure functions both sides use (the
RCPT-time findings of opt-out, consent, frequency and recipient domains, the blocklist domains
to look up, complaint rates, privacy URLs). The shell imports these, never a check module:
a check can change or go without the transaction code noticing.

Importing this package registers every family's options."""

from proxy.policy.families import (  # noqa: F401
    blocklist,
    complaints,
    consent,
    frequency,
    optout,
    privacy,
    recipient,
)
