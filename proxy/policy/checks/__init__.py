"""One module per rule family; importing this package registers every built-in check."""

from proxy.policy.checks import (  # noqa: F401
    attachments,
    blocklist,
    complaints,
    compliance,
    consent,
    content,
    frequency,
    links,
    optout,
    privacy,
    recipient,
    sender,
    structure,
    subject,
    unsubscribe,
)
