"""One module per rule family; importing this package registers every built-in check."""

from proxy.policy.checks import (  # noqa: F401
    attachments,
    blocklist,
    complaints,
    consent,
    content,
    frequency,
    hygiene,
    links,
    optout,
    privacy,
    recipient,
    sender,
    subject,
    unsubscribe,
)
