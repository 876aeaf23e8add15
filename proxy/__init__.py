"""sendwarden: an SMTP relay that enforces an Acceptable Use Policy on every message."""

__version__ = "0.1.0"
