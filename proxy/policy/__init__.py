"""The functional core: parse once, run every check, decide once. No I/O in here."""
