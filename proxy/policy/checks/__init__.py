"""One module per rule family; importing this package registers every built-in check
(and, through proxy.policy.families, every family's options)."""

import proxy.policy.families  # noqa: F401

from proxy.policy.checks import (  # noqa: F401
    attachments,
    blocklist,
    complaints,
    compliance,
    content,
    links,
    optout,
    privacy,
    sender,
    structure,
    subject,
    unsubscribe,
)
