"""Running the service in worker processes, for `serve` and `milter` alike: how many (one per
usable CPU by default), on which CPUs, what they share (metrics in multiprocess mode), and the
hidden options by which the main process starts each child."""

from __future__ import annotations

import argparse
import errno
from collections.abc import Callable
from typing import Any

import structlog

from proxy.commands.common import EX_CONFIG, CliError
from proxy.config import Config
from proxy.policy.loader import Policy
from proxy.runtime import eventloop

log = structlog.get_logger("sendwarden.serve")


def add_worker_options(parser: argparse.ArgumentParser) -> None:
    """The options the main process gives a worker child (not for people)."""
    parser.add_argument("--worker", type=int, default=0, help=argparse.SUPPRESS)  # its index
    parser.add_argument("--cpu", type=int, default=None, help=argparse.SUPPRESS)  # cpu_affinity's pick
    parser.add_argument("--workers", type=int, default=1, help=argparse.SUPPRESS)  # how many in all


def run_workers(args: argparse.Namespace, config: Config, policy: Policy, source: Callable[[], tuple[Config, Policy]],
                child_argv: list[str], front: str = "smtp", count: int | None = None) -> None:
    """Run the service in this process (worker `args.worker`, 0: the main process, which starts
    the others) until it stops. `count`: how many workers, when the front end decides (the
    config's `workers` otherwise)."""
    from proxy.runtime.service import Service
    from proxy.runtime.workers import Workers, die_with_parent, pin, plan_cpus, worker_count

    if args.worker:
        die_with_parent()
        cpus = [args.cpu]  # the main process chose it
        count = args.workers  # likewise: this child, pinned by its parent, would count one CPU
    else:
        count = worker_count(config.file.workers) if count is None else count
        try:
            cpus = plan_cpus(config.file.cpu_affinity, count)
        except ValueError as exc:
            raise CliError(f"{config.source}: cpu_affinity: {exc}", EX_CONFIG) from None
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
    workers: Any = None
    if count > 1 and not args.worker:
        workers = Workers(child_argv, count, cpus, on_death=service.worker_died)
    try:
        eventloop.run(service.run(front, workers=workers))
    except OSError as exc:  # typically: the address is in use
        raise CliError(f"cannot serve{' the milter' if front == 'milter' else ''}: {exc.strerror or exc}") from None
