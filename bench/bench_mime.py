"""Micro-benchmark: what reading a message's MIME structure costs, per message, on one core.

For each message, the minimum over REPEAT rounds (other work on the machine only ever adds
time) of:

- parse: Message.from_bytes (the skeleton, proxy/message/elide.py, and the stdlib parser);
- parse + views: that, then what the checks read of the MIME structure and headers: the
  decoded text and HTML bodies, attachments, defects, and the header accessors the checks
  call (counts, raw List-Unsubscribe values, addresses, subject); not the HTML walk;

each as shipped and with nothing elided (the stdlib parser given the whole message), so the
two columns come from one run. The default messages are the ~30 KB newsletter of
bench/smtp_bench.py and three of the test corpus.

    .venv/bin/python bench/bench_mime.py [--rounds 15] [--number 50] [FILE.eml ...]

A figure, not a test: tests/test_bench.py only proves that it runs.
"""

from __future__ import annotations

import argparse
import sys
import timeit
from pathlib import Path
from typing import Callable
from unittest import mock

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from proxy.message import elide  # noqa: E402
from proxy.message.mime import Message  # noqa: E402

CORPUS = ROOT / "tests" / "fixtures" / "corpus"
COUNTED = ("From", "To", "Subject", "Date", "Message-ID", "List-Unsubscribe", "References", "In-Reply-To", "Received")


def views(raw: bytes) -> Message:
    """Parse, then read what the checks read of the structure and the headers."""
    m = Message.from_bytes(raw)
    m.text, m.html, m.attachments, m.defects, m.subject  # noqa: B018
    for name in COUNTED:
        m.count(name)
    m.raw_headers("List-Unsubscribe"), m.raw_headers("List-Unsubscribe-Post")
    m.addresses("From"), m.addresses("Sender"), m.addresses("Reply-To")
    return m


def best(fn: Callable[[], object], rounds: int, number: int) -> float:
    return min(timeit.repeat(fn, number=number, repeat=rounds)) / number


def messages(files: list[Path]) -> dict[str, bytes]:
    if files:
        found = {p.name: p.read_bytes() for p in files}
    else:
        from smtp_bench import newsletter

        found = {"newsletter(30) of smtp_bench": newsletter(30).encode()}
        found |= {p.name: p.read_bytes() for p in (CORPUS / n for n in ("newsletter_en.eml", "newsletter_nl.eml", "receipt.eml"))}
    # SMTP carries CRLF; the files hold LF
    return {name: raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n") for name, raw in found.items()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("files", nargs="*", type=Path)
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--number", type=int, default=50)
    args = ap.parse_args(argv)
    print(f"min of {args.rounds} rounds of {args.number}, microseconds per message, Python {sys.version.split()[0]}")
    print(f"{'message':32} {'KB':>6} {'parse':>8} {'whole':>8} {'+views':>8} {'whole':>8}  runs elided")
    for name, raw in messages(args.files).items():
        views(raw)  # warm caches (regex, imports)
        parse = best(lambda: Message.from_bytes(raw), args.rounds, args.number)
        viewed = best(lambda: views(raw), args.rounds, args.number)
        elided = Message.from_bytes(raw)._elided
        with mock.patch.multiple(elide, **{k: len(raw) + 1 for k in ("BODY_RUNS_ABOVE", "ELIDE_ABOVE") if hasattr(elide, k)}):
            parse_whole = best(lambda: Message.from_bytes(raw), args.rounds, args.number)
            viewed_whole = best(lambda: views(raw), args.rounds, args.number)
        print(f"{name[:32]:32} {len(raw) / 1024:6.1f} {parse * 1e6:8.1f} {parse_whole * 1e6:8.1f} {viewed * 1e6:8.1f} "
              f"{viewed_whole * 1e6:8.1f}  {len(elided.runs) if elided else 0}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
