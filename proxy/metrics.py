"""Prometheus metrics of the relay, and the last-hour counts `sendwarden status` shows.

With one worker, each Service owns its own CollectorRegistry (so several services in one test
process do not collide). With `workers` > 1, prometheus_client's multiprocess mode: every
worker writes its values to its own memory-mapped file in STATE_DIR/metrics (emptied by the
main process at start), and the main process's /metrics sums them, so every count is the
host's; gauges say how they combine (connections: the sum over live workers). A worker that
dies is marked dead (its live gauges dropped, its counters kept). Chosen over the main process
collecting from its workers: no protocol of our own, and a value is written by the worker
that counts it, with no message between processes.

Names follow Prometheus conventions: `sendwarden_` prefix, `_total` for counters, `_seconds`
histograms.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator
from pathlib import Path

from prometheus_client import CollectorRegistry, Gauge, Histogram, values
from prometheus_client import Counter as PCounter
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from prometheus_client.registry import Collector

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


def share_between_processes(directory: Path, clean: bool) -> None:
    """Switch this process to prometheus_client's multiprocess mode, with its files in
    `directory` (`clean`: the main process, before any worker starts, empties it: files of a
    previous run would be counted). Called before any metric is made; worker children inherit
    the environment variable, which makes prometheus_client start in this mode."""
    if clean:
        shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True, exist_ok=True)
    os.environ[MULTIPROC_ENV] = str(directory)
    if not getattr(values.ValueClass, "_multiprocess", False):
        # Already imported in single-process mode (the environment is read at import).
        values.ValueClass = values.MultiProcessValue()  # type: ignore[no-untyped-call]


def shared() -> bool:
    return bool(getattr(values.ValueClass, "_multiprocess", False))


def worker_gone(pid: int) -> None:
    """A worker process ended: drop its live gauges (its counters still count)."""
    if shared():
        mark_process_dead(pid)  # type: ignore[no-untyped-call]


class LastHour:
    """Counts per key over the last 60 minutes, in one-minute buckets, with the running total
    kept as it goes (so that a count is O(1))."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.buckets: deque[tuple[int, Counter[str]]] = deque()
        self.running: Counter[str] = Counter()

    def add(self, key: str, n: int = 1) -> int:
        """Count `n` for `key`; return its count over the last hour."""
        minute = int(self.clock() // 60)
        if not self.buckets or self.buckets[-1][0] != minute:
            self.buckets.append((minute, Counter()))
            self._trim(minute)
        self.buckets[-1][1][key] += n
        self.running[key] += n
        return self.running[key]

    def _trim(self, minute: int) -> None:
        while self.buckets and self.buckets[0][0] <= minute - 60:
            self.running.subtract(self.buckets.popleft()[1])

    def totals(self) -> Counter[str]:
        self._trim(int(self.clock() // 60))
        return +self.running  # a copy without the keys at 0


class _Uptime(Collector):
    """Seconds since the main process started (a function of the clock, not a stored value,
    so it is collected here rather than from the workers' files)."""

    def __init__(self, started: float) -> None:
        self.started = started

    def collect(self) -> Iterator[Metric]:
        yield GaugeMetricFamily("sendwarden_uptime_seconds", "Seconds since the process started",
                                value=time.time() - self.started)


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
        self.shared = shared()
        # What /metrics serves; with workers, the sum of every worker's files.
        self.registry = CollectorRegistry()
        r = self.registry
        if self.shared:
            MultiProcessCollector(self.registry)  # type: ignore[no-untyped-call]
            r = CollectorRegistry()  # this process's own metrics: read back through the files
        self.started = time.time()
        self.registry.register(_Uptime(self.started))
        self.messages = PCounter("sendwarden_messages_total", "Messages judged, by stream and effective action", ["stream", "action"], registry=r)
        self.findings = PCounter("sendwarden_findings_total", "Findings, by rule and the action the policy gave it", ["rule", "action"], registry=r)
        self.rcpt_refusals = PCounter("sendwarden_rcpt_refusals_total", "Recipients refused at RCPT, by rule", ["rule"], registry=r)
        self.recipient_domains = PCounter("sendwarden_recipient_domain_checks_total", "Recipient domains judged at RCPT, by outcome (ok or the rule found)", ["result"], registry=r)
        self.blocklist_lookups = PCounter("sendwarden_blocklist_lookups_total", "URI blocklist lookups, by zone and result (listed, clean, failed)", ["zone", "result"], registry=r)
        self.privacy_links_dead = Gauge("sendwarden_privacy_links_dead", "Privacy links marked dead by `links check`, by sender domain", ["sender_domain"], registry=r,
                         multiprocess_mode="livemax")
        self.complaint_rate = Gauge("sendwarden_complaint_rate", "Spam complaints / delivered marketing recipients over the window, by scope (domain:NAME, brand:NAME)", ["scope"], registry=r,
                         multiprocess_mode="livemax")
        self.complaint_rate_level = Gauge("sendwarden_complaint_rate_level", "0 under the warning rate (or too little volume), 1 above it, 2 above the limit", ["scope"], registry=r,
                         multiprocess_mode="livemax")
        self.reputation_failures = PCounter("sendwarden_reputation_refresh_failures_total", "Failed re-reads of dead links and complaint counts from the store", registry=r)
        self.upstream_replies = PCounter("sendwarden_upstream_replies_total", "Upstream outcomes, by reply class (2xx, 4xx, 5xx, unreachable)", ["reply_class"], registry=r)
        self.policy_seconds = Histogram("sendwarden_policy_seconds", "Time to look up facts and judge one message", registry=r, buckets=_LATENCY_BUCKETS)
        self.upstream_seconds = Histogram("sendwarden_upstream_seconds", "Time to relay one message upstream", registry=r, buckets=_LATENCY_BUCKETS)
        self.transaction_seconds = Histogram("sendwarden_transaction_seconds", "End of DATA to our reply", registry=r, buckets=_LATENCY_BUCKETS)
        self.store_errors = PCounter("sendwarden_store_errors_total", "Failures of the quarantine or recipient store", ["store"], registry=r)
        self.reloads = PCounter("sendwarden_reloads_total", "Configuration reloads, by result", ["result"], registry=r)
        self.rate_limited = PCounter("sendwarden_rate_limited_total", "Commands refused by a rate limit, by limit name", ["limit"], registry=r)
        self.connections = Gauge("sendwarden_connections", "Open client connections", registry=r, multiprocess_mode="livesum")
        # Only the main process counts the quarantine and answers /healthz; every worker probes.
        self.quarantine_held = Gauge("sendwarden_quarantine_held", "Messages held in the quarantine", registry=r, multiprocess_mode="livemax")
        self.upstream_up = Gauge("sendwarden_upstream_up", "1 when the last upstream probe succeeded (of every worker)", registry=r, multiprocess_mode="livemin")
        self.last_hour_gauge = Gauge("sendwarden_messages_last_hour", "Messages in the last 60 minutes, by effective action", ["action"], registry=r, multiprocess_mode="livesum")
        self.last_hour = LastHour()

    def watch_link_check(self, state_dir: Path) -> None:
        """Export the result `sendwarden links check` left in the state directory."""
        self.registry.register(LinkCheckCollector(state_dir / LINK_CHECK_FILE))

    def message(self, stream: str, action: str) -> None:
        self.messages.labels(stream, action).inc()
        count = self.last_hour.add(action)
        if self.shared:  # the main process cannot refresh another worker's gauge at the scrape
            self.last_hour_gauge.labels(action).set(count)

    def host_counts(self, sessions: int) -> tuple[int, Counter[str]]:
        """Open sessions and the last hour's counts by action, of every worker (`sessions`:
        this process's, enough when it is the only one)."""
        if not self.shared:
            return sessions, self.last_hour.totals()
        self.refresh_last_hour()
        totals: Counter[str] = Counter()
        for family in self.registry.collect():
            for sample in family.samples:
                if sample.name == "sendwarden_connections":
                    sessions = int(sample.value)
                elif sample.name == "sendwarden_messages_last_hour":
                    totals[sample.labels["action"]] = int(sample.value)
        return sessions, totals

    def refresh_last_hour(self) -> None:
        totals = self.last_hour.totals()
        for action in self.ACTIONS:
            self.last_hour_gauge.labels(action).set(totals.get(action, 0))


def reply_class(code: int | None) -> str:
    if code is None:
        return "unreachable"
    return f"{str(code)[0]}xx"
