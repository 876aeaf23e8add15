"""DKIM signing with dkimpy, on the way out.

Signing (`Signer`) is the last change made to a message: the relay prepends its own headers,
then the DKIM-Signature goes on top; the message itself is never re-serialised. Keys are loaded
once, at start. A message is signed with every key configured for its From domain, or for the
nearest parent domain within the same organisational domain (relaxed DMARC alignment), with
relaxed/relaxed canonicalisation, covering the configured header fields and oversigning those
that nobody may add later. Verifying what arrives already signed is a fact lookup
(proxy/facts/dkim.py); it parses messages with the same `FastDKIM`.
"""

from __future__ import annotations

import asyncio
import base64
import email.utils
import hashlib
import logging
import re
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, Sequence

import dkim
import structlog
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

from proxy.message.domains import org_domain, to_alabel
from proxy.outbound.dkimkeys import KeyFileError, SigningKey, load_key
from proxy.tomlfile import ConfigError

if TYPE_CHECKING:
    from proxy.config import Config

log = structlog.get_logger("sendwarden.dkim")
quiet = logging.getLogger("sendwarden.dkimpy")  # dkimpy logs every verification failure as an error
quiet.addHandler(logging.NullHandler())
quiet.propagate = False
# Above this size the CPU part of signing or verifying (canonicalising and hashing the body)
# runs in a thread, so that one huge message does not stall every other session.
THREAD_ABOVE = 256 * 1024

__all__ = ["FastDKIM", "Signer", "THREAD_ABOVE", "quiet", "relaxed_body_hash", "signature_head"]


class FastDKIM(dkim.DKIM):  # type: ignore[misc]
    """dkimpy's DKIM with two speed-ups that change no result (a test pins signatures byte for
    byte to dkimpy's own signer):

    - the RSA private-key operation runs in OpenSSL (`cryptography`) instead of dkimpy's
      pure-Python arithmetic (about 13 ms a signature with a 2048-bit key, against 1);
    - dkimpy splits the whole message into lines with a regex to find the headers; the relay's
      messages have CRLF line ends only, so only the header block is parsed (by dkimpy) and
      the body is taken as it is: 1.5 ms less for a 30 KB message.
    Header selection, canonicalisation, hashing and folding stay dkimpy's."""

    openssl_key: rsa.RSAPrivateKey | None = None
    # bh= computed by the caller (relaxed_body_hash) over a body this object never holds.
    body_hash: bytes | None = None

    def set_message(self, message: bytes | None) -> None:
        end = message.find(b"\r\n\r\n") if message else -1
        if end <= 0 or message is None or message.count(b"\n") != message.count(b"\r\n"):
            super().set_message(message)  # LF line ends, no body, ...: dkimpy's own way
            return
        super().set_message(message[: end + 4])
        self.body = message[end + 4:]

    def gen_header(self, fields: Any, include_headers: Any, canon_policy: Any, header_name: Any, pk: Any,
                   standardize: bool = False) -> Any:
        if self.body_hash is not None:  # dkimpy hashed an empty body: put the real hash in
            fields[:] = [(b"bh", self.body_hash) if f[0] == b"bh" else f for f in fields]
        key = self.openssl_key
        if self.signature_algorithm != b"rsa-sha256" or key is None:  # type: ignore[has-type]
            return super().gen_header(fields, include_headers, canon_policy, header_name, pk, standardize)

        def sign(digest: bytes) -> SimpleNamespace:
            return SimpleNamespace(signature=key.sign(digest, padding.PKCS1v15(), Prehashed(hashes.SHA256())))

        # dkimpy's Ed25519 branch signs the SHA-256 header hash through `pk.sign(digest)`: route
        # the RSA key through it (a= is already in the fields; the hash is the same SHA-256).
        self.signature_algorithm = b"ed25519-sha256"
        try:
            return super().gen_header(fields, include_headers, canon_policy, header_name,
                                      SimpleNamespace(sign=sign), standardize)
        finally:
            self.signature_algorithm = b"rsa-sha256"


class _BareLineEnd(Exception):
    """The body has a bare CR or LF: it is signed the way dkimpy splits such a message."""


