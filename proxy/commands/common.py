"""What the subcommands share: the error type for people, exit statuses, and how a command
finds its service configuration and policy."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from proxy.config import Config, load_config, locate_config
from proxy.policy.loader import Policy, load_policy

# Exit statuses shared by every command (sysexits.h for usage and configuration errors).
EXIT_OK, EXIT_ERROR = 0, 1
EX_USAGE = 64  # the command line is wrong
EX_DATAERR = 65  # an input the command was given is wrong (no such quarantine ID, a bad row)
EX_CONFIG = 78  # the service configuration or the policy is wrong
# Answers rather than failures, distinct from the above and from `scan`'s verdicts (2, 3, 4).
EXIT_SUPPRESSED = 10  # `suppress check`: the address is suppressed
EXIT_NOT_READY = 11  # `dns-check`, `links check`, `status`: a requirement is not met
EXIT_NONE = 12  # nothing matched: `suppress remove`, `consent show`, `quarantine release|delete` by filter
EXIT_NOT_DONE = 13  # `quarantine release|delete`: an action did not happen (refused, busy, recheck)
EXIT_UNCHECKED = 14  # `links check`: nothing dead, but some links could not be checked (our DNS failed)


class CliError(Exception):
    """An error for people: printed as one line; the command exits with `status`."""

    def __init__(self, message: str, status: int = EXIT_ERROR) -> None:
        super().__init__(message)
        self.status = status


def rfc3339(ts: float) -> str:
    """The one timestamp format of the command line's output: RFC 3339, UTC, whole seconds."""
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def add_json(p: Any, what: str = "one JSON document") -> None:
    p.add_argument("--json", action="store_true", help=f"print {what} instead of text")


def add_config(p: Any) -> None:
    """The one --config option of every command that reads the service configuration."""
    p.add_argument("--config", metavar="FILE",
                   help="service configuration (TOML); default: $SENDWARDEN_CONFIG, then "
                        "/etc/sendwarden/sendwarden.toml, then the embedded development config")


def add_create(p: Any, what: str = "store") -> None:
    p.add_argument("--create", action="store_true",
                   help=f"make a new, empty {what} where the configuration says, when there is none yet")


def config_for(explicit: str | None, quiet: bool = False) -> Config:
    """The service configuration a command uses (see proxy.config.locate_config); says on
    stderr which one whenever it was not given with --config."""
    path, why = locate_config(explicit)
    if why != "--config" and not quiet:
        if path is None:
            print(f"sendwarden: using the embedded development configuration ({why}); "
                  f"relative paths are under {Path.cwd()}", file=sys.stderr)
        else:
            print(f"sendwarden: using {path} ({why})", file=sys.stderr)
    return load_config(path)


def load(config_path: str | None, policy_path: str | None = None, monitor: bool = False,
         quiet: bool = False) -> tuple[Config, Policy]:
    config = config_for(config_path, quiet)
    policy = load_policy(policy_path or config.policy_path)
    if monitor:
        policy = policy.with_monitor(True)
    return config, policy



# What every command may exit with besides its own statuses (written into each --help).
COMMON_EXITS = {EXIT_OK: "success", EXIT_ERROR: "an error, said on stderr", EX_USAGE: "a wrong command line",
                EX_CONFIG: "a wrong configuration or policy"}


def exits(p: Any, statuses: dict[int, str] | None = None) -> None:
    """Give a command's own exit statuses; proxy.cli writes them, with the common ones, into
    its --help."""
    p.exit_statuses = statuses or {}
