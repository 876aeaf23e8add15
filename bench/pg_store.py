"""The PostgreSQL store under load: per-RCPT lookup latency and throughput, and counted sends
per second, with several concurrent callers as a node of a fleet has (not a timed test).

    .venv/bin/python bench/pg_store.py [--rows 200000] [--lookups 20000] [--concurrency 50]
                                       [--pool 10] [--url postgresql://postgres@127.0.0.1/DB]

Without --url it creates a throwaway database on the local server and drops it afterwards. The
data are as in bench/store_lookup.py (suppressions, consent, a send history for one reader in
ten); lookups ask what the relay asks at RCPT time with suppression, consent and a frequency cap.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import secrets
import statistics
import sys
import time
from pathlib import Path

import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from proxy.store import GLOBAL, AddressNormalizer, Query, Scope
from proxy.store.pg import PgStore
from proxy.store.pgconn import PgPool

BRAND = Scope("brand", "shop")
QUERY = Query(scopes=(GLOBAL, BRAND), consent_scope="shop", windows=((BRAND, 7 * 86400.0),), overrides=True)
SERVER = "postgresql://postgres@127.0.0.1:5432"


async def fill(url: str, rows: int) -> None:
    db = await asyncpg.connect(url)
    now = time.time()
    t0 = time.perf_counter()
    await db.copy_records_to_table("suppression", records=(
        (f"user{i:08d}@example.org", "brand" if i % 3 == 0 else "global", "shop" if i % 3 == 0 else "", "import", "bench", now)
        for i in range(rows)))
    await db.execute("INSERT INTO consent SELECT nextval('consent_id'), 'reader' || lpad(i::text, 8, '0') || '@example.org',"
                     " 'shop', 'granted', $1, 'bench', 'p', $1, NULL FROM generate_series(0, $2 - 1) AS i", now, rows)
    await db.execute("INSERT INTO sends SELECT 'reader' || lpad(i::text, 8, '0') || '@example.org', $1 - (i % 5) * 86400,"
                     " 'shop', 'marketing' FROM generate_series(0, $2 - 1, 10) AS i", now, rows)
    await db.execute("ANALYZE")
    await db.close()
    print(f"filled {rows:,} suppressions + {rows:,} consent records in {time.perf_counter() - t0:.1f} s")


def report(label: str, samples: list[float], wall: float) -> None:
    us = sorted(s * 1e6 for s in samples)
    print(f"{label:<52} median {statistics.median(us):7.0f} µs   p99 {us[int(len(us) * 0.99)]:7.0f} µs"
          f"   {len(us) / wall:8,.0f}/s")


async def timed(calls: list, concurrency: int) -> tuple[list[float], float]:
    samples: list[float] = []
    queue = list(reversed(calls))

    async def worker() -> None:
        while queue:
            call = queue.pop()
            t = time.perf_counter()
            await call()
            samples.append(time.perf_counter() - t)

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return samples, time.perf_counter() - t0


async def measure(url: str, rows: int, lookups: int, concurrency: int, pool: int) -> None:
    store = PgStore(url, AddressNormalizer(), PgPool(url, max_size=pool))
    await store.open()
    rng = random.Random(1)
    now = time.time()
    cases = {
        "suppressed (hit)": lambda: f"user{rng.randrange(rows):08d}@example.org",
        "consented, counted": lambda: f"reader{rng.randrange(rows):08d}@example.org",
        "unknown address": lambda: f"nobody{rng.randrange(rows):08d}@example.net",
    }
    print(f"pool {pool} connections, {concurrency} concurrent callers")
    for label, pick in cases.items():
        for conc in (1, concurrency):
            calls = [lambda a=pick(): store.lookup(a, QUERY, now) for _ in range(lookups if conc > 1 else lookups // 4)]
            samples, wall = await timed(calls, conc)
            report(f"lookup x{conc}: {label}", samples, wall)
    calls = [lambda a=f"reader{rng.randrange(rows):08d}@example.org": store.record_sends([a], "shop", "marketing", now)
             for _ in range(lookups)]
    samples, wall = await timed(calls, concurrency)
    report(f"record_sends x{concurrency} (1 recipient each)", samples, wall)
    await store.close()


async def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=200_000)
    p.add_argument("--lookups", type=int, default=20_000)
    p.add_argument("--concurrency", type=int, default=50)
    p.add_argument("--pool", type=int, default=10)
    p.add_argument("--url", default="")
    args = p.parse_args()
    url, name = args.url, ""
    if not url:
        name = f"sendwarden_bench_{secrets.token_hex(4)}"
        admin = await asyncpg.connect(f"{SERVER}/postgres")
        await admin.execute(f"CREATE DATABASE {name}")
        url = f"{SERVER}/{name}"
    try:
        store = PgStore(url, AddressNormalizer())
        await store.open()  # creates the schema
        await store.close()
        if name:
            await fill(url, args.rows)
        await measure(url, args.rows, args.lookups, args.concurrency, args.pool)
    finally:
        if name:
            await admin.execute(f"DROP DATABASE {name} WITH (FORCE)")
            await admin.close()


if __name__ == "__main__":
    asyncio.run(main())
