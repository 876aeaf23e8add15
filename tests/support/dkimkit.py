"""Helpers for DKIM tests: key pairs on disk with their records published in the loopback DNS."""

from __future__ import annotations

from pathlib import Path

from proxy.outbound.dkimkeys import SigningKey, generate_key, load_key, write_key
from tests.support.dnsserver import DnsServer


def make_key(tmp_path: Path, domain: str, selector: str, key_type: str = "rsa", dns: DnsServer | None = None) -> SigningKey:
    """Write a fresh key pair under tmp_path (as `sendwarden dkim keygen` would), load it, and
    publish its record when a DNS server is given."""
    path = tmp_path / "dkim" / f"{domain}.{selector}.key"
    write_key(generate_key(key_type), path)  # type: ignore[arg-type]
    key = load_key(path, domain, selector)
    if dns is not None:
        dns.add(key.record_name, "TXT", key.record)
    return key


def key_config(*keys: SigningKey) -> dict[str, object]:
    """The `[dkim]` section for a service config that signs with these keys."""
    return {"keys": [{"domain": k.domain, "selector": k.selector, "key": k.path} for k in keys]}
