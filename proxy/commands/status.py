"""`sendwarden status`: a short summary for people, read from the relay's /metrics endpoint."""

from __future__ import annotations

import argparse
import json
import urllib.error
import urllib.request
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from proxy.commands.common import EXIT_NOT_READY, CliError, add_config, add_json, config_for, exits


def fetch(url: str, timeout: float = 5) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """Scrape `url` and index the samples by metric name and labels."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            text = resp.read().decode("utf-8")
    except (urllib.error.URLError, OSError) as exc:
        raise CliError(f"cannot reach {url}: {getattr(exc, 'reason', exc)}") from None
    samples: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples.setdefault(s.name, {})[tuple(sorted(s.labels.items()))] = s.value
    return samples


def summarize(samples: dict[str, dict[tuple[tuple[str, str], ...], float]]) -> dict[str, Any]:
    def one(name: str) -> float:
        return next(iter(samples.get(name, {0: 0.0}).values()), 0.0)

    last_hour = {dict(k).get("action", ""): int(v) for k, v in samples.get("sendwarden_messages_last_hour", {}).items()}
    dead = {dict(k).get("sender_domain", ""): int(v) for k, v in samples.get("sendwarden_privacy_links_dead", {}).items() if v}
    rates = samples.get("sendwarden_complaint_rate", {})
    levels = {dict(k).get("scope", ""): int(v) for k, v in samples.get("sendwarden_complaint_rate_level", {}).items()}
    complaints = {scope: {"rate": rates.get((("scope", scope),), 0.0), "level": ("warning", "limit")[level - 1]}
                  for scope, level in sorted(levels.items()) if level}
    return {
        "uptime_seconds": int(one("sendwarden_uptime_seconds")),
        "last_hour": last_hour,
        "quarantine_held": int(one("sendwarden_quarantine_held")),
        "upstream_up": one("sendwarden_upstream_up") == 1,
        "connections": int(one("sendwarden_connections")),
        "privacy_links_dead": dead,
        "complaint_rates": complaints,
        "reloads_failed": int(sum(v for k, v in samples.get("sendwarden_reloads_total", {}).items() if dict(k).get("result") == "failed")),
    }


def _duration(seconds: int) -> str:
    d, rest = divmod(seconds, 86400)
    h, rest = divmod(rest, 3600)
    m, s = divmod(rest, 60)
    return (f"{d}d " if d else "") + f"{h:02d}:{m:02d}:{s:02d}"


def cmd_status(args: argparse.Namespace) -> int:
    url = args.url
    if not url:
        address = config_for(args.config).file.metrics.address
        if not address:
            raise CliError("the configuration has no [metrics] address; give --url")
        url = f"http://{address}/metrics"
    info = summarize(fetch(url))
    if args.json:
        print(json.dumps(info))
    else:
        lh = info["last_hour"]
        print(f"uptime        {_duration(info['uptime_seconds'])}")
        print(f"last hour     {lh.get('relay', 0)} relayed, {lh.get('quarantine', 0)} held, "
              f"{lh.get('reject', 0)} rejected, {lh.get('refused', 0)} refused")
        print(f"quarantine    {info['quarantine_held']} held")
        print(f"upstream      {'up' if info['upstream_up'] else 'DOWN'}")
        print(f"connections   {info['connections']}")
        for domain, n in sorted(info["privacy_links_dead"].items()):
            print(f"privacy link  {n} dead link(s) of {domain} (see `sendwarden links check`)")
        for scope, r in info["complaint_rates"].items():
            print(f"complaints    {scope} at {r['rate']:.2%}: above the {r['level']} (see `sendwarden complaints show`)")
        if info["reloads_failed"]:
            print(f"reloads       {info['reloads_failed']} failed (see the log)")
    return 0 if info["upstream_up"] else EXIT_NOT_READY


def register(sub: Any) -> None:
    s = sub.add_parser("status", help="a short summary of a running relay (from its metrics endpoint)")
    add_config(s)
    s.add_argument("--url", help="the metrics URL, e.g. http://127.0.0.1:9325/metrics")
    add_json(s)
    exits(s, {0: "the relay answers and its upstream is up", EXIT_NOT_READY: "the relay answers but its upstream is down"})
    s.set_defaults(func=cmd_status)
