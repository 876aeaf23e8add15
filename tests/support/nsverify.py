"""Verify DKIM signatures with independent verifiers that find keys the ordinary way, through
/etc/resolv.conf and port 53 — kept on loopback.

Run inside a private mount and network namespace (`unshare --mount --net`): the loopback of a
fresh network namespace belongs to this process alone, so the test DNS server can take port 53
there, and a bind mount gives /etc/resolv.conf a `nameserver 127.0.0.1` line seen by nobody
outside. Then `dkimverify` (dkimpy's script, dnspython's default resolver) and OpenDKIM's
`opendkim-testmsg` (libopendkim, the C resolver) look the key up exactly as in production.

    unshare --mount --net python -m tests.support.nsverify --zone ORIGIN=ZONEFILE MESSAGE [--index N]

Prints one JSON object: {"dkimverify": {...}, "opendkim": {...}} with each tool's exit status
and output. `verify_independently()` is the helper tests call.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent


def _serve_dns(zones: list[str], ready: threading.Event) -> None:
    from tests.support.dnsserver import DnsServer

    async def serve() -> None:
        server = DnsServer()
        for spec in zones:
            origin, _, path = spec.partition("=")
            server.zone(origin, Path(path).read_text(encoding="utf-8"))
        await server.start("127.0.0.1", 53)
        ready.set()
        await asyncio.Event().wait()

    asyncio.run(serve())


def _run(cmd: list[str], message: bytes) -> dict[str, object]:
    try:
        p = subprocess.run(cmd, input=message, capture_output=True, timeout=30)
    except FileNotFoundError as exc:
        return {"status": None, "output": f"not installed: {exc.filename}"}
    return {"status": p.returncode, "output": (p.stdout + p.stderr).decode("utf-8", "replace").strip()}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("message")
    p.add_argument("--zone", action="append", default=[], metavar="ORIGIN=FILE")
    p.add_argument("--index", type=int, default=0, help="which signature dkimverify checks (0: topmost)")
    args = p.parse_args()
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    conf = Path(tempfile.mkdtemp()) / "resolv.conf"
    conf.write_text("nameserver 127.0.0.1\noptions timeout:2 attempts:1\n")
    subprocess.run(["mount", "--bind", str(conf), "/etc/resolv.conf"], check=True)
    ready = threading.Event()
    threading.Thread(target=_serve_dns, args=(args.zone, ready), daemon=True).start()
    if not ready.wait(10):
        sys.exit("DNS server did not start")
    message = Path(args.message).read_bytes()
    dkimverify = str(Path(sys.executable).parent / "dkimverify")
    result = {
        "dkimverify": _run([dkimverify, "--index", str(args.index)], message),
        # opendkim-testmsg verifies when given no signing options; silent and 0 when it passes.
        "opendkim": _run(["opendkim-testmsg"], message.replace(b"\r\n", b"\n")),
    }
    print(json.dumps(result))


def verify_independently(message: bytes, zones: dict[str, str], tmp: Path, index: int = 0) -> dict[str, dict[str, object]]:
    """Run this module in a fresh mount+network namespace and return what both verifiers said."""
    if shutil.which("unshare") is None:
        raise RuntimeError("unshare (util-linux) is needed")
    msg = tmp / "message.eml"
    msg.write_bytes(message)
    cmd = ["unshare", "--mount", "--net", sys.executable, "-m", "tests.support.nsverify", str(msg), "--index", str(index)]
    for origin, text in zones.items():
        zf = tmp / f"{origin}.zone"
        zf.write_text(text, encoding="utf-8")
        cmd += ["--zone", f"{origin}={zf}"]
    p = subprocess.run(cmd, capture_output=True, timeout=60, cwd=ROOT, env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
                                                                         "PYTHONPATH": str(ROOT)})
    if p.returncode != 0:
        raise RuntimeError(f"namespace run failed ({p.returncode}): {p.stderr.decode('utf-8', 'replace')[-2000:]}")
    return json.loads(p.stdout)


if __name__ == "__main__":
    main()
