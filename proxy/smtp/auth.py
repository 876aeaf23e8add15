"""SMTP AUTH credentials: a TOML file of argon2id password hashes, never plaintext.

    [users]
    billing-app = "$argon2id$v=19$m=65536,t=3,p=4$..."

`sendwarden passwd USER` prints a line for this file. Verification is deliberately slow; the
SMTP layer runs it in a thread so the event loop keeps serving other clients.
"""

from __future__ import annotations

from pathlib import Path

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from pydantic import BaseModel, ConfigDict

from proxy.tomlfile import ConfigError, read_toml, validate

_HASHER = PasswordHasher()


class _CredentialsFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)
    users: dict[str, str] = {}


def hash_password(password: str) -> str:
    return _HASHER.hash(password)


class Credentials:
    def __init__(self, users: dict[str, str]) -> None:
        self.users = users
        # Verify unknown users against a real hash too, so timing does not reveal who exists.
        self._decoy = _HASHER.hash("decoy password, never valid")

    @classmethod
    def load(cls, path: Path) -> "Credentials":
        data = validate(_CredentialsFile, read_toml(path), path)
        for user, h in data.users.items():
            if not h.startswith("$argon2"):
                raise ConfigError(f"{path}: users.{user}: not an argon2 hash (use `sendwarden passwd {user}`)")
        return cls(dict(data.users))

    def verify(self, user: str, password: str) -> bool:
        stored = self.users.get(user)
        try:
            _HASHER.verify(stored or self._decoy, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False
        return stored is not None
