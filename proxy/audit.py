"""Logging: structlog JSON lines (one audit record per message), addresses hashed by default.

Recipient and sender addresses are personal data. Unless the config says `addresses = "clear"`,
they appear in logs as a keyed BLAKE2b hash: stable within one installation (so an address can
be followed through the log by hashing it with the same key), useless to anyone without the key.
"""

from __future__ import annotations

import hashlib
import logging
import os
import secrets
import sys
from pathlib import Path
from typing import Any

import structlog

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


def configure(level: str = "info", fmt: str = "json", stream: Any = None) -> None:
    """Set up structlog once for the process: JSON lines to stdout, or pretty on a terminal."""
    stream = stream or sys.stdout
    if fmt == "auto":
        fmt = "console" if getattr(stream, "isatty", lambda: False)() else "json"
    renderer: Any = structlog.dev.ConsoleRenderer(colors=False) if fmt == "console" else structlog.processors.JSONRenderer()
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS[level]),
        # One write() per line, newline included. PrintLogger's print() writes the line and its
        # newline separately, which with unbuffered stdout (PYTHONUNBUFFERED=1, as many container
        # images set) is two system calls; the workers of `workers > 1` share stdout, and a line
        # of one landed between another's text and its newline, two records fused into one.
        # A single write of up to PIPE_BUF (4096) bytes to a pipe is never interleaved.
        logger_factory=structlog.WriteLoggerFactory(stream),
        cache_logger_on_first_use=False,
    )
    # aiosmtpd logs through the stdlib logger "mail.log": every command line at INFO (AUTH
    # arguments included) and unknown commands at WARNING, which Python's last-resort handler
    # prints to stderr as plain text. A client that pipelines credentials after a refused AUTH
    # thus had them (upper-cased base64) written to the log. sendwarden logs what matters itself,
    # as JSON; from aiosmtpd only errors get through.
    logging.getLogger("mail.log").setLevel(logging.ERROR)


class AddressMasker:
    """Turns addresses into what the log may hold."""

    def __init__(self, mode: str, key: bytes) -> None:
        self.clear = mode == "clear"
        self.key = key

    def __call__(self, address: str) -> str:
        if self.clear or not address or address == "<>":
            return address
        digest = hashlib.blake2b(address.lower().encode("utf-8", "surrogateescape"), key=self.key, digest_size=8)
        return "h:" + digest.hexdigest()

    @classmethod
    def for_state_dir(cls, mode: str, state_dir: Path) -> "AddressMasker":
        """Load the installation's hashing key, creating it (0600) on first use."""
        path = state_dir / "audit.key"
        if mode == "clear":
            return cls(mode, b"")
        try:
            key = path.read_bytes()
        except FileNotFoundError:
            state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            key = secrets.token_bytes(32)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(key)
        return cls(mode, key[:64])
