#!/usr/bin/env python3
"""What the HTML view of one message costs, part by part, with lxml (proxy/message/html.py,
today's) and with lexbor (proxy/message/html5.py), and what the checks cost after it.

The message is smtp_bench.py's pinned newsletter (the shipped compliant example grown to
--size KB), or --file. Each part runs --count times, three rounds; the best round's CPU time
(process time) per call is printed, in us: the least disturbed by other load on the machine.

    .venv/bin/python bench/html_view_bench.py [--count 1000] [--size 30] [--file MSG.eml] [--no-keep-heap]

The C heap keeps its freed top as the relay's does (proxy/runtime/warmup.py keep_freed_heap);
--no-keep-heap measures without, where each lexbor tree's pages fault in anew.

Parts, lxml: parse (libxml2), hide (the styles that may hide, looked at together, and what
they hide taken out), text pass (the XSLT), walk (links, forms and tokens out of its output).
Parts, lexbor: parse, hide (the same decision on lexbor's tree), elements (the walk that finds the
elements acted on and the comments), text (invisible elements out,
inline ones unwrapped, text merged and read), links (hrefs, texts and alt texts) and forms.
Then: the whole view each way, and the checks of the default policy with the view made.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from selectolax.lexbor import LexborHTMLParser  # noqa: E402
from smtp_bench import newsletter  # noqa: E402

from proxy.message import html as lxmlview  # noqa: E402
from proxy.message import html5 as lexview  # noqa: E402
from proxy.message.mime import Message  # noqa: E402
from proxy.policy.engine import findings  # noqa: E402
from proxy.policy.loader import BUILTIN_DEFAULT, load_policy  # noqa: E402
from proxy.policy.registry import Context  # noqa: E402
from proxy.runtime.warmup import keep_freed_heap  # noqa: E402


def best_us(fn: Callable[[], Any], count: int) -> float:
    fn()
    best = float("inf")
    for _ in range(3):
        t0 = time.process_time()
        for _ in range(count):
            fn()
        best = min(best, (time.process_time() - t0) / count)
    return best * 1e6


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--count", type=int, default=1000)
    ap.add_argument("--size", type=int, default=30, help="KB of smtp_bench.py's newsletter")
    ap.add_argument("--file", type=Path, help="a message instead of the newsletter")
    ap.add_argument("--no-keep-heap", action="store_true", help="the C heap gives its freed top back (glibc's default)")
    args = ap.parse_args(argv)
    kept = not args.no_keep_heap and keep_freed_heap()
    raw = args.file.read_bytes() if args.file else newsletter(args.size).encode()
    if b"\r\n" not in raw:
        raw = raw.replace(b"\n", b"\r\n")
    html = Message.from_bytes(raw).html
    n = args.count
    print(f"{args.file.name if args.file else f'newsletter({args.size})'}: message {len(raw) / 1024:.1f} KB, "
          f"HTML {len(html) / 1024:.1f} KB, {html.count('<')} tags; best of 3 rounds of {n}, CPU us per call; "
          f"freed heap {'kept' if kept else 'given back'}")

    # lxml, today's view, part by part (as html.extract runs them)
    parse = best_us(lambda: lxmlview._parse(html), n)
    hide = best_us(lambda: lxmlview._styled_and_hidden(lxmlview._parse(html)[0], html, ""), n) - parse
    root, _ = lxmlview._styled_and_hidden(lxmlview._parse(html)[0], html, "")
    xslt = lxmlview._transform()
    text = best_us(lambda: str(xslt(root)), n)
    out = str(xslt(root))

    def walk() -> None:
        found = lxmlview._LINK.findall(out)
        [(h.strip(), " ".join((lxmlview._with_alt(b) if lxmlview._ALT in b else b).split())[:500]) for h, b in found]
        lxmlview._forms(root)
        lxmlview._visible(out)

    walked = best_us(walk, n)
    whole_old = best_us(lambda: lxmlview.extract_lxml(html), n)
    print(f"lxml   parse {parse:7.0f}  hide {hide:7.0f}  text pass {text:7.0f}  walk {walked:7.0f}  "
          f"sum {parse + hide + text + walked:7.0f}  extract() {whole_old:7.0f}")

    # lexbor, part by part
    data = html.encode()
    lparse = best_us(lambda: LexborHTMLParser(data), n)
    tree = LexborHTMLParser(data)
    found, _ = lexview._elements(tree)
    tags = data.count(b"<")
    lhide = best_us(lambda: lexview._hidden(tree, found, tags), n)
    named = best_us(lambda: lexview._elements(tree), n)
    whole_new = best_us(lambda: lexview.extract(html), n)
    fell_back = lexview._hidden(tree, found, tags) is None
    print(f"lexbor parse {lparse:7.0f}  hide {lhide:7.0f}  elements {named:7.0f}  "
          f"the rest (text, links, forms) {whole_new - lparse - lhide - named:7.0f}  extract() {whole_new:7.0f}"
          + ("  (read by html.py: it may hide)" if fell_back else ""))

    policy = load_policy(BUILTIN_DEFAULT)
    stream = policy.streams[policy.default_stream]
    ctx = Context(stream=stream.name, marketing=stream.marketing)
    msg = Message.from_bytes(raw)
    msg.html_view  # noqa: B018  (made once: the checks alone are timed)

    def checks() -> None:
        for key in ("folded_text", "folded_words", "unmasked_text", "_folded", "links", "distinct_links"):
            msg.__dict__.pop(key, None)  # what the checks compute from the view, computed again
        findings(policy, msg, ctx)

    print(f"checks (default policy, the view made) {best_us(checks, max(1, n // 4)):7.0f}")
    try:
        print(f"load average: {open('/proc/loadavg').read().split()[0]} on {os.cpu_count()} cores")
    except OSError:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
