"""`sendwarden complaints show`: the complaint-rate guard's numbers, as a fleet's relays see
them (read from the store they share): per sender domain and per brand, the marketing
recipients delivered and the spam complaints acted on over the policy's sliding window, the
rate, and where it stands against the warning rate and the limit."""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from proxy.commands.common import load
from proxy.commands.storecli import add_common, run
from proxy.policy.families.complaints import ComplaintRateOptions, rates
from proxy.store.base import HOUR, RecipientStore, SenderCount

LEVEL_TEXT = {"low_volume": "too little volume to count", "ok": "ok", "warning": "ABOVE WARNING", "limit": "OVER LIMIT"}


def cmd_complaints_show(args: argparse.Namespace) -> int:
    _, policy = load(args.config, args.policy)
    opts: ComplaintRateOptions = policy.options["complaint_rate"]  # type: ignore[assignment]
    now = time.time()
    since = (int((now - opts.window_days * 86400) // HOUR)) * HOUR

    async def body(store: RecipientStore) -> list[SenderCount]:
        return await store.sender_counts(since)

    counts = run(args, body)
    domain = (args.domain or "").lower().rstrip(".")
    if domain:
        counts = [c for c in counts if c.sender_domain == domain]
    shown = rates(counts)
    window = {"days": opts.window_days, "from": since, "to": now}
    if args.json:
        for scope, r in shown.items():
            print(json.dumps({"scope": scope, "delivered": r.delivered, "complaints": r.complaints, "rate": r.rate,
                              "level": r.level(opts), "window": window, "warning": opts.warning, "limit": opts.limit,
                              "min_delivered": opts.min_delivered}))
        return 0
    print(f"complaint rates over {opts.window_days} days ({_when(since)} .. {_when(now)} UTC); warning above "
          f"{opts.warning:.2%}, limit {opts.limit:.2%}, counted from {opts.min_delivered} delivered"
          + ("" if opts.enabled else "; the guard is off in this policy"))
    if not shown:
        print(f"no marketing deliveries recorded{' for ' + domain if domain else ''} in the window")
    for scope, r in shown.items():
        print(f"{scope:<40} {r.complaints:>7} complaints / {r.delivered:>9} delivered = {r.rate:7.3%}  {LEVEL_TEXT[r.level(opts)]}")
    return 0


def _when(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.gmtime(ts))


def register(sub: Any) -> None:
    s = sub.add_parser("complaints", help="the complaint-rate guard: spam-complaint rates per sender domain and brand")
    csub = s.add_subparsers(dest="complaints_command", required=True, metavar="ACTION")
    c = csub.add_parser("show", help="rates, counts and windows per sender domain and brand")
    add_common(c)
    c.add_argument("--policy", help="policy file whose [checks.complaint_rate] applies (default: the config's)")
    c.add_argument("--domain", help="only this sender domain (and the brands it sends for)")
    c.add_argument("--json", action="store_true", help="one JSON line per scope")
    c.set_defaults(func=cmd_complaints_show)
