"""DKIM key material: loading a private key file once, the public record to publish, and making
new key pairs (`sendwarden dkim keygen`).

Files are PEM (PKCS#8 or PKCS#1), RSA or Ed25519, as OpenSSL, OpenDKIM and `sendwarden dkim
keygen` write them; dkimpy's own Ed25519 format (the base64 seed that `dknewkey` writes) is read
too. A key that others may read, is encrypted, too short or of another type is refused with a
message that names the file.
"""

from __future__ import annotations

import base64
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

KeyType = Literal["rsa", "ed25519"]
MIN_RSA_BITS = 1024  # RFC 8301: verifiers must not accept less; 2048 is what keygen makes

__all__ = ["KeyFileError", "KeyType", "SigningKey", "generate_key", "load_key", "public_record", "write_key"]


class KeyFileError(Exception):
    """A key file that cannot be used; the message names the file and says why."""


@dataclass(frozen=True)
class SigningKey:
    """One loaded signing key and where it signs."""

    domain: str  # A-label, lower case
    selector: str
    type: KeyType
    private: bytes = field(repr=False)  # the form dkimpy takes: PKCS#1 PEM (RSA), base64 seed (Ed25519)
    public: str  # the p= value: base64 SubjectPublicKeyInfo (RSA) or raw key (Ed25519, RFC 8463)
    bits: int
    path: str = ""
    rsa: rsa.RSAPrivateKey | None = field(default=None, repr=False, compare=False)

    @property
    def algorithm(self) -> bytes:
        return b"rsa-sha256" if self.type == "rsa" else b"ed25519-sha256"

    @property
    def record_name(self) -> str:
        return f"{self.selector}._domainkey.{self.domain}"

    @property
    def record(self) -> str:
        return public_record(self.type, self.public)


def public_record(key_type: KeyType, public_b64: str) -> str:
    """The TXT record text to publish at SELECTOR._domainkey.DOMAIN."""
    return f"v=DKIM1; k={key_type}; p={public_b64}"


def _from_private(key: object, path: str, domain: str, selector: str) -> SigningKey:
    if isinstance(key, rsa.RSAPrivateKey):
        if key.key_size < MIN_RSA_BITS:
            raise KeyFileError(f"{path}: RSA key of {key.key_size} bits; at least {MIN_RSA_BITS} (2048 recommended)")
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                serialization.NoEncryption())
        spki = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        return SigningKey(domain, selector, "rsa", pem, base64.b64encode(spki).decode(), key.key_size, path, key)
    if isinstance(key, ed25519.Ed25519PrivateKey):
        seed = key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption())
        pub = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return SigningKey(domain, selector, "ed25519", base64.b64encode(seed), base64.b64encode(pub).decode(), 256, path)
    raise KeyFileError(f"{path}: a {type(key).__name__.lstrip('_')}; DKIM signs with RSA or Ed25519 keys")


def load_key(path: str | Path, domain: str = "", selector: str = "") -> SigningKey:
    """Read and check one private key file."""
    p = str(path)
    try:
        st = os.stat(p)
        data = Path(p).read_bytes()
    except OSError as exc:
        raise KeyFileError(f"{p}: cannot read: {exc.strerror or exc}") from None
    if st.st_mode & stat.S_IROTH:
        raise KeyFileError(f"{p}: private key readable by everybody (mode {stat.S_IMODE(st.st_mode):04o}); chmod 600 it")
    if b"-----BEGIN" in data:
        try:
            key = serialization.load_pem_private_key(data, password=None)
        except TypeError:
            raise KeyFileError(f"{p}: encrypted private keys are not supported") from None
        except (ValueError, Exception) as exc:  # cryptography raises several types for bad PEM
            raise KeyFileError(f"{p}: not a usable PEM private key ({exc})") from None
        return _from_private(key, p, domain, selector)
    try:  # dkimpy's dknewkey writes an Ed25519 key as the base64 of its 32-byte seed
        seed = base64.b64decode(data.strip(), validate=True)
    except ValueError:
        seed = b""
    if len(seed) == 32:
        return _from_private(ed25519.Ed25519PrivateKey.from_private_bytes(seed), p, domain, selector)
    raise KeyFileError(f"{p}: not a PEM private key")


def generate_key(key_type: KeyType, bits: int = 2048) -> rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey:
    if key_type == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=bits)
    return ed25519.Ed25519PrivateKey.generate()


def write_key(key: rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey, path: Path) -> None:
    """Write the private key (PKCS#8 PEM, mode 0600, created so: never readable by others even
    for a moment) and its public key next to it (PATH with .pub, 0644)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(pem)
        fh.flush()
        os.fsync(fh.fileno())
    pub = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    path.with_suffix(".pub").write_bytes(pub)
