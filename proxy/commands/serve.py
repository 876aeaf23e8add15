"""`sendwarden serve`: run the relay."""

from __future__ import annotations

import argparse
import asyncio
import errno
from typing import Any

import structlog

from proxy.commands.common import CliError, load
from proxy.config import Config, parse_hostport
from proxy.policy.loader import Policy

log = structlog.get_logger("sendwarden.serve")


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
    from proxy.runtime.service import Service

    def source() -> tuple[Config, Policy]:
        config, policy = load(args.config, monitor=args.monitor)
        return _overrides(args, config), policy

    config, policy = source()
    configure(config.file.audit.level, config.file.audit.format)
    from proxy.runtime.workers import Workers, die_with_parent, pin, plan_cpus, worker_count

    if args.worker:
        die_with_parent()
        cpus = [args.cpu]  # the main process chose it
        count = args.workers  # likewise: this child, pinned by its parent, would count one CPU
    else:
        count = worker_count(config.file.workers)
        try:
            cpus = plan_cpus(config.file.cpu_affinity, count)
        except ValueError as exc:
            raise CliError(str(exc)) from None
    try:
        pin(cpus[0])  # before the service starts its threads: they inherit the CPU
    except OSError as exc:
        hint = ""
        if exc.errno == errno.EPERM:  # a seccomp filter: the shipped systemd unit denies @resources
            hint = " (under systemd's SystemCallFilter, allow it with SystemCallFilter=sched_setaffinity)"
        raise CliError(f"cpu_affinity: cannot run on CPU {cpus[0]}: {exc.strerror or exc}{hint}") from None
    if cpus[0] is not None:
        log.info("cpu_affinity", worker=args.worker, cpu=cpus[0])
    if count > 1:
        from proxy.metrics import share_between_processes

        share_between_processes(config.state_dir / "metrics", clean=not args.worker)
        structlog.contextvars.bind_contextvars(worker=args.worker)  # every log line says whose
    service = Service(config, policy, reload_source=source, worker=args.worker, workers=count)
    workers = None
    if count > 1 and not args.worker:
        workers = Workers(_child_argv(args), count, cpus, on_death=service.worker_died)
    try:
        asyncio.run(service.run(workers=workers))
    except OSError as exc:  # typically: the address is in use
        raise CliError(f"cannot serve: {exc.strerror or exc}") from None
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
    s.add_argument("--config", help="service configuration (TOML); default: the embedded development config")
    s.add_argument("--listen", metavar="HOST:PORT", help="address of the (first) listener")
    s.add_argument("--upstream", metavar="URL", help="smtp://HOST:PORT or maildir:PATH")
    s.add_argument("--metrics", metavar="HOST:PORT", help="address of /metrics and /healthz ('' turns them off)")
    s.add_argument("--monitor", action="store_true", help="judge and log every message, but relay them all")
    s.add_argument("--worker", type=int, default=0, help=argparse.SUPPRESS)  # set by the main process
    s.add_argument("--cpu", type=int, default=None, help=argparse.SUPPRESS)  # likewise (cpu_affinity)
    s.add_argument("--workers", type=int, default=1, help=argparse.SUPPRESS)  # likewise: how many in all
    s.set_defaults(func=cmd_serve)
