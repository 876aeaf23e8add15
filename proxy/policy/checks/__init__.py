"""One module per rule family; importing this package registers every built-in check."""

from proxy.policy.checks import (  # noqa: F401
    attachments,
    content,
    hygiene,
    links,
    privacy,
    sender,
    subject,
    unsubscribe,
)
