"""`sendwarden passwd USER`: print a credentials-file line with an argon2 hash."""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from typing import Any

from proxy.commands.common import CliError


def cmd_passwd(args: argparse.Namespace) -> int:
    from proxy.smtp.auth import hash_password

    if sys.stdin.isatty():
        pw = getpass.getpass(f"password for {args.user}: ")
        if pw != getpass.getpass("again: "):
            raise CliError("the passwords differ")
    else:
        pw = sys.stdin.readline().rstrip("\n")
    if len(pw) < 12:
        raise CliError("use a password of at least 12 characters")
    print(f'{json.dumps(args.user)} = "{hash_password(pw)}"')
    return 0


def register(sub: Any) -> None:
    s = sub.add_parser("passwd", help="print a credentials line (argon2 hash) for USER; password on stdin or prompted")
    s.add_argument("user", help="the AUTH user name")
    s.set_defaults(func=cmd_passwd)
