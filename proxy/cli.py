"""The `sendwarden` command: one subcommand per module in proxy/commands/.

Errors end in lines on stderr and an exit status from proxy/commands/common.py (64 for a
wrong command line, 78 for a wrong configuration or policy), never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from typing import Any, NoReturn, Sequence

from proxy import __version__
from proxy.commands.common import COMMON_EXITS, EX_CONFIG, EX_USAGE, CliError
from proxy.commands.completion import commands
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
    "completion",
    "complaints",
)


class Parser(argparse.ArgumentParser):
    """argparse, with usage errors ending in EX_USAGE (64) instead of 2, which `scan` uses
    for a verdict, and epilogs (exit statuses) printed as written."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EX_USAGE, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="sendwarden", description="An SMTP relay that enforces an Acceptable Use Policy inline.")
    p.add_argument("--version", action="version", version=f"sendwarden {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(f"proxy.commands.{name}").register(sub)
    for leaf in commands(p):
        own = getattr(leaf, "exit_statuses", {})
        statuses = {**COMMON_EXITS, **own}
        text = "\n".join(f"  {code:<4}{statuses[code]}" for code in sorted(statuses))
        leaf.epilog = ((leaf.epilog + "\n\n") if leaf.epilog else "") + "exit status:\n" + text
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.parser = parser  # for the commands that describe the command line (manpage, completion)
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
    except BrokenPipeError:  # `sendwarden ... | head`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
