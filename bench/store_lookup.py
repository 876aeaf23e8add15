"""Per-RCPT store lookup on a large table: prints microseconds per lookup (not a timed test).

    .venv/bin/python bench/store_lookup.py [--rows 1000000] [--lookups 20000] [--db PATH]
    .venv/bin/python bench/store_lookup.py --import-rows 1000000   # CLI import: time, peak RSS

The table gets `--rows` suppressions (a third brand-scoped), as many consent records, and a
send history for one recipient in ten; lookups then ask what the relay asks at RCPT time with
suppression, consent and a frequency cap all on: for hits and misses, straight on the
connection (the SQL cost) and through the store's async interface (what the relay pays,
including the hop to the reader thread, with the process on one core (cpu_affinity) and on all
of them).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from proxy.store import GLOBAL, AddressNormalizer, Query, Scope, open_store
from proxy.store.sqlite import SqliteStore, connect
from proxy.store.sqlite_schema import migrate

BRAND = Scope("brand", "shop")
QUERY = Query(scopes=(GLOBAL, BRAND), consent_scope="shop", windows=((BRAND, 7 * 86400.0),), overrides=True)


def fill(path: Path, rows: int) -> None:
    db = connect(path)
    migrate(db)
    have = db.execute("SELECT count(*) FROM suppression").fetchone()[0]
    if have >= rows:
        print(f"reusing {path} ({have:,} suppressions)")
        return
    t0 = time.perf_counter()
    now = time.time()
    step = 50_000
    for start in range(have, rows, step):
        n = range(start, min(rows, start + step))
        db.execute("BEGIN")
        db.executemany("INSERT INTO suppression VALUES (?, ?, ?, 'import', 'bench', ?)",
                       ((f"user{i:08d}@example.org", "brand" if i % 3 == 0 else "global", "shop" if i % 3 == 0 else "", now) for i in n))
        db.executemany("INSERT INTO consent (address, scope, status, consented_at, source, proof, recorded_at)"
                       " VALUES (?, 'shop', 'granted', ?, 'bench', 'p', ?)",
                       ((f"reader{i:08d}@example.org", now, now) for i in n))
        db.executemany("INSERT INTO sends VALUES (?, ?, 'shop', 'marketing')",
                       ((f"reader{i:08d}@example.org", now - (i % 5) * 86400) for i in n if i % 10 == 0))
        db.execute("COMMIT")
    db.execute("ANALYZE")
    db.close()
    print(f"filled {rows:,} suppressions + {rows:,} consent records in {time.perf_counter() - t0:.1f} s")


def report(label: str, samples: list[float]) -> None:
    samples.sort()
    us = [s * 1e6 for s in samples]
    print(f"{label:<44} median {statistics.median(us):7.1f} µs   p99 {us[int(len(us) * 0.99)]:7.1f} µs")


async def measure(path: Path, rows: int, lookups: int) -> None:
    db = connect(path, readonly=True)
    rng = random.Random(1)
    now = time.time()
    cases = {
        "suppressed (hit)": lambda: f"user{rng.randrange(rows):08d}@example.org",
        "consented, counted (miss on suppression)": lambda: f"reader{rng.randrange(rows):08d}@example.org",
        "unknown address": lambda: f"nobody{rng.randrange(rows):08d}@example.net",
    }
    picked = {label: [pick() for _ in range(lookups)] for label, pick in cases.items()}
    unopened = SqliteStore(path, AddressNormalizer())  # only its lookup_sync, on our connection
    for label, addresses in picked.items():
        sync = []
        for a in addresses:
            t = time.perf_counter()
            unopened.lookup_sync(db, unopened.normalize(a), QUERY, now)
            sync.append(time.perf_counter() - t)
        report(f"SQL on the connection: {label}", sync)
    db.close()
    # The hop to the reader thread and back is two thread wake-ups. With the relay on one
    # core (as bench/smtp_bench.py runs it) they are context switches; with the reader
    # thread free to run on the other core, each is a cross-core wake-up, which on this
    # VM costs several times the SQL. Both are printed; a relay with cpu_affinity = "auto"
    # (or a list) binds each worker and its threads to one CPU: the first case.
    everywhere = os.sched_getaffinity(0)
    for where, cpus in (("one core, as cpu_affinity binds it", {min(everywhere)}), ("any core", everywhere)):
        os.sched_setaffinity(0, cpus)  # before open: the store's threads inherit it
        store = open_store(f"sqlite:{path}", AddressNormalizer())
        assert isinstance(store, SqliteStore)
        await store.open()
        for label, addresses in picked.items():
            hop = []
            for a in addresses[: lookups // 4]:
                t = time.perf_counter()
                await store.lookup(a, QUERY, now)
                hop.append(time.perf_counter() - t)
            report(f"async lookup (reader thread, {where}): {label}", hop)
        await store.close()
    os.sched_setaffinity(0, everywhere)


def import_run(rows: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        (base / "c.toml").write_text('state_dir = "var"\n')
        csv_path = base / "big.csv"
        with csv_path.open("w") as fh:
            fh.write("address,scope,reason,source\n")
            for i in range(rows):
                fh.write(f"user{i:08d}@example.org,{'brand:shop' if i % 3 == 0 else 'global'},import,crm\n")
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "proxy.cli", "suppress", "import", "--config", str(base / "c.toml"), str(csv_path)],
                       check=True)
        took = time.perf_counter() - t0
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        print(f"CLI import of {rows:,} rows ({csv_path.stat().st_size / 1e6:.0f} MB, validated then applied):"
              f" {took:.1f} s, {rows / took:,.0f} rows/s, peak RSS {peak:.0f} MiB")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--lookups", type=int, default=20_000)
    p.add_argument("--db", type=Path, default=Path("var/bench-store.sqlite3"))
    p.add_argument("--import-rows", type=int, default=0, help="instead: time a CLI import of this many rows")
    args = p.parse_args()
    if args.import_rows:
        import_run(args.import_rows)
        return
    args.db.parent.mkdir(parents=True, exist_ok=True)
    fill(args.db, args.rows)
    asyncio.run(measure(args.db, args.rows, args.lookups))


if __name__ == "__main__":
    main()
