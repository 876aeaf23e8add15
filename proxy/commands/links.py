"""`sendwarden links check`: the 30-day privacy-link duty.

The AUP says the privacy-policy link in a marketing message must keep working for 30 days after
the send. The relay records every privacy URL it relays (with the sender domain and the send
times); this command probes those whose window is still open (HEAD, then GET; redirects
followed to a final 2xx; bounded concurrency and timeouts), prints the dead ones with who used
them, and exits 2 when any is dead, so a systemd timer or cron job can alert on it.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from proxy.commands.storecli import add_common, run
from proxy.config import load_config
from proxy.metrics import write_link_check
from proxy.outbound.linkprobe import probe_links
from proxy.store.base import PrivacyLink, RecipientStore

EXIT_DEAD = 2


def _when(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.gmtime(ts))


def cmd_links_check(args: argparse.Namespace) -> int:
    async def body(store: RecipientStore) -> list[Any]:
        records: list[PrivacyLink] = await store.privacy_links_within(time.time(), args.days)
        return await probe_links(records, concurrency=args.concurrency, timeout=args.timeout)

    results = run(args, body)
    dead = [r for r in results if not r.alive]
    try:  # for the relay's /metrics (sendwarden_links_dead), and so for alerts
        write_link_check(load_config(args.config).state_dir, len(results), len(dead), time.time())
    except OSError as exc:
        print(f"sendwarden: the result was not recorded for /metrics: {exc}", file=sys.stderr)
    if args.json:
        for r in results:
            link: PrivacyLink = r.record
            print(json.dumps({"url": link.url, "alive": r.alive, "status": r.status, "final_url": r.final_url,
                              "error": r.error, "sender_domain": link.sender_domain, "messages": link.messages,
                              "first_sent": link.first_sent, "last_sent": link.last_sent}))
    else:
        print(f"{len(results)} privacy link(s) inside their 30-day window; {len(dead)} dead")
        for r in dead:
            link = r.record
            why = r.error or f"HTTP {r.status}"
            print(f"DEAD  {link.url}\n      {why}; used by {link.sender_domain} in {link.messages} message(s), "
                  f"{_when(link.first_sent)} .. {_when(link.last_sent)} UTC")
    return EXIT_DEAD if dead else 0


def register(sub: Any) -> None:
    s = sub.add_parser("links", help="the privacy-link duty: probe recorded privacy URLs")
    lsub = s.add_subparsers(dest="links_command", required=True, metavar="ACTION")
    c = lsub.add_parser("check", help="probe every privacy URL still inside its window; exit 2 when one is dead")
    add_common(c)
    c.add_argument("--days", type=int, default=30, help="the window after the last send (default 30)")
    c.add_argument("--concurrency", type=int, default=8)
    c.add_argument("--timeout", type=float, default=10.0, help="seconds per URL")
    c.add_argument("--json", action="store_true", help="one JSON line per URL")
    c.set_defaults(func=cmd_links_check)
