"""DKIM signing and verifying with real keys, against the loopback DNS server."""

from __future__ import annotations

import os
from pathlib import Path
from unittest import mock

import dkim
import pytest

from proxy.config import OVERSIGNED_HEADERS, SIGNED_HEADERS
from proxy.facts.dkim import verify
from proxy.outbound.dkim import Signer
from proxy.outbound.dkimkeys import KeyFileError, load_key
from proxy.dns import Resolver
from tests.conftest import ROOT
from tests.support.dkimkit import make_key
from tests.support.dnsserver import DnsServer

COMPLIANT = (ROOT / "examples" / "compliant.eml").read_bytes().replace(b"\n", b"\r\n")


def signer(*keys: object) -> Signer:
    return Signer(keys, SIGNED_HEADERS, OVERSIGNED_HEADERS)  # type: ignore[arg-type]


def resolver(dns: DnsServer, timeout: float = 1.0) -> Resolver:
    return Resolver([dns.nameserver], timeout=timeout)


@pytest.mark.parametrize("key_type", ["rsa", "ed25519"])
async def test_sign_then_verify_round_trip(tmp_path: Path, dns_server: DnsServer, key_type: str) -> None:
    key = make_key(tmp_path, "shop.example.com", "s1", key_type, dns_server)
    signed, note = signer(key).sign(COMPLIANT)
    assert note == f"d=shop.example.com s=s1 a={key.algorithm.decode()}"
    # Only a header is prepended: the message itself is byte for byte what it was.
    assert signed.endswith(COMPLIANT) and signed.startswith(b"DKIM-Signature: v=1; a=" + key.algorithm)
    result = await verify(signed, resolver(dns_server))
    assert [(s.domain, s.selector, s.status) for s in result.signatures] == [("shop.example.com", "s1", "pass")]


async def test_both_keys_sign_and_both_verify(tmp_path: Path, dns_server: DnsServer) -> None:
    rsa_key = make_key(tmp_path, "example.com", "r1", "rsa", dns_server)
    ed_key = make_key(tmp_path, "example.com", "e1", "ed25519", dns_server)
    signed, _ = signer(rsa_key, ed_key).sign(COMPLIANT)  # From is shop.example.com: parent's keys
    assert signed.count(b"DKIM-Signature:") == 2
    result = await verify(signed, resolver(dns_server))
    assert sorted((s.selector, s.status) for s in result.signatures) == [("e1", "pass"), ("r1", "pass")]


def header_list(signed: bytes) -> list[str]:
    sig = dkim.util.parse_tag_value(dkim.DKIM(signed).headers[0][1])
    return [h.strip().decode() for h in sig[b"h"].split(b":")]


def test_signed_headers_and_oversigning(tmp_path: Path) -> None:
    key = make_key(tmp_path, "shop.example.com", "s1")
    h = header_list(signer(key).sign(COMPLIANT)[0])
    for name in ("from", "to", "subject", "date", "message-id", "mime-version", "content-type",
                 "list-unsubscribe", "list-unsubscribe-post"):
        assert name in h, name
    # Oversigned: once more than present, so another one cannot be added.
    assert h.count("from") == 2 and h.count("list-unsubscribe") == 2 and h.count("list-unsubscribe-post") == 2
    assert h.count("reply-to") == 1  # absent, locked out
    assert h.count("date") == 1 and h.count("message-id") == 1  # an MTA may add a missing one
    assert "received" not in h


@pytest.mark.parametrize("change, why", [
    ((b"Subject: Our autumn collection is here", b"Subject: Our winter collection is here"), "signature does not match"),
    ((b"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n", b""), "signature does not match"),
    ((b"Our autumn collection is in the shop", b"Our autumn collection is in the SHOP"), "body hash mismatch"),
])
async def test_tampering_fails(tmp_path: Path, dns_server: DnsServer, change: tuple[bytes, bytes], why: str) -> None:
    key = make_key(tmp_path, "shop.example.com", "s1", "rsa", dns_server)
    signed, _ = signer(key).sign(COMPLIANT)
    tampered = signed.replace(*change)
    assert tampered != signed
    [sig] = (await verify(tampered, resolver(dns_server))).signatures
    assert sig.status == "fail" and why in sig.reason


