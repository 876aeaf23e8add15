"""`sendwarden milter`: serve the policy engine to an MTA over the milter protocol."""

from __future__ import annotations

import argparse
from typing import Any

import structlog

from proxy.commands.common import CliError, add_config, load
from proxy.commands.workerrun import add_worker_options, run_workers
from proxy.config import Config
from proxy.policy.loader import Policy

log = structlog.get_logger("sendwarden.milter")


def cmd_milter(args: argparse.Namespace) -> int:
    from proxy.audit import configure
    from proxy.milter.server import parse_address

    # Which configuration is in use is said once, by the main process at start: not by each
    # worker, nor at each reload (they find the same one).
    said = [bool(args.worker)]

    def source() -> tuple[Config, Policy]:
        config, policy = load(args.config, monitor=args.monitor, quiet=said[0])
        said[0] = True
        if args.listen:
            config = config.replace(milter={**config.file.milter.model_dump(), "address": args.listen})
        return config, policy

    config, policy = source()
    configure(config.file.audit.level, config.file.audit.format)
    try:
        kind, _ = parse_address(config.file.milter.address)
    except ValueError as exc:
        raise CliError(f"milter address: {exc}") from None
    count = None
    if kind == "unix" and config.file.workers != 1:
        # Workers share a TCP port (SO_REUSEPORT); a UNIX socket has one owner.
        log.warning("milter_single_worker", reason="workers share inet milter sockets only", address=config.file.milter.address)
        count = 1
    argv = ["milter"] + (["--config", args.config] if args.config else []) + (["--listen", args.listen] if args.listen else [])
    run_workers(args, config, policy, source, argv + (["--monitor"] if args.monitor else []), front="milter", count=count)
    return 0


def register(sub: Any) -> None:
    s = sub.add_parser("milter", help="serve the policy engine to Postfix or Sendmail (milter protocol 6)")
    add_config(s)
    s.add_argument("--listen", metavar="inet:HOST:PORT|unix:PATH", help="the milter socket")
    s.add_argument("--monitor", action="store_true", help="judge and log every message, but accept them all")
    add_worker_options(s)
    s.set_defaults(func=cmd_milter)
