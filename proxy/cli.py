"""The `sendwarden` command: one subcommand per module in proxy/commands/.

Errors in input or configuration end in one line on stderr and exit status 1, never a
traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Sequence

from proxy import __version__
from proxy.commands.common import EXIT_ERROR, CliError
from proxy.tomlfile import ConfigError

# Each module registers its own subcommand(s).
COMMAND_MODULES = (
    "serve",
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
    "complaints",
)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="sendwarden", description="An SMTP relay that enforces an Acceptable Use Policy inline.")
    p.add_argument("--version", action="version", version=f"sendwarden {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(f"proxy.commands.{name}").register(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except (CliError, ConfigError) as exc:
        print(f"sendwarden: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
