"""`sendwarden dkim keygen DOMAIN SELECTOR`: make a DKIM key pair under certs/ and print the
TXT record to publish and the config lines that make the relay sign with it."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from proxy.commands.common import CliError
from proxy.outbound.dkimkeys import generate_key, load_key, write_key
from proxy.message.domains import to_alabel


def zone_record(name: str, text: str) -> str:
    """A TXT record in zone-file form, its text split into strings of at most 255 characters."""
    chunks = [text[i:i + 255] for i in range(0, len(text), 255)]
    body = "\n    ".join(f'"{c}"' for c in chunks)
    return f"{name}. IN TXT (\n    {body} )"


def cmd_keygen(args: argparse.Namespace) -> int:
    domain = to_alabel(args.domain)
    if domain is None or "." not in domain:
        raise CliError(f"{args.domain!r} is not a domain name")
    selector = args.selector.lower()
    if to_alabel(selector) != selector:
        raise CliError(f"{args.selector!r}: a selector is one or more DNS labels (letters, digits, '-')")
    path = Path(args.dir) / f"{domain}.{selector}.key"
    if path.exists():
        if not args.force:
            raise CliError(f"{path} exists: choose a new selector (rotate keys, do not overwrite them) or use --force")
        path.unlink()
    try:
        write_key(generate_key(args.type, args.bits), path)
        key = load_key(path, domain, selector)
    except OSError as exc:
        raise CliError(f"{path}: {exc.strerror or exc}") from None
    size = f"{key.bits}-bit RSA" if key.type == "rsa" else "Ed25519"
    print(f"wrote {path} ({size} private key, mode 0600) and {path.with_suffix('.pub')}")
    print("\npublish this TXT record:\n")
    print(zone_record(key.record_name, key.record))
    print("\nthen sign with it (service configuration):\n")
    print(f'[[dkim.keys]]\ndomain = "{domain}"\nselector = "{selector}"\nkey = "{path}"')
    print(f"\nand check it once published:  sendwarden dns-check {domain} --selector {selector} --key {path}")
    if key.type == "ed25519":
        print("\nnote: not every receiver verifies Ed25519 yet (RFC 8463); sign with an RSA key as well.")
    return 0


def register(sub: Any) -> None:
    s = sub.add_parser("dkim", help="DKIM signing keys")
    dsub = s.add_subparsers(dest="dkim_command", required=True, metavar="ACTION")
    k = dsub.add_parser("keygen", help="make a key pair and print the DNS record to publish")
    k.add_argument("domain", help="the signing domain (d=), e.g. example.com")
    k.add_argument("selector", help="the selector (s=), e.g. s2026; rotate keys with new selectors")
    k.add_argument("--type", choices=("rsa", "ed25519"), default="rsa", help="key type (default rsa)")
    k.add_argument("--bits", type=int, choices=(1024, 2048, 3072, 4096), default=2048, help="RSA key size")
    k.add_argument("--dir", default="certs/dkim", help="where to write DOMAIN.SELECTOR.key (default: certs/dkim)")
    k.add_argument("--force", action="store_true", help="replace an existing key file")
    k.set_defaults(func=cmd_keygen)
