"""`sendwarden policy check FILE`: validate a policy file without serving, and show it resolved."""

from __future__ import annotations

import argparse
from typing import Any

from proxy.policy.loader import describe, load_policy


def cmd_policy_check(args: argparse.Namespace) -> int:
    policy = load_policy(args.file)
    print(describe(policy))
    print(f"\n{args.file}: ok")
    return 0


def register(sub: Any) -> None:
    s = sub.add_parser("policy", help="policy files")
    psub = s.add_subparsers(dest="policy_command", required=True, metavar="ACTION")
    c = psub.add_parser("check", help="validate a policy file and show it resolved")
    c.add_argument("file")
    c.set_defaults(func=cmd_policy_check)
