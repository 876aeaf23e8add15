"""Key material from the command line: `sendwarden dkim keygen` and certs/make-dev-tls.sh."""

from __future__ import annotations

import re
import ssl
import stat
import subprocess
from pathlib import Path

import pytest

from proxy.config import Config, ConfigFile
from proxy.facts.dkim import verify
from proxy.outbound.dkim import Signer
from proxy.outbound.dkimkeys import load_key
from proxy.dns import Resolver
from proxy.runtime.tls import server_context
from tests.conftest import ROOT, SENDWARDEN
from tests.support.dnsserver import DnsServer

COMPLIANT = (ROOT / "examples" / "compliant.eml").read_bytes().replace(b"\n", b"\r\n")


def keygen(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*SENDWARDEN, "dkim", "keygen", *args], env=env, capture_output=True, text=True, timeout=60)


def published(output: str) -> tuple[str, str]:
    """(record name, TXT text) from keygen's zone-file lines."""
    head, sep, rest = output.partition(". IN TXT (")
    assert sep, output
    return head.split()[-1], "".join(re.findall(r'"([^"]*)"', rest.split(")", 1)[0]))


@pytest.mark.parametrize("key_type", ["rsa", "ed25519"])
async def test_keygen_writes_a_key_the_relay_signs_with(tmp_path: Path, cli_env: dict[str, str], dns_server: DnsServer,
                                                         key_type: str) -> None:
    p = keygen(cli_env, "Shop.Example.com", "s2026", "--type", key_type, "--dir", str(tmp_path / "dkim"))
    assert p.returncode == 0, p.stderr
    key_file = tmp_path / "dkim" / "shop.example.com.s2026.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "dkim").stat().st_mode) == 0o700
    assert key_file.with_suffix(".pub").exists()
    name, record = published(p.stdout)
    assert name == "s2026._domainkey.shop.example.com" and record.startswith(f"v=DKIM1; k={key_type}; p=")
    assert f'[[dkim.keys]]\ndomain = "shop.example.com"\nselector = "s2026"\nkey = "{key_file}"' in p.stdout
    # The printed record, published, verifies what the configured relay signs with the file.
    dns_server.add(name, "TXT", record)
    config = Config(ConfigFile.model_validate({"dkim": {"keys": [{"domain": "shop.example.com", "selector": "s2026",
                                                                  "key": str(key_file)}]}}), "test", tmp_path)
    signed, _ = Signer.from_config(config).sign(COMPLIANT)
    [sig] = (await verify(signed, Resolver([dns_server.nameserver], timeout=1))).signatures
    assert sig.status == "pass"


def test_keygen_refuses_to_overwrite_and_bad_input(tmp_path: Path, cli_env: dict[str, str]) -> None:
    d = str(tmp_path / "dkim")
    assert keygen(cli_env, "example.com", "s1", "--dir", d).returncode == 0
    before = (tmp_path / "dkim" / "example.com.s1.key").read_bytes()
    p = keygen(cli_env, "example.com", "s1", "--dir", d)
    assert p.returncode == 1 and "exists" in p.stderr and "Traceback" not in p.stderr
    assert (tmp_path / "dkim" / "example.com.s1.key").read_bytes() == before
    p = keygen(cli_env, "example.com", "s1", "--dir", d, "--force")
    assert p.returncode == 0 and (tmp_path / "dkim" / "example.com.s1.key").read_bytes() != before
    for args in (["not a domain", "s1"], ["example.com", "bad selector!"]):
        p = keygen(cli_env, *args, "--dir", d)
        assert p.returncode == 1 and p.stderr.startswith("sendwarden: ") and "Traceback" not in p.stderr
    assert load_key(tmp_path / "dkim" / "example.com.s1.key").bits == 2048


def test_dev_tls_script(tmp_path: Path) -> None:
    out = tmp_path / "tls"
    p = subprocess.run([str(ROOT / "certs" / "make-dev-tls.sh"), "relay.test", str(out)], capture_output=True, text=True,
                       timeout=60)
    assert p.returncode == 0, p.stderr
    assert stat.S_IMODE((out / "key.pem").stat().st_mode) == 0o600
    ctx = server_context(out / "cert.pem", out / "key.pem")  # what the listener loads
    assert isinstance(ctx, ssl.SSLContext)
    cert = ssl._ssl._test_decode_cert(str(out / "cert.pem"))  # type: ignore[attr-defined]
    assert ("DNS", "relay.test") in cert["subjectAltName"] and ("IP Address", "127.0.0.1") in cert["subjectAltName"]
    bad = subprocess.run([str(ROOT / "certs" / "make-dev-tls.sh"), "bad host;rm", str(out)], capture_output=True, text=True)
    assert bad.returncode == 1


def test_no_private_key_is_tracked() -> None:
    tracked = subprocess.run(["git", "ls-files", "certs"], cwd=ROOT, capture_output=True, text=True).stdout.split()
    assert not [f for f in tracked if f.endswith((".key", ".pem"))]
    assert "*.key" in (ROOT / ".gitignore").read_text() and "*.pem" in (ROOT / ".gitignore").read_text()