async def test_an_added_oversigned_header_fails(tmp_path: Path, dns_server: DnsServer) -> None:
    key = make_key(tmp_path, "shop.example.com", "s1", "ed25519", dns_server)
    signed, _ = signer(key).sign(COMPLIANT)
    sig_end = signed.index(b"\r\nFrom:") + 2
    for added in (b"Reply-To: phisher@evil.example\r\n", b"From: other@evil.example\r\n"):
        [sig] = (await verify(signed[:sig_end] + added + signed[sig_end:], resolver(dns_server))).signatures
        assert sig.status == "fail"
    # A Received header added in transit is not signed and changes nothing.
    [sig] = (await verify(b"Received: from mx.example.org\r\n" + signed, resolver(dns_server))).signatures
    assert sig.status == "pass"


async def test_verify_outcomes_without_a_good_key(tmp_path: Path, dns_server: DnsServer) -> None:
    key = make_key(tmp_path, "shop.example.com", "s1", "rsa")  # not published
    signed, _ = signer(key).sign(COMPLIANT)
    dns_server.zone("example.com")
    [sig] = (await verify(signed, resolver(dns_server))).signatures
    assert sig.status == "permerror" and "no DKIM key published at s1._domainkey.shop.example.com" in sig.reason
    dns_server.add("s1._domainkey.shop.example.com", "TXT", "v=DKIM1; k=rsa; p=")  # revoked
    r = resolver(dns_server)
    [sig] = (await verify(signed, r)).signatures
    assert sig.status == "permerror" and "bad key record" in sig.reason
    other = make_key(tmp_path, "shop.example.com", "s2", "rsa")
    dns_server.remove("s1._domainkey.shop.example.com").add("s1._domainkey.shop.example.com", "TXT", other.record)
    [sig] = (await verify(signed, resolver(dns_server))).signatures
    assert sig.status == "fail"


async def test_dns_trouble_is_temperror_not_a_crash(tmp_path: Path, dns_server: DnsServer) -> None:
    key = make_key(tmp_path, "shop.example.com", "s1", "rsa", dns_server)
    signed, _ = signer(key).sign(COMPLIANT)
    dns_server.behaviour.timeout.add("s1._domainkey.shop.example.com")
    [sig] = (await verify(signed, resolver(dns_server, timeout=0.3))).signatures
    assert sig.status == "temperror" and "no answer within 0.3s" in sig.reason
    dns_server.behaviour.timeout.clear()
    dns_server.behaviour.servfail.add("*")
    [sig] = (await verify(signed, resolver(dns_server))).signatures
    assert sig.status == "temperror"


async def test_hostile_signatures_are_verdicts(dns_server: DnsServer) -> None:
    dns_server.zone("example.com")
    for header in (b"DKIM-Signature: garbage", b"DKIM-Signature: v=1; a=rsa-sha256; d=example.com",
                   b"DKIM-Signature: v=1; a=rsa-sha256; d=example.com; s=x; h=from; bh=AAAA; b=AAAA",
                   b"DKIM-Signature: v=1; a=rsa-sha256; d=; s=\xff; b="):
        result = await verify(header + b"\r\n" + COMPLIANT, resolver(dns_server))
        assert [s.status for s in result.signatures] == ["permerror"], header
    # A header block dkimpy cannot split is a permanent error, not a lookup failure (no 451 loop).
    result = await verify(b"DKIM-Signature: v=1; d=example.com; s=x\r\nnot a header line\r\n" + COMPLIANT,
                          resolver(dns_server))
    assert [s.status for s in result.signatures] == ["permerror"]
    many = b"".join(b"DKIM-Signature: v=1; d=example.com; s=x%d\r\n" % i for i in range(8))
    result = await verify(many + COMPLIANT, resolver(dns_server), max_signatures=5)
    assert len(result.signatures) == 5 and result.not_verified == 3


def test_signing_is_byte_identical_to_dkimpy(tmp_path: Path) -> None:
    """The OpenSSL shortcut for RSA must produce exactly what dkimpy's own signer produces."""
    key = make_key(tmp_path, "shop.example.com", "s1", "rsa")
    s = signer(key)
    with mock.patch("time.time", return_value=1795913382):
        ours, _ = s.sign(COMPLIANT)
        theirs = dkim.sign(COMPLIANT, b"s1", b"shop.example.com", key.private, canonicalize=(b"relaxed", b"relaxed"),
                           include_headers=s.include_headers([n for n, _ in dkim.DKIM(COMPLIANT).headers]))
    assert ours == theirs + COMPLIANT


