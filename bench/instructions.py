#!/usr/bin/env python3
"""Instructions per relayed message, counted by valgrind's callgrind: a figure that does not move
with the machine's load (wall-clock rates on a shared VM move by 20-40 % between runs).

The relay (sendwarden with the default policy, or aiosmtpd's bundled Proxy) runs under
`valgrind --tool=callgrind` with smtp-sink upstream; smtp-source sends FEW and then MANY
messages one at a time in two separate runs, and the difference of the two totals divided by
MANY - FEW is what one message costs, start-up and shutdown cancelled out.

    .venv/bin/python bench/instructions.py                       # 30 KB newsletter, both relays
    .venv/bin/python bench/instructions.py --size 2 --cases sendwarden

Takes a few minutes (Python under valgrind is ~50x slower). Only 127.0.0.1 is used.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from smtp_bench import PY, RCPT, ROOT, SENDER, free_port, newsletter, start_sink, wait_port

PROXY = """import asyncio, signal
from aiosmtpd.smtp import SMTP
from aiosmtpd.handlers import Proxy
async def main():
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGINT, stop.set)  # a clean exit, so callgrind writes its totals
    server = await loop.create_server(
        lambda: SMTP(Proxy('127.0.0.1', {sink}), hostname='localhost'), '127.0.0.1', {port})
    await stop.wait()
    server.close()
asyncio.run(main())
"""


def instructions(case: str, count: int, msgfile: Path, work: Path) -> int:
    """Total instructions of the relay process serving `count` messages, start to exit."""
    sink_port, port = free_port(), free_port()
    sink, out = start_sink(sink_port)
    state = Path(tempfile.mkdtemp(dir=work))
    dump = state / "callgrind.out"
    if case == "proxy":
        (state / "proxy.py").write_text(PROXY.format(sink=sink_port, port=port))
        cmd = [PY, str(state / "proxy.py")]
    else:
        (state / "bench.toml").write_text(
            # one worker: callgrind follows one process, and the default is one per CPU
            f'workers = 1\nstate_dir = "{state}"\n[upstream]\nurl = "smtp://127.0.0.1:{sink_port}"\n[metrics]\naddress = ""\n'
            '[audit]\nlevel = "warning"\n[timeouts]\npolicy = 300\nupstream_command = 300\nupstream_data = 300\n'
            '[recipients]\nverify_domains = false\n')  # no resolver outside the machine
        cmd = [PY, "-m", "proxy.cli", "serve", "--config", str(state / "bench.toml"), "--listen", f"127.0.0.1:{port}"]
    relay = subprocess.Popen(["valgrind", "--tool=callgrind", f"--callgrind-out-file={dump}", *cmd],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT,
                             env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        wait_port(port, timeout=600, proc=relay)
        subprocess.run(["smtp-source", "-s", "1", "-m", str(count), "-F", str(msgfile), "-f", SENDER, "-t", RCPT,
                        f"127.0.0.1:{port}"], check=True, timeout=1800, stdout=subprocess.DEVNULL)
        # SIGINT ends Proxy's serve_forever and drains sendwarden; callgrind writes on exit.
        relay.send_signal(signal.SIGTERM if case == "sendwarden" else signal.SIGINT)
        relay.wait(300)
    finally:
        if relay.poll() is None:
            relay.kill()
        sink.send_signal(signal.SIGTERM)
        sink.wait(10)
        out.unlink(missing_ok=True)
    text = dump.read_text(errors="replace") if dump.exists() else ""
    m = re.search(r"^(?:summary|totals): (\d+)", text, re.M)
    if not m:
        sys.exit(f"instructions: no callgrind totals for {case} ({dump})")
    return int(m.group(1))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", default="sendwarden,proxy")
    ap.add_argument("--size", type=int, default=30, help="KB of the newsletter (the benchmark's message)")
    ap.add_argument("--few", type=int, default=10)
    ap.add_argument("--many", type=int, default=110)
    args = ap.parse_args()
    for tool in ("valgrind", "smtp-source", "smtp-sink"):
        if not shutil.which(tool):
            sys.exit(f"instructions: {tool} is missing (valgrind; Debian's postfix for the load tools)")
    work = Path(tempfile.mkdtemp(prefix="sendwarden-instructions-"))
    msgfile = work / "msg.eml"
    msgfile.write_text(newsletter(args.size) if args.size > 4 else (ROOT / "examples" / "compliant.eml").read_text())
    print(f"instructions per message ({msgfile.stat().st_size} bytes, one session, "
          f"({args.many} - {args.few} messages) / {args.many - args.few}), counted by callgrind:")
    for case in args.cases.split(","):
        t0 = time.monotonic()
        few = instructions(case, args.few, msgfile, work)
        many = instructions(case, args.many, msgfile, work)
        per = (many - few) / (args.many - args.few)
        print(f"  {case:<11} {per / 1e6:7.2f} M instructions   (totals {few:,} and {many:,}; {time.monotonic() - t0:.0f} s)")
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
