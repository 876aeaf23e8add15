"""Signed unsubscribe tokens: who (the recipient address), from what (the scope) and until when.

A token is self-contained, so the endpoint needs no lookup to trust it, and any node of a fleet
that shares the key file can honour it. Layout before encoding:

    version (1 byte) | expiry (4 bytes, Unix seconds) | scope (UTF-8) | 0x00 | address (UTF-8) | MAC

The MAC is HMAC-SHA256 over a fixed label and the payload, truncated to 96 bits. The whole is
base32, lower case, no padding: safe in a URL path and in an address's local part, and immune
to the case folding some MTAs apply to local parts.

The key file holds one hex key per line: the first signs, all verify (rotate by adding a new
first line and dropping the old one after the token lifetime).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import secrets
import struct
from dataclasses import dataclass
from pathlib import Path

from proxy.store.base import Scope

VERSION = 1
MAC_BYTES = 12
_LABEL = b"sendwarden-unsubscribe-v1\x00"
_HEAD = struct.Struct(">BI")
MAX_TOKEN = 1024


class TokenError(Exception):
    """A token that must not be honoured. `kind` is malformed, forged or expired."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


@dataclass(frozen=True, slots=True)
class Token:
    address: str
    scope: Scope
    expires: int


class TokenKeys:
    """The HMAC keys: issue with the first, verify with any."""

    def __init__(self, keys: list[bytes]) -> None:
        if not keys or any(len(k) < 16 for k in keys):
            raise ValueError("an unsubscribe key must have at least 16 bytes")
        self.keys = keys

    @classmethod
    def load(cls, path: Path, create: bool = True) -> "TokenKeys":
        """Read the key file; create it with a fresh random key (0600) when missing."""
        try:
            text = path.read_text(encoding="ascii")
        except FileNotFoundError:
            if not create:
                raise
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            text = secrets.token_hex(32) + "\n"
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:  # another process made it first: use theirs
                return cls.load(path, create=False)
            with os.fdopen(fd, "w", encoding="ascii") as fh:
                fh.write(text)
                fh.flush()
                os.fsync(fh.fileno())
        keys = []
        for number, line in enumerate(text.splitlines(), 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            try:
                keys.append(bytes.fromhex(line))
            except ValueError:
                raise ValueError(f"{path}:{number}: not a hex key") from None
        return cls(keys)

    def _mac(self, key: bytes, payload: bytes) -> bytes:
        return hmac.new(key, _LABEL + payload, hashlib.sha256).digest()[:MAC_BYTES]

    def issue(self, address: str, scope: Scope, expires: int) -> str:
        payload = _HEAD.pack(VERSION, expires) + str(scope).encode() + b"\x00" + address.encode("utf-8")
        raw = payload + self._mac(self.keys[0], payload)
        return base64.b32encode(raw).decode("ascii").rstrip("=").lower()

    def verify(self, token: str, now: float) -> Token:
        """The token's content, or TokenError (checked in that order: form, MAC, expiry)."""
        text = token.strip().upper()
        if not text or len(text) > MAX_TOKEN or not text.isalnum():
            raise TokenError("malformed", "not an unsubscribe token")
        try:
            raw = base64.b32decode(text + "=" * (-len(text) % 8))
        except (ValueError, binascii.Error):
            raise TokenError("malformed", "not an unsubscribe token") from None
        if len(raw) < _HEAD.size + 2 + MAC_BYTES:
            raise TokenError("malformed", "unsubscribe token too short")
        payload, mac = raw[:-MAC_BYTES], raw[-MAC_BYTES:]
        if not any(hmac.compare_digest(mac, self._mac(k, payload)) for k in self.keys):
            raise TokenError("forged", "unsubscribe token signature does not match")
        version, expires = _HEAD.unpack_from(payload)
        scope_bytes, sep, address_bytes = payload[_HEAD.size:].partition(b"\x00")
        if version != VERSION or not sep:
            raise TokenError("malformed", "unknown unsubscribe token version")
        try:
            scope = Scope.parse(scope_bytes.decode())
            address = address_bytes.decode("utf-8")
        except ValueError:
            raise TokenError("malformed", "unsubscribe token content unreadable") from None
        if now > expires:
            raise TokenError("expired", "unsubscribe token expired")
        return Token(address, scope, expires)
