"""`sendwarden frequency set|clear|show`: a recipient's own frequency preference, which
replaces the policy's cap for that scope ([checks.frequency] overrides = true)."""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from proxy.commands.common import CliError, add_json
from proxy.commands.storecli import add_common, run, scope_arg
from proxy.tomlfile import parse_duration
from proxy.store import FREQUENCY_SCOPES, GLOBAL, FrequencyOverride, Query


def cmd_set(args: argparse.Namespace) -> int:
    try:
        override = FrequencyOverride(args.address, args.scope, args.max, parse_duration(args.per), args.source, time.time())
    except ValueError as exc:
        raise CliError(str(exc)) from None
    run(args, lambda store: store.set_frequency_override(override))
    print(f"at most {args.max} per {args.per} for {args.scope}")
    return 0


def cmd_clear(args: argparse.Namespace) -> int:
    print(f"{run(args, lambda store: store.clear_frequency_override(args.address, args.scope))} cleared")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    state = run(args, lambda store: store.lookup(args.address, Query(scopes=(), overrides=True), time.time()))
    if args.json:
        print(json.dumps({"address": args.address, "preferences": [
            {"scope": str(o.scope), "max": o.max_count, "window_seconds": o.window, "source": o.source,
             "sent_in_window": state.sends.get((o.scope, o.window), 0)} for o in state.overrides]}))
        return 0
    if not state.overrides:
        print("no preferences: the policy's caps apply")
    for o in state.overrides:
        print(f"{o.scope}: at most {o.max_count} per {o.window / 86400:g} days;"
              f" {state.sends.get((o.scope, o.window), 0)} sent in that window (set via {o.source or '-'})")
    return 0


def register(sub: Any) -> None:
    s = sub.add_parser("frequency", help="per-recipient frequency preferences")
    fsub = s.add_subparsers(dest="frequency_command", required=True, metavar="ACTION")
    scope = scope_arg(FREQUENCY_SCOPES)

    p = fsub.add_parser("set", help="at most MAX messages PER window for the address")
    add_common(p, create=True)
    p.add_argument("address", help="whose preference it is")
    p.add_argument("--max", type=int, required=True, metavar="N", help="at most N messages per window")
    p.add_argument("--per", required=True, help="window: 24h, 7d, 2w ...")
    p.add_argument("--scope", type=scope, default=GLOBAL, help="global (default), brand:NAME or stream:NAME")
    p.add_argument("--source", default="cli", help="where the preference came from (default cli)")
    p.set_defaults(func=cmd_set)

    p = fsub.add_parser("clear", help="drop the address's preferences (all scopes unless --scope)")
    add_common(p)
    p.add_argument("address", help="whose preferences to drop")
    p.add_argument("--scope", type=scope, help="only this scope: global, brand:NAME or stream:NAME")
    p.set_defaults(func=cmd_clear)

    p = fsub.add_parser("show", help="the address's preferences and recent sends")
    add_common(p)
    p.add_argument("address", help="whose preferences to show")
    add_json(p)
    p.set_defaults(func=cmd_show)
