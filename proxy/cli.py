"""The `sendwarden` command: one subcommand per module in proxy/commands/.

Errors end in lines on stderr and an exit status from proxy/commands/common.py (64 for a
wrong command line, 78 for a wrong configuration or policy), never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import NoReturn, Sequence

from proxy import __version__
from proxy.commands.common import EX_CONFIG, EX_USAGE, CliError
from proxy.tomlfile import ConfigError

# Each module registers its own subcommand(s).
COMMAND_MODULES = (
    "serve",
    "config",
    "scan",
    "policy",
    "passwd",
    "status",
    "quarantine",
    "suppress",
    "consent",
    "frequency",
    "dkim",
    "dnscheck",
    "milter",
    "links",
)


class Parser(argparse.ArgumentParser):
    """argparse, with usage errors ending in EX_USAGE (64) instead of 2, which `scan` uses
    for a verdict."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EX_USAGE, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="sendwarden", description="An SMTP relay that enforces an Acceptable Use Policy inline.")
    p.add_argument("--version", action="version", version=f"sendwarden {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(f"proxy.commands.{name}").register(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except CliError as exc:
        print(f"sendwarden: {exc}", file=sys.stderr)
        return exc.status
    except ConfigError as exc:
        print(str(exc) if exc.located else f"sendwarden: {exc}", file=sys.stderr)
        return EX_CONFIG
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
