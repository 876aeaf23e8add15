"""`sendwarden policy check FILE`: validate a policy file without serving, and show it resolved;
`sendwarden policy init PATH`: write the shipped default policy, the starting point of one's own
(a wheel hides policies/default.toml inside the package)."""

from __future__ import annotations

import argparse
import json
from importlib import resources
from pathlib import Path
from typing import Any

from proxy.commands.common import add_json
from proxy.policy.loader import as_data, describe, load_policy


def cmd_policy_check(args: argparse.Namespace) -> int:
    policy = load_policy(args.file)
    if args.json:
        print(json.dumps(as_data(policy), indent=2))
        return 0
    print(describe(policy))
    print(f"\n{args.file}: ok")
    return 0


def cmd_policy_init(args: argparse.Namespace) -> int:
    from proxy.commands.config import write_new

    text = resources.files("proxy.policies").joinpath("default.toml").read_text(encoding="utf-8")
    path = Path(args.path)
    write_new(path, text, args.force)
    print(f"wrote {path}: the shipped default policy; adapt it, then\n  sendwarden policy check {path}")
    return 0


def register(sub: Any) -> None:
    s = sub.add_parser("policy", help="policy files")
    psub = s.add_subparsers(dest="policy_command", required=True, metavar="ACTION")
    c = psub.add_parser("check", help="validate a policy file and show it resolved")
    c.add_argument("file", help="the policy file (TOML), or builtin:default")
    add_json(c)
    c.set_defaults(func=cmd_policy_check)

    c = psub.add_parser("init", help="write the shipped default policy to PATH")
    c.add_argument("path", metavar="PATH", help="where to write it, e.g. /etc/sendwarden/policy.toml")
    c.add_argument("--force", action="store_true", help="replace an existing file")
    c.set_defaults(func=cmd_policy_init)
