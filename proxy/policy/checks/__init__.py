"""One module per rule family; importing this package registers every built-in check."""

from proxy.policy.checks import consent, frequency, optout, sender, structure, subject, unsubscribe  # noqa: F401
