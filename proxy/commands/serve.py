"""`sendwarden serve`: run the relay."""

from __future__ import annotations

import argparse
from typing import Any

from proxy.commands.common import CliError, add_config, load
from proxy.commands.workerrun import add_worker_options, run_workers
from proxy.config import Config, parse_hostport
from proxy.policy.loader import Policy


def _overrides(args: argparse.Namespace, config: Config) -> Config:
    """Apply --listen, --upstream and --metrics; they win over the file, on reload too."""
    changes: dict[str, Any] = {}
    for flag, value in (("--listen", args.listen), ("--metrics", args.metrics or None)):
        if value:
            try:
                parse_hostport(value)
            except ValueError as exc:
                raise CliError(f"{flag}: {exc}") from None
    if args.listen:
        first = config.file.listeners[0].model_dump()
        first["address"] = args.listen
        changes["listeners"] = [first, *[x.model_dump() for x in config.file.listeners[1:]]]
    if args.upstream:
        changes["upstream"] = {**config.file.upstream.model_dump(), "url": args.upstream}
    if args.metrics is not None:
        changes["metrics"] = {**config.file.metrics.model_dump(), "address": args.metrics}
    return config.replace(**changes) if changes else config


def cmd_serve(args: argparse.Namespace) -> int:
    from proxy.audit import configure

    # Which configuration is in use is said once, by the main process at start: not by each
    # worker, nor at each reload (they find the same one).
    said = [bool(args.worker)]

    def source() -> tuple[Config, Policy]:
        config, policy = load(args.config, monitor=args.monitor, quiet=said[0])
        said[0] = True
        return _overrides(args, config), policy

    config, policy = source()
    configure(config.file.audit.level, config.file.audit.format)
    run_workers(args, config, policy, source, _child_argv(args))
    return 0


def _child_argv(args: argparse.Namespace) -> list[str]:
    """The command line of a worker child: the same serve options as the main process."""
    argv = ["serve"]
    for flag, value in (("--config", args.config), ("--listen", args.listen), ("--upstream", args.upstream),
                        ("--metrics", args.metrics)):
        if value is not None:
            argv += [flag, value]
    if args.monitor:
        argv.append("--monitor")
    return argv


def register(sub: Any) -> None:
    s = sub.add_parser("serve", help="run the relay (SIGHUP reloads config and policy, SIGTERM drains and stops)")
    add_config(s)
    s.add_argument("--listen", metavar="HOST:PORT", help="address of the (first) listener")
    s.add_argument("--upstream", metavar="URL", help="smtp://HOST:PORT or maildir:PATH")
    s.add_argument("--metrics", metavar="HOST:PORT", help="address of /metrics and /healthz ('' turns them off)")
    s.add_argument("--monitor", action="store_true", help="judge and log every message, but relay them all")
    add_worker_options(s)
    s.set_defaults(func=cmd_serve)
