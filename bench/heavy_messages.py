#!/usr/bin/env python3
"""Issue 17, points 2 and 3: what big messages cost a real `sendwarden serve`.

latency  a 20 MB attachment, three at once, 140 zips of 999 entries (the shapes of
         tests/reliability/test_heavy_messages.py), through a relay with a Maildir upstream,
         while a NOOP probe on another connection records the slowest answer (target 100 ms).
         The probe runs in a process of its own, so that the client writing 60 MB does not
         delay it; each shape runs --reps times and every run is printed.
memory   one message of --size MB (plain text, 74-octet lines, as in test_memory.py) relayed
         through a fresh relay to an SMTP sink: the relay's peak RSS (VmHWM) before and after,
         and the growth as a multiple of the message size (target: at most 3).

    .venv/bin/python bench/heavy_messages.py               # both
    .venv/bin/python bench/heavy_messages.py latency --reps 5
    .venv/bin/python bench/heavy_messages.py memory --size 24 [--dkim]

Only 127.0.0.1 is used. Figures only: nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import aiosmtplib

from tests.reliability.harness import POLICY, SENDER, make_message
from tests.reliability.serveproc import ServeProcess
from tests.reliability.test_heavy_messages import attachment, send, zips
from tests.support.dkimkit import key_config, make_key
from tests.support.sink import Sink
from tests.support.smtpclient import RawClient

MB = 1024 * 1024


def env() -> dict[str, str]:
    e = dict(os.environ)
    e["PYTHONPATH"] = str(Path(__file__).resolve().parent.parent)
    e.pop("SENDWARDEN_CONFIG", None)
    return e


def probe_process(port: int, stop: "multiprocessing.synchronize.Event", out: "multiprocessing.Queue[tuple[float, int]]") -> None:
    """NOOP every 10 ms on its own connection until told to stop; puts (worst seconds, count)."""

    async def run() -> tuple[float, int]:
        c = await RawClient.connect(port)
        await c.reply()
        await c.cmd("EHLO probe.test")
        out.put((0.0, -1))  # ready
        worst, count = 0.0, 0
        while not stop.is_set():
            t = time.perf_counter()
            reply = await c.cmd("NOOP", timeout=30)
            assert reply.startswith("250"), reply
            worst = max(worst, time.perf_counter() - t)
            count += 1
            await asyncio.sleep(0.01)
        await c.close()
        return worst, count

    out.put(asyncio.run(run()))


async def latency(reps: int, only: str | None) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        relay = await ServeProcess(Path(tmp), f"maildir:{tmp}/outbox", env(),
                                   {"limits": {"max_message_size": 64 * MB}}, POLICY).start()
        shapes = {
            "nothing (the probe alone, 2 s: this machine's floor)": list,
            "20 MB attachment": lambda: [attachment(20 * MB)],
            "three 20 MB at once": lambda: [attachment(20 * MB, f"big{i}") for i in range(3)],
            "140 zips of 999 entries": lambda: [zips(140, 999)],
        }
        ctx = multiprocessing.get_context("spawn")
        try:
            for name, make in shapes.items():
                if only and only not in name:
                    continue
                messages = make()
                for _ in range(reps):
                    stop, out = ctx.Event(), ctx.Queue()
                    probe = ctx.Process(target=probe_process, args=(relay.port, stop, out))
                    probe.start()
                    await asyncio.to_thread(out.get, True, 30)  # connected and probing
                    await asyncio.sleep(0.05)
                    t = time.perf_counter()
                    replies = await asyncio.gather(*(send(relay.port, m) for m in messages)) if messages else []
                    if not messages:
                        await asyncio.sleep(2)
                    seconds = time.perf_counter() - t
                    stop.set()
                    worst, count = await asyncio.to_thread(out.get, True, 30)
                    probe.join(10)
                    codes = "/".join(r[:3] for r in replies)
                    print(f"heavy: {name}: replies={codes}, seconds={seconds:.2f}, "
                          f"worst_noop_ms={round(worst * 1000)}, noops={count}", flush=True)
        finally:
            await relay.stop()


async def memory(size_mb: int, dkim: bool) -> None:
    sink = await Sink().start()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            extra: dict[str, object] = {"limits": {"max_message_size": 25 * MB}}
            if dkim:  # sign with a key for the sender's domain: the signing input counts too
                extra["dkim.keys"] = key_config(make_key(Path(tmp), SENDER.rpartition("@")[2], "bench"))["keys"]
            relay = await ServeProcess(Path(tmp), sink.url, env(), extra, POLICY).start()
            try:
                async def one(data: bytes) -> str:
                    client = aiosmtplib.SMTP(hostname="127.0.0.1", port=relay.port, start_tls=False, timeout=120)
                    await client.connect()
                    _, text = await client.sendmail(SENDER, ["reader@example.org"], data)
                    await client.quit()
                    return text

                await one(make_message("<warm@up.test>", "relay"))
                before = relay.status("VmHWM")
                data = make_message("<big@bench.test>", "relay", size=size_mb * MB)
                text = await one(data)
                peak = relay.status("VmHWM")
                growth = peak - before
                assert not dkim or b"DKIM-Signature:" in sink.received[-1].data[:4096]
                print(f"memory: {size_mb} MB message relayed{', DKIM-signed' if dkim else ''}: reply={text[:24]!r}, "
                      f"peak_rss_before_MB={before / MB:.1f}, peak_rss_after_MB={peak / MB:.1f}, "
                      f"growth_MB={growth / MB:.1f}, growth_x_size={growth / len(data):.2f}", flush=True)
            finally:
                await relay.stop()
    finally:
        await sink.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("what", nargs="?", choices=("latency", "memory", "both"), default="both")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--size", type=int, default=24, help="MB, for the memory case")
    ap.add_argument("--dkim", action="store_true", help="memory: with a DKIM signing key for the sender")
    ap.add_argument("--shape", help="only the latency shapes whose name contains this")
    args = ap.parse_args()
    if args.what in ("latency", "both"):
        asyncio.run(latency(args.reps, args.shape))
    if args.what in ("memory", "both"):
        asyncio.run(memory(args.size, args.dkim))


if __name__ == "__main__":
    main()
