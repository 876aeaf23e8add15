"""Prometheus metrics for one relay process, and the last-hour counts `sendwarden status` shows.

Each Service owns its own CollectorRegistry (so several services in one test process do not
collide). Names follow Prometheus conventions: `sendwarden_` prefix, `_total` for counters,
`_seconds` histograms.
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter, deque
from pathlib import Path
from typing import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter as PCounter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class LastHour:
    """Counts per key over the last 60 minutes, in one-minute buckets."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.buckets: deque[tuple[int, Counter[str]]] = deque()

    def add(self, key: str, n: int = 1) -> None:
        minute = int(self.clock() // 60)
        if not self.buckets or self.buckets[-1][0] != minute:
            self.buckets.append((minute, Counter()))
        self.buckets[-1][1][key] += n
        self._trim(minute)

    def _trim(self, minute: int) -> None:
        while self.buckets and self.buckets[0][0] <= minute - 60:
            self.buckets.popleft()

    def totals(self) -> Counter[str]:
        self._trim(int(self.clock() // 60))
        total: Counter[str] = Counter()
        for _, counts in self.buckets:
            total.update(counts)
        return total


# `sendwarden links check` runs as a oneshot (a systemd timer) and leaves its result here, in the
# state directory; the relay exports it, so that an alert can see dead privacy links.
LINK_CHECK_FILE = "links-check.json"


def write_link_check(state_dir: Path, checked: int, dead: int, at: float) -> Path:
    """Record a link check's result atomically (write, fsync, rename)."""
    path = state_dir / LINK_CHECK_FILE
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump({"checked": checked, "dead": dead, "finished": at}, fh)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    return path


class LinkCheckCollector(Collector):
    """The last link check's result, read at scrape time (a collector of its own rather than
    gauges: the values live in a file another process writes). The file is read again only when
    it changed (one stat per scrape); a missing or unreadable one reads as no check yet."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._seen: tuple[int, int] | None = None
        self._values = (0.0, 0.0, 0.0)

    def _read(self) -> tuple[float, float, float]:
        try:
            st = self.path.stat()
            if (st.st_mtime_ns, st.st_size) != self._seen:
                data = json.loads(self.path.read_text(encoding="utf-8"))
                self._values = (float(data["checked"]), float(data["dead"]), float(data["finished"]))
                self._seen = (st.st_mtime_ns, st.st_size)
        except (OSError, ValueError, TypeError, KeyError):
            self._values, self._seen = (0.0, 0.0, 0.0), None
        return self._values

    def collect(self) -> Iterator[Metric]:
        checked, dead, finished = self._read()
        yield GaugeMetricFamily("sendwarden_links_checked", "Privacy links the last `links check` probed", value=checked)
        yield GaugeMetricFamily("sendwarden_links_dead", "Privacy links the last `links check` found dead", value=dead)
        yield GaugeMetricFamily("sendwarden_links_check_timestamp_seconds",
                                "When the last `links check` finished (Unix time; 0: none yet)", value=finished)


class Metrics:
    ACTIONS = ("relay", "quarantine", "reject", "refused")

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.started = time.time()
        self.messages = PCounter("sendwarden_messages_total", "Messages judged, by stream and effective action", ["stream", "action"], registry=r)
        self.findings = PCounter("sendwarden_findings_total", "Findings, by rule and the action the policy gave it", ["rule", "action"], registry=r)
        self.rcpt_refusals = PCounter("sendwarden_rcpt_refusals_total", "Recipients refused at RCPT, by rule", ["rule"], registry=r)
        self.upstream_replies = PCounter("sendwarden_upstream_replies_total", "Upstream outcomes, by reply class (2xx, 4xx, 5xx, unreachable)", ["reply_class"], registry=r)
        self.policy_seconds = Histogram("sendwarden_policy_seconds", "Time to look up facts and judge one message", registry=r, buckets=_LATENCY_BUCKETS)
        self.upstream_seconds = Histogram("sendwarden_upstream_seconds", "Time to relay one message upstream", registry=r, buckets=_LATENCY_BUCKETS)
        self.transaction_seconds = Histogram("sendwarden_transaction_seconds", "End of DATA to our reply", registry=r, buckets=_LATENCY_BUCKETS)
        self.store_errors = PCounter("sendwarden_store_errors_total", "Failures of the quarantine or recipient store", ["store"], registry=r)
        self.reloads = PCounter("sendwarden_reloads_total", "Configuration reloads, by result", ["result"], registry=r)
        self.rate_limited = PCounter("sendwarden_rate_limited_total", "Commands refused by a rate limit, by limit name", ["limit"], registry=r)
        self.connections = Gauge("sendwarden_connections", "Open client connections", registry=r)
        self.quarantine_held = Gauge("sendwarden_quarantine_held", "Messages held in the quarantine", registry=r)
        self.upstream_up = Gauge("sendwarden_upstream_up", "1 when the last upstream probe succeeded", registry=r)
        self.last_hour_gauge = Gauge("sendwarden_messages_last_hour", "Messages in the last 60 minutes, by effective action", ["action"], registry=r)
        self.uptime = Gauge("sendwarden_uptime_seconds", "Seconds since the process started", registry=r)
        self.uptime.set_function(lambda: time.time() - self.started)
        self.last_hour = LastHour()

    def watch_link_check(self, state_dir: Path) -> None:
        """Export the result `sendwarden links check` left in the state directory."""
        self.registry.register(LinkCheckCollector(state_dir / LINK_CHECK_FILE))

    def message(self, stream: str, action: str) -> None:
        self.messages.labels(stream, action).inc()
        self.last_hour.add(action)

    def refresh_last_hour(self) -> None:
        totals = self.last_hour.totals()
        for action in self.ACTIONS:
            self.last_hour_gauge.labels(action).set(totals.get(action, 0))


def reply_class(code: int | None) -> str:
    if code is None:
        return "unreachable"
    return f"{str(code)[0]}xx"
