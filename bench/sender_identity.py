"""Per-message cost of the sender-identity work on the relay's hot path (not a test): the sender
checks, DKIM signing (RSA 2048, Ed25519, dkimpy's own pure-Python RSA for comparison) and DKIM
verifying with the key cached. Prints milliseconds per message (median of several runs).

    .venv/bin/python bench/sender_identity.py [--messages 300]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import dkim  # noqa: E402

from proxy.config import OVERSIGNED_HEADERS, SIGNED_HEADERS  # noqa: E402
from proxy.facts.dkim import verify  # noqa: E402
from proxy.outbound.dkim import Signer  # noqa: E402
from proxy.policy.context import DkimVerification  # noqa: E402
from proxy.dns import Resolver  # noqa: E402
from proxy.message.mime import Message  # noqa: E402
from proxy.policy.loader import BUILTIN_DEFAULT, load_policy  # noqa: E402
from proxy.policy.registry import Context  # noqa: E402
from tests.support.dkimkit import make_key  # noqa: E402
from tests.support.dnsserver import DnsServer  # noqa: E402


def newsletter(size: int) -> bytes:
    base = (ROOT / "examples" / "compliant.eml").read_bytes().replace(b"\n", b"\r\n")
    filler = b"<p>Our autumn collection: coats, scarves and boots for the cold days ahead.</p>\r\n"
    head, _, rest = base.partition(b"<p>Hello,</p>")
    return head + b"<p>Hello,</p>\r\n" + filler * max(0, (size - len(base)) // len(filler)) + rest


def per_message(fn: Callable[[], object], n: int, rounds: int = 3) -> float:
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        times.append((time.perf_counter() - t0) / n * 1000)
    return statistics.median(times)


async def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--messages", type=int, default=300)
    n = p.parse_args().messages
    tmp = Path(tempfile.mkdtemp())
    dns = await DnsServer().start()
    rsa_key = make_key(tmp, "shop.example.com", "r1", "rsa", dns)
    ed_key = make_key(tmp, "shop.example.com", "e1", "ed25519", dns)
    policy = load_policy(BUILTIN_DEFAULT)
    sender_checks = [(c, o) for c, o in policy.checks["marketing"] if c.family == "sender"]
    rows = []
    for size in (4_000, 30_000):
        raw = newsletter(size)
        ctx = Context(mail_from="news@shop.example.com", facts={"dkim": DkimVerification()})

        def checks() -> None:
            msg = Message.from_bytes(raw)
            for chk, opts in sender_checks:
                list(chk.run(msg, ctx, opts))

        rsa, ed = Signer([rsa_key], SIGNED_HEADERS, OVERSIGNED_HEADERS), Signer([ed_key], SIGNED_HEADERS, OVERSIGNED_HEADERS)
        include = rsa.include_headers([h for h, _ in dkim.DKIM(raw).headers])
        rows.append((size, "sender checks (all 6, default policy, parse included)", per_message(checks, n)))
        rows.append((size, "DKIM sign RSA 2048 (sendwarden: dkimpy + OpenSSL)", per_message(lambda: rsa.sign(raw), n)))
        rows.append((size, "DKIM sign RSA 2048 (dkimpy alone, pure-Python RSA)", per_message(
            lambda: dkim.sign(raw, b"r1", b"shop.example.com", rsa_key.private, canonicalize=(b"relaxed", b"relaxed"),
                              include_headers=include), max(10, n // 10))))
        rows.append((size, "DKIM sign Ed25519", per_message(lambda: ed.sign(raw), n)))
        signed = rsa.sign(raw)[0]
        resolver = Resolver([dns.nameserver], timeout=1)
        await verify(signed, resolver)  # warm the cache: the steady state of a relay
        t0 = time.perf_counter()
        for _ in range(n):
            await verify(signed, resolver)
        rows.append((size, "DKIM verify RSA 2048 (key from the cache)", (time.perf_counter() - t0) / n * 1000))
    await dns.stop()
    print(f"{'size':>7}  {'ms/msg':>7}  what")
    for size, what, ms in rows:
        print(f"{size:>7}  {ms:7.3f}  {what}")


if __name__ == "__main__":
    asyncio.run(main())
