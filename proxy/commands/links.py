"""`sendwarden links check`: the 30-day privacy-link duty.

The AUP says the privacy-policy link in a marketing message must keep working for 30 days after
the send. The relay records every privacy URL it relays (with the sender domain and the send
times); this command probes those whose window is still open (HEAD, then GET; redirects
followed to a final 2xx; bounded concurrency and timeouts; only global addresses, unless the
configuration's [links] allow_networks lists internal ranges), prints the dead ones with who
used them, and exits 11 when any is dead (14 when none is dead but some could not be checked), so a systemd timer or cron job can alert on it.

Each result is written to the store: a dead link is marked (new messages that carry it get
`privacy.link_dead` once the relays re-read the marks), a live one, or one whose window has
closed, loses its mark.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from proxy.commands.common import EXIT_NOT_READY, EXIT_UNCHECKED, exits, rfc3339
from proxy.commands.storecli import add_common, run
from proxy.config import load_config
from proxy.dns import Resolver
from proxy.metrics import write_link_check
from proxy.outbound.linkprobe import ProbeResult, probe_links
from proxy.message.urls import normalise_url
from proxy.store.base import DeadLink, PrivacyLink, RecipientStore



def marks(results: list[ProbeResult], marked: list[DeadLink], now: float) -> tuple[list[DeadLink], list[tuple[str, str]]]:
    """The marks to set (dead links) and to clear (live links, and marked links not probed
    any more: their window has closed), by sender domain and normalised URL."""
    dead: list[DeadLink] = []
    alive: list[tuple[str, str]] = []
    unchecked: set[tuple[str, str]] = set()
    for r in results:
        link: PrivacyLink = r.record  # type: ignore[assignment]
        key = (link.sender_domain, normalise_url(link.url))
        if not r.checked:  # our DNS failed: keep whatever mark it has, set none
            unchecked.add(key)
        elif r.alive:
            alive.append(key)
        else:
            dead.append(DeadLink(key[1], key[0], now, now, (r.error or f"HTTP {r.status}")[:300]))
    probed = {(d.sender_domain, d.url) for d in dead} | set(alive) | unchecked
    alive += [(m.sender_domain, m.url) for m in marked if (m.sender_domain, m.url) not in probed]
    return dead, alive


def cmd_links_check(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    cfg = config.file.links

    async def body(store: RecipientStore) -> list[Any]:
        now = time.time()
        records: list[PrivacyLink] = await store.privacy_links_within(now, args.days)
        results = await probe_links(records, concurrency=args.concurrency or cfg.concurrency,
                                    timeout=args.timeout or cfg.timeout, resolver=Resolver.from_config(config.file.dns),
                                    allow_networks=cfg.allow_networks)
        dead, alive = marks(results, await store.dead_privacy_links(), now)
        await store.mark_privacy_links(dead, alive, now)
        return results

    results = run(args, body)
    dead = [r for r in results if not r.alive and r.checked]
    unchecked = [r for r in results if not r.checked]
    try:  # for the relay's /metrics (sendwarden_links_dead), and so for alerts
        write_link_check(config.state_dir, len(results), len(dead), time.time())
    except OSError as exc:
        print(f"sendwarden: the result was not recorded for /metrics: {exc}", file=sys.stderr)
    if args.json:
        for r in results:
            link: PrivacyLink = r.record
            print(json.dumps({"url": link.url, "alive": r.alive, "checked": r.checked, "status": r.status, "final_url": r.final_url,
                              "error": r.error, "sender_domain": link.sender_domain, "messages": link.messages,
                              "first_sent": rfc3339(link.first_sent), "last_sent": rfc3339(link.last_sent)}))
    else:
        print(f"{len(results)} privacy link(s) inside their 30-day window; {len(dead)} dead"
              + (f"; {len(unchecked)} not checked (DNS failed; their marks are kept)" if unchecked else ""))
        for r in dead:
            link = r.record
            why = r.error or f"HTTP {r.status}"
            print(f"DEAD  {link.url}\n      {why}; used by {link.sender_domain} in {link.messages} message(s), "
                  f"{rfc3339(link.first_sent)} .. {rfc3339(link.last_sent)}")
        if dead:
            print("marked dead in the store: new messages carrying these links get privacy.link_dead until a check finds them alive")
    return EXIT_NOT_READY if dead else EXIT_UNCHECKED if unchecked else 0


def register(sub: Any) -> None:
    s = sub.add_parser("links", help="the privacy-link duty: probe recorded privacy URLs")
    lsub = s.add_subparsers(dest="links_command", required=True, metavar="ACTION")
    c = lsub.add_parser("check", help="probe every privacy URL still inside its window, mark the dead; exit 11 when one is dead")
    add_common(c)
    c.add_argument("--days", type=int, default=30, help="the window after the last send (default 30)")
    c.add_argument("--concurrency", type=int, default=0, metavar="N", help="parallel probes (default: [links] concurrency, 8)")
    c.add_argument("--timeout", type=float, default=0.0, help="seconds per URL (default: [links] timeout, 10)")
    c.add_argument("--json", action="store_true", help="one JSON line per URL")
    exits(c, {0: "every privacy link answers", EXIT_NOT_READY: "a privacy link is dead (marked in the store)",
             EXIT_UNCHECKED: "none is dead, but some could not be checked (DNS failed); their marks are kept"})
    c.set_defaults(func=cmd_links_check)
