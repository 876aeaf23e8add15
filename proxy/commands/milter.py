"""`sendwarden milter`: serve the policy engine to an MTA over the milter protocol."""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from proxy.commands.common import CliError, add_config, load
from proxy.config import Config
from proxy.policy.loader import Policy


def cmd_milter(args: argparse.Namespace) -> int:
    from proxy.audit import configure
    from proxy.runtime.service import Service

    def source() -> tuple[Config, Policy]:
        config, policy = load(args.config, monitor=args.monitor)
        if args.listen:
            config = config.replace(milter={**config.file.milter.model_dump(), "address": args.listen})
        return config, policy

    config, policy = source()
    configure(config.file.audit.level, config.file.audit.format)
    service = Service(config, policy, reload_source=source)
    try:
        asyncio.run(service.run("milter"))
    except OSError as exc:
        raise CliError(f"cannot serve the milter: {exc.strerror or exc}") from None
    return 0


def register(sub: Any) -> None:
    s = sub.add_parser("milter", help="serve the policy engine to Postfix or Sendmail (milter protocol 6)")
    add_config(s)
    s.add_argument("--listen", metavar="inet:HOST:PORT|unix:PATH", help="the milter socket")
    s.add_argument("--monitor", action="store_true", help="judge and log every message, but accept them all")
    s.set_defaults(func=cmd_milter)
