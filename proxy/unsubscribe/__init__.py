"""Closing the unsubscribe loop inside sendwarden: signed per-recipient tokens, the headers
that carry them, the RFC 8058 one-click HTTP endpoint, and the mail sendwarden takes for itself
(mailto unsubscribes and complaint reports)."""
