"""`sendwarden serve`: run the relay."""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from proxy.commands.common import CliError, load
from proxy.config import parse_hostport


def cmd_serve(args: argparse.Namespace) -> int:
    from proxy.audit import configure
    from proxy.service import Service

    config, policy = load(args.config, monitor=args.monitor)
    changes: dict[str, Any] = {}
    if args.listen:
        try:
            parse_hostport(args.listen)
        except ValueError as exc:
            raise CliError(f"--listen: {exc}") from None
        first = config.file.listeners[0].model_dump()
        first["address"] = args.listen
        changes["listeners"] = [first, *[x.model_dump() for x in config.file.listeners[1:]]]
    if args.upstream:
        up = config.file.upstream.model_dump()
        up["url"] = args.upstream
        changes["upstream"] = up
    if changes:
        config = config.replace(**changes)
    configure(config.file.audit.level, config.file.audit.format)
    service = Service(config, policy)
    asyncio.run(service.run())
    return 0


def register(sub: Any) -> None:
    s = sub.add_parser("serve", help="run the relay")
    s.add_argument("--config", help="service configuration (TOML); default: the embedded development config")
    s.add_argument("--listen", metavar="HOST:PORT", help="address of the (first) listener")
    s.add_argument("--upstream", metavar="URL", help="smtp://HOST:PORT or maildir:PATH")
    s.add_argument("--monitor", action="store_true", help="judge and log every message, but relay them all")
    s.set_defaults(func=cmd_serve)
