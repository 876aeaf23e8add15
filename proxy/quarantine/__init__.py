"""Held messages: the quarantine on disk (files + SQLite index) or in PostgreSQL, its schema,
the reviewer's rendering and the notifications sent to people."""