def test_which_key_signs(tmp_path: Path) -> None:
    k1 = make_key(tmp_path, "example.co.uk", "a")
    s = signer(k1, make_key(tmp_path, "news.example.co.uk", "b"))
    assert [k.selector for k in s.keys_for("news.example.co.uk")] == ["b"]
    assert [k.selector for k in s.keys_for("deep.mail.example.co.uk")] == ["a"]  # nearest parent
    assert s.keys_for("other.co.uk") == []  # never across organisational domains
    assert s.keys_for("co.uk") == [] and s.keys_for("not a domain") == []
    unsigned, note = s.sign(COMPLIANT)  # From is shop.example.com: no key
    assert unsigned == COMPLIANT and note == ""
    two_froms = b"From: a@example.co.uk\r\n" + COMPLIANT.replace(b"shop.example.com>", b"example.co.uk>", 1)
    assert s.sign(two_froms) == (two_froms, "unsigned: not exactly one From address")


def test_key_files_are_checked(tmp_path: Path) -> None:
    key = make_key(tmp_path, "example.com", "s1")
    assert os.stat(key.path).st_mode & 0o777 == 0o600
    assert Path(key.path).with_suffix(".pub").read_bytes().startswith(b"-----BEGIN PUBLIC KEY-----")
    os.chmod(key.path, 0o644)
    with pytest.raises(KeyFileError, match="readable by everybody"):
        load_key(key.path)
    bad = tmp_path / "bad.key"
    bad.write_text("not a key")
    bad.chmod(0o600)
    with pytest.raises(KeyFileError, match="not a PEM private key"):
        load_key(bad)
    with pytest.raises(KeyFileError, match="cannot read"):
        load_key(tmp_path / "missing.key")
    # dkimpy's dknewkey format for Ed25519 (the base64 seed) is read too
    seed = tmp_path / "dknewkey.key"
    seed.write_bytes(b"nWGxne/9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A=\n")
    seed.chmod(0o600)
    assert load_key(seed).type == "ed25519"


BODIES = [
    b"", b"\r\n", b"\r\n\r\n", b"text", b"text\r\n", b"text\r\n\r\n\r\n", b"\r\n\r\nlead\r\n",
    b"a  b\t\tc \t d \r\nend\t \r\n \r\n\t\r\n", b" \r\n", b"x" * 50 + b"   \r\n" + b"\r\n" * 40 + b"y",
]


@pytest.mark.parametrize("window", [4, 7, 64, 256 * 1024])
@pytest.mark.parametrize("body", BODIES + [b"".join(BODIES) * 3])
def test_the_windowed_body_hash_is_dkimpys(body: bytes, window: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """relaxed_body_hash, whatever the windows, is dkimpy's relaxed canonicalisation + hash."""
    import hashlib

    from dkim.canonicalization import Relaxed

    from proxy.outbound import dkim as ours

    monkeypatch.setattr(ours, "BODY_WINDOW", window)
    content = b"Subject: x\r\n\r\n" + body
    for name in ("sha1", "sha256"):
        assert ours.relaxed_body_hash(content, 14, name) == hashlib.new(name, Relaxed.canonicalize_body(body)).digest()
    assert ours.relaxed_body_hash(b"Subject: x\r\n\r\nbare\nlf\r\n", 14, "sha256") is None


@pytest.mark.parametrize("head", [b"", b"Received: from a by b; Sat, 5 Dec 2026 00:00:00 +0000\r\n"])
@pytest.mark.parametrize("content", [COMPLIANT, COMPLIANT.replace(b"\r\n\r\n", b"\r\n\r\n  \t\r\n", 1) + b"\r\n\r\n",
                                     b"\r\nno headers of its own\r\n", COMPLIANT.replace(b"\r\n", b"\n")])
def test_signing_head_and_content_apart_is_signing_them_joined(tmp_path: Path, head: bytes, content: bytes) -> None:
    """Signer.signature(head, content) (body hashed where it lies, nothing joined) gives the
    header dkimpy's own signer gives for head + content, bare LF bodies and all."""
    key = make_key(tmp_path, "shop.example.com", "s1", "rsa")
    s = signer(key)
    data = head + content
    if b"From:" not in data:
        data = b"From: a@shop.example.com\r\n" + data
        head = b"From: a@shop.example.com\r\n" + head
    with mock.patch("time.time", return_value=1795913382):
        ours, _ = s.signature(head, data[len(head):])
        d = dkim.DKIM(data)
        theirs = d.sign(b"s1", b"shop.example.com", key.private, canonicalize=(b"relaxed", b"relaxed"),
                        include_headers=s.include_headers([n for n, _ in d.headers]))
    assert ours == theirs