class Signer:
    """The signing keys of the service, loaded once, and the header list they cover."""

    def __init__(self, keys: Sequence[SigningKey], headers: Sequence[str], oversign: Sequence[str]) -> None:
        self.by_domain: dict[str, list[SigningKey]] = {}
        for k in keys:
            self.by_domain.setdefault(k.domain, []).append(k)
        self.headers = tuple(h.lower() for h in headers)
        self.oversign = frozenset(h.lower() for h in oversign)

    @classmethod
    def from_config(cls, config: "Config") -> "Signer":
        cfg = config.file.dkim
        keys = []
        if cfg.sign:
            for i, k in enumerate(cfg.keys):
                try:
                    keys.append(load_key(config.path(k.key), k.domain, k.selector))
                except KeyFileError as exc:
                    raise ConfigError(f"{config.source}: dkim.keys[{i}].key: {exc}") from None
        return cls(keys, cfg.headers, cfg.oversign)

    def keys_for(self, from_domain: str) -> list[SigningKey]:
        """Keys of the From domain, else of its nearest parent inside the same organisational
        domain (a key for example.com signs news.example.com: aligned under relaxed DMARC)."""
        d = to_alabel(from_domain)
        if d is None:
            return []
        org = org_domain(d)
        while True:
            if d in self.by_domain:
                return self.by_domain[d]
            if d == org or "." not in d:
                return []
            d = d.split(".", 1)[1]

    def include_headers(self, present: Sequence[bytes]) -> list[bytes]:
        counts: dict[str, int] = {}
        for name in present:
            n = name.decode("ascii", "replace").lower()
            counts[n] = counts.get(n, 0) + 1
        out = []
        for h in self.headers:
            times = counts.get(h, 0) + (1 if h in self.oversign else 0)
            out.extend([h.encode()] * times)
        return out

    def sign(self, data: bytes) -> tuple[bytes, str]:
        """`data` with DKIM-Signature header(s) prepended, and a note for the audit log. Never
        raises: a message that cannot be signed goes out unsigned, and the note says why."""
        signature, note = self.signature(b"", data)
        return signature + data, note

    def signature(self, head: bytes, content: bytes) -> tuple[bytes, str]:
        """The DKIM-Signature header(s) for `head + content` (b"" when unsigned), and a note for
        the audit log; never raises. The two are never joined when the body can be hashed as
        it lies in `content` (CRLF lines, the usual case): dkimpy gets the header block only,
        and the body hash is computed window by window (relaxed_body_hash), so that signing a
        24 MB message adds no copy of it (dkimpy's own canonicalisation made several)."""
        if not self.by_domain:
            return b"", ""
        if head and content.startswith(b"\r\n"):
            headers, body_start = head + b"\r\n", 2  # no header of its own: the body starts here
        else:
            end = content.find(b"\r\n\r\n")
            headers, body_start = (head + content[: end + 4], end + 4) if end > 0 else (b"", -1)
        if body_start >= 0 and headers.count(b"\n") == headers.count(b"\r\n"):
            try:
                return self._signature(headers, (content, body_start))
            except _BareLineEnd:
                pass
        return self._signature(head + content, None)  # dkimpy's own way, over the whole message

    def _signature(self, data: bytes, body: tuple[bytes, int] | None) -> tuple[bytes, str]:
        """Sign `data`; or, with `body` (bytes, start), sign the header block `data` with the
        body hashed where it lies (raises _BareLineEnd when it cannot be)."""
        digests: dict[str, bytes] = {}
        try:
            d = FastDKIM(data, logger=quiet)
            froms = [v for n, v in d.headers if n.lower() == b"from"]
            pairs = email.utils.getaddresses([froms[0].decode("utf-8", "replace")]) if len(froms) == 1 else []
            if len(pairs) != 1:
                return b"", "unsigned: not exactly one From address"
            keys = self.keys_for(pairs[0][1].rpartition("@")[2])
            if not keys:
                return b"", ""
            include = self.include_headers([n for n, _ in d.headers])
            sigs = []
            for key in keys:
                d.openssl_key = key.rsa
                if body is not None:
                    name = "sha1" if key.algorithm == b"rsa-sha1" else "sha256"
                    if name not in digests:
                        digest = relaxed_body_hash(*body, name)
                        if digest is None:
                            raise _BareLineEnd()
                        digests[name] = digest
                    d.body_hash = base64.b64encode(digests[name])
                sigs.append(d.sign(key.selector.encode(), key.domain.encode(), key.private,
                                   signature_algorithm=key.algorithm, canonicalize=(b"relaxed", b"relaxed"),
                                   include_headers=include))
        except _BareLineEnd:
            raise
        except Exception as exc:  # dkimpy raises several types on odd input; never fail the relay here
            log.error("dkim_sign_failed", error=repr(exc))
            return b"", f"unsigned: {type(exc).__name__}: {exc}"
        note = ", ".join(f"d={k.domain} s={k.selector} a={k.algorithm.decode()}" for k in keys)
        return b"".join(sigs), note


# The body is canonicalised and hashed this many octets at a time (whole lines).
BODY_WINDOW = 256 * 1024
_WSP_EOL = re.compile(rb"[\t ]+\r\n")
# A run of blanks that relaxed canonicalisation changes: one with a tab, or two or more
# blanks (a lone space stays: dkimpy's pattern rewrote every space to itself).
_WSP_RUN = re.compile(rb"[ \t]*\t[ \t]*| {2,}")


def relaxed_body_hash(content: bytes, start: int, algorithm: str) -> bytes | None:
    """The digest of `content[start:]` under RFC 6376 relaxed body canonicalisation (3.4.4:
    blanks before a line end dropped, other runs of blanks one space, empty lines at the end
    dropped, one CRLF at the end unless the body is empty), as dkimpy computes it, but one
    window of whole lines at a time: no copy of the body, and no C call over all of it that
    holds the GIL. None when the body has a bare CR or LF (dkimpy's own way then)."""
    h = hashlib.new(algorithm)
    held = 0  # CRLFs that end the text so far: dropped if no more text follows them
    seen_text = False
    size = len(content)
    while start < size:
        cut = content.find(b"\r\n", start + BODY_WINDOW) if start + BODY_WINDOW < size else -1
        end = size if cut < 0 else cut + 2
        window = content[start:end]
        start = end
        crlf = window.count(b"\r\n")
        if window.count(b"\r") != crlf or window.count(b"\n") != crlf:
            return None
        canonical = _WSP_RUN.sub(b" ", _WSP_EOL.sub(b"\r\n", window))
        text = canonical.rstrip(b"\r\n")
        trailing = (len(canonical) - len(text)) // 2
        if text:
            while held:
                n = min(held, 65536)
                h.update(b"\r\n" * n)
                held -= n
            h.update(text)
            seen_text = True
        held += trailing
    if seen_text:
        h.update(b"\r\n")
    return h.digest()


async def signature_head(signer: Signer, head: bytes, content: bytes) -> tuple[bytes, str]:
    """`signer.signature`: the DKIM-Signature header(s) that go before `head` and `content`,
    and the note for the audit log. A large message is hashed in a thread."""
    if not signer.by_domain:
        return b"", ""
    if len(head) + len(content) > THREAD_ABOVE:
        return await asyncio.to_thread(signer.signature, head, content)
    return signer.signature(head, content)
