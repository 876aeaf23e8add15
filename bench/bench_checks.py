"""Micro-benchmark: what the policy engine costs per message, inline, on one core.

Parses a message and runs every check of the default policy's marketing stream on it, as the
relay does for each message, COUNT times, and prints the per-message time (median, p95, mean)
and where it goes (parse; text and HTML decode; the one HTML walk; the checks). The default
message is the ~30 KB HTML newsletter of the test corpus, which passes the default policy.

    .venv/bin/python bench/bench_checks.py [--count 2000] [--file MSG.eml] [--policy FILE]

A figure, not a test: tests/test_bench.py only proves that it runs.
"""

from __future__ import annotations

import argparse
import gc
from email.parser import BytesParser
from email.policy import compat32
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from proxy.message.mime import Message  # noqa: E402
from proxy.policy.engine import findings, judge  # noqa: E402
from proxy.policy.loader import BUILTIN_DEFAULT, load_policy  # noqa: E402
from proxy.policy.registry import Context  # noqa: E402

DEFAULT_FILE = ROOT / "tests" / "fixtures" / "corpus" / "newsletter_en.eml"


def _ms(samples: list[float]) -> str:
    samples = sorted(samples)
    p95 = samples[min(len(samples) - 1, int(len(samples) * 0.95))]
    return f"median {statistics.median(samples) * 1000:7.3f} ms   p95 {p95 * 1000:7.3f} ms   mean {statistics.fmean(samples) * 1000:7.3f} ms"


def run(count: int, path: Path, policy_path: str) -> dict[str, list[float]]:
    raw = path.read_bytes()
    if b"\r\n" not in raw:
        raw = raw.replace(b"\n", b"\r\n")
    policy = load_policy(policy_path)
    stream = policy.streams[policy.default_stream]
    ctx = Context(stream=stream.name, marketing=stream.marketing)
    verdict = judge(policy, Message.from_bytes(raw), ctx)
    if verdict.rules:
        print(f"note: the message is not clean under this policy: {verdict.rules}")
    for _ in range(min(50, count)):  # warm caches (regex, PSL, imports)
        findings(policy, Message.from_bytes(raw), ctx)
    times: dict[str, list[float]] = {"total": [], "parse": [], "decode": [], "html": [], "checks": [], "stdlib": []}
    clock = time.perf_counter
    gc.collect()
    for _ in range(count):
        t0 = clock()
        msg = Message.from_bytes(raw)
        t1 = clock()
        msg.text, msg.html  # noqa: B018  (decode the bodies)
        t2 = clock()
        msg.html_view  # noqa: B018  (the one HTML walk)
        t3 = clock()
        findings(policy, msg, ctx)
        t4 = clock()
        BytesParser(policy=compat32).parsebytes(raw)  # the yardstick: the stdlib's parse of the whole message
        t5 = clock()
        for key, value in (("parse", t1 - t0), ("decode", t2 - t1), ("html", t3 - t2), ("checks", t4 - t3), ("total", t4 - t0),
                           ("stdlib", t5 - t4)):
            times[key].append(value)
    return times


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--count", type=int, default=2000)
    ap.add_argument("--file", type=Path, default=DEFAULT_FILE)
    ap.add_argument("--policy", default=BUILTIN_DEFAULT)
    args = ap.parse_args(argv)
    times = run(args.count, args.file, args.policy)
    size = args.file.stat().st_size
    print(f"{args.file.name}: {size / 1024:.1f} KB, {args.count} runs, policy {args.policy}, Python {sys.version.split()[0]}")
    for key, label in (("total", "parse + all checks"), ("parse", "  MIME parse"), ("decode", "  body decode"),
                       ("html", "  HTML walk"), ("checks", "  checks")):
        print(f"{label:<20} {_ms(times[key])}")
    # our parse elides bodies (proxy/message/elide.py): the stdlib's parse of the whole message,
    # timed next to it, is the yardstick
    ratio = statistics.median(times["total"]) / statistics.median(times["stdlib"])
    print(f"parse + all checks = {ratio:.1f} x the stdlib's compat32 parse alone (a load-independent figure)")
    print(f"throughput (one core, parse + checks only): {1 / statistics.median(times['total']):,.0f} messages/s")
    try:
        print(f"load average while measuring: {open('/proc/loadavg').read().split()[0]} on {os.cpu_count()} cores")
    except OSError:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
