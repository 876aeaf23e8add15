#!/usr/bin/env python3
"""Throughput, CPU cost, latency and memory of sendwarden against Postfix's own load tools.

Measures in one run, on loopback, for a ~30 KB HTML newsletter that passes the default AUP
policy (so every check and the relay run) and a ~2 KB message:
  (a) direct       smtp-source -> smtp-sink (the physical limit of this machine)
  (b) sendwarden   smtp-source -> sendwarden (default policy) -> smtp-sink
  (c) monitor      the same with --monitor
  (d) proxy        aiosmtpd's bundled Proxy handler, the naive relay that checks nothing
  (e) defaults     sendwarden with the shipped defaults (one worker per CPU), unpinned: what a
                   user gets (compare with Postfix as a relay)
  (e) workers2     sendwarden with `workers = 2`, unpinned (not in the default run: on a 2-CPU
                   machine the same as defaults)
  (e') workers2bound the same with `cpu_affinity = "auto"`: each worker bound to its own core
                   (worker 0 shares core 0 with the load generator and the sink)
  (f) postfix      Postfix itself as the relay (throw-away instance, unpinned), done when the sink
                   has every message (Postfix queues first)
  (g) postfix-milter the same Postfix with `sendwarden milter` (default policy, pinned to core 1)
                   as its before-queue milter; CPU is the milter process's
  (h) postfix-rspamd the same Postfix with Debian's rspamd (pinned to core 1) as its milter, local
                   rules only (network modules off), the whole case in a network namespace that
                   holds only loopback; CPU is rspamd's processes'. Needs the rspamd package.
Load generator and sink are pinned to core 0 and the relay to core 1 (taskset), which steadies
the figures on a 2-core machine. Each case runs --reps times; the median is reported. A run is
valid only when the sink counted exactly the messages sent.
Then, per size: whole-transaction latency (connect..QUIT) of one Python client (on core 0) at
half the relay's maximum rate, through sendwarden and straight to the sink (the difference is what
sendwarden adds); and once: the relay's RSS with 10 and with 1,000 idle connections.

    .venv/bin/python bench/smtp_bench.py                 # the full run (several minutes)
    .venv/bin/python bench/smtp_bench.py --quick         # seconds: proves the script works

Needs smtp-source/smtp-sink (Debian package postfix; `make test` installs it, preseeded so
that no mail server starts). Only 127.0.0.1 is used.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
SENDER, RCPT = "news@shop.example.com", "reader@example.org"
HZ = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pin(core: int | None) -> list[str]:
    if core is None or not shutil.which("taskset") or (os.cpu_count() or 1) < 2:
        return []
    return ["taskset", "-c", str(core)]


def newsletter(kb: int) -> str:
    """The shipped compliant example, its HTML grown with realistic paragraphs to ~kb KB."""
    text = (ROOT / "examples" / "compliant.eml").read_text()
    para = ("<tr><td style=\"padding:8px\"><h3>Wool coat, autumn edition</h3><p>Warm, light and made to "
            "last: our new coats come in five colours. <a href=\"https://shop.example.com/coats?c={i}\">"
            "See the coats</a></p></td></tr>\n")
    rows, i = [], 0
    while len(text) + sum(map(len, rows)) < kb * 1024:
        rows.append(para.replace("{i}", str(i)))
        i += 1
    table = "<table>\n" + "".join(rows) + "</table>\n"
    return text.replace("<p>Example Shop, 1 Market Street, Amsterdam</p>", table + "<p>Example Shop, 1 Market Street, Amsterdam</p>")


@dataclass
class Run:
    case: str
    size: str
    seconds: float
    sent: int
    counted: int
    cpu_ms_per_msg: float | None
    peak_rss_kb: int | None

    @property
    def rate(self) -> float:
        return self.sent / self.seconds


def descendants(pid: int) -> list[int]:
    out, todo = [pid], [pid]
    while todo:
        p = todo.pop()
        try:
            kids = [int(x) for x in Path(f"/proc/{p}/task/{p}/children").read_text().split()]
        except OSError:
            kids = []
        out += kids
        todo += kids
    return out


def proc_cpu_seconds(pid: int) -> float:
    """CPU seconds of a process and its children (the worker processes)."""
    total = 0.0
    for p in descendants(pid):
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / HZ
    return total


def peak_rss_kb(pid: int) -> int | None:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return None


def wait_port(port: int, timeout: float = 60, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{proc.args} exited with status {proc.returncode}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port}")


def start_sink(port: int) -> tuple[subprocess.Popen, Path]:
    out = Path(tempfile.mkstemp(prefix="sink-", suffix=".out")[1])
    proc = subprocess.Popen([*pin(0), "smtp-sink", "-c", "-u", "nobody", f"127.0.0.1:{port}", "1000"],
                            stdout=out.open("wb"), stderr=subprocess.STDOUT)
    wait_port(port)
    return proc, out


def sink_count(out: Path) -> int:
    text = out.read_text(errors="replace").replace("\r", "\n").strip().splitlines()
    for line in reversed(text):
        if "mesg=" in line:
            return int(line.rsplit("mesg=", 1)[1].split()[0])
    return 0


def start_relay(case: str, port: int, sink_port: int, state: Path, extra: str = "") -> subprocess.Popen:
    if case == "proxy":
        # aiosmtpd's command line cannot pass the Proxy handler its upstream; start it directly.
        code = ("import asyncio; from aiosmtpd.smtp import SMTP; from aiosmtpd.handlers import Proxy\n"
                "async def main():\n"
                f"    h = Proxy('127.0.0.1', {sink_port})\n"
                f"    s = await asyncio.get_running_loop().create_server(lambda: SMTP(h, hostname='localhost'), '127.0.0.1', {port})\n"
                "    await s.serve_forever()\n"
                "asyncio.run(main())")
        cmd = [PY, "-c", code]
    else:
        config = state / "bench.toml"
        workers = {"workers2": "workers = 2\n", "workers2bound": 'workers = 2\ncpu_affinity = "auto"\n'}.get(case, "")
        config.write_text(f'{workers}state_dir = "{state}"\n[upstream]\nurl = "smtp://127.0.0.1:{sink_port}"\npool_size = 16\n'
                          f'[metrics]\naddress = ""\n[audit]\nformat = "json"\nlevel = "warning"\n'
                          # one client address opens every connection: the per-client limit is not under test
                          f'[limits]\nmax_connections = 5000\nmax_connections_per_client = 5000\n'
                          # no resolver outside the machine (and example.org has a null MX)
                          f'[recipients]\nverify_domains = false\n{extra}')
        cmd = [PY, "-m", "proxy.cli", "serve", "--config", str(config), "--listen", f"127.0.0.1:{port}"]
        if case == "monitor":
            cmd.append("--monitor")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    unpinned = case.startswith("workers2") or case == "defaults"
    pinning = [] if unpinned else pin(1)
    proc = subprocess.Popen([*pinning, *cmd], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    wait_port(port, proc=proc)
    if unpinned:
        time.sleep(3)  # the second worker binds the same port a moment later
    return proc


def start_postfix(sink_port: int, milter: str = ""):  # -> tests.support.postfix.PostfixInstance
    """Postfix itself as the relay (unpinned: it is several processes), from Debian's package,
    in a throw-away instance directory (tests/support/postfix.py), relaying to the sink;
    with `milter` ("inet:127.0.0.1:PORT"), as a before-queue milter of its smtpd."""
    sys.path.insert(0, str(ROOT))
    from tests.support.postfix import PostfixInstance

    main = {"default_process_limit": "200", "smtp_destination_concurrency_limit": "20", "in_flow_delay": "0"}
    if milter:
        main |= {"smtpd_milters": milter, "milter_default_action": "tempfail", "milter_protocol": "6"}
    return PostfixInstance(sink_port, main).start()


# rspamd as Postfix's milter, local rules only: its proxy worker (the milter) hands each message
# to one normal worker (as Debian ships it), the modules that look things up over the network are off, DNS goes to loopback,
# and the whole case runs in a network namespace holding only loopback (run_in_netns), so
# nothing can leave the machine whatever a module tries (e.g. fetching maps.rspamd.com).
RSPAMD_OFF = ("rbl", "spf", "dkim", "dmarc", "arc", "asn", "dcc", "fuzzy_check", "url_redirector", "mx_check",
              "external_services", "hfilter", "emails", "whitelist")


RSPAMD_DB = Path("/var/tmp/sendwarden-bench-rspamd")  # rspamd's DBDIR: the hyperscan cache


def rspamd_available() -> str | None:
    """Why the Postfix + rspamd case cannot run here, or None."""
    for tool in ("rspamd", "unshare", "ip"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (Debian packages rspamd, util-linux, iproute2)"
    if os.geteuid() != 0:
        return "a network namespace and Postfix need root"
    return None


def start_rspamd(port: int, state: Path) -> subprocess.Popen:
    """Debian's rspamd with a local configuration directory in `state`, its milter on
    127.0.0.1:PORT, pinned to core 1; returns once its regular expressions are compiled."""
    local = state / "rspamd"
    for sub in ("local.d", "override.d", "run", "log"):
        (local / sub).mkdir(parents=True, exist_ok=True)
    # Compiling the rules for hyperscan takes minutes on a busy VM: its cache outlives the run.
    RSPAMD_DB.mkdir(parents=True, exist_ok=True)
    shutil.chown(RSPAMD_DB, "_rspamd", "_rspamd")
    (local / "override.d" / "worker-proxy.inc").write_text(
        f'bind_socket = "127.0.0.1:{port}";\nmilter = yes;\ncount = 1;\ntimeout = 120s;\n')
    (local / "override.d" / "worker-normal.inc").write_text("count = 1;\n")  # scans for the proxy, as Debian ships it
    for name in ("worker-controller.inc", *(f"{m}.conf" for m in RSPAMD_OFF)):
        (local / "override.d" / name).write_text("enabled = false;\n")
    (local / "local.d" / "options.inc").write_text('dns { nameserver = ["127.0.0.1:53"]; timeout = 0.2s; retransmits = 1; }\n')
    # The phishing module compares link texts with their targets (local) and, as Debian ships
    # it, asks phishtank.rspamd.com over DNS for every URL (3 queries per link here): off.
    (local / "local.d" / "phishing.conf").write_text("phishtank_enabled = false;\n")
    shutil.chown(local, "_rspamd", "_rspamd")
    for path in local.rglob("*"):
        shutil.chown(path, "_rspamd", "_rspamd")
    log = local / "log" / "rspamd.log"
    proc = subprocess.Popen([*pin(1), "rspamd", "-f", "-u", "_rspamd", "-g", "_rspamd", "-c", "/etc/rspamd/rspamd.conf",
                             f"--var=LOCAL_CONFDIR={local}", f"--var=RUNDIR={local / 'run'}", f"--var=DBDIR={RSPAMD_DB}",
                             f"--var=LOGDIR={local / 'log'}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(port, timeout=300, proc=proc)
    # The hyperscan helper compiles the rules after start (or loads them from its cache); until
    # then rspamd scans more slowly.
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and "hyperscan database of" not in log.read_text(errors="replace"):
        time.sleep(0.5)
    return proc


def run_in_netns(case: str, size: str, msgfile: Path, n: int, sessions: int, state: Path) -> Run:
    """run_case for `case` inside a fresh network namespace (only loopback) and mount namespace
    (/etc/resolv.conf pointing at loopback), with this script's --netns-case."""
    done = subprocess.run(["unshare", "--mount", "--net", PY, __file__, "--netns-case", case, "--sizes", size,
                           "--msgfile", str(msgfile), "--messages", str(n), "--sessions", str(sessions), "--state", str(state)],
                          capture_output=True, timeout=1800, env={**os.environ, "PYTHONPATH": str(ROOT)}, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{case} in a network namespace failed: {done.stderr.decode(errors='replace')[-2000:]}")
    lines = done.stdout.decode().rstrip().splitlines()
    for line in lines[:-1]:
        print(line)
    return Run(**json.loads(lines[-1]))


def enter_loopback_only() -> None:
    """Inside `unshare --mount --net`: bring loopback up and point DNS at it."""
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    conf = Path(tempfile.mkdtemp()) / "resolv.conf"
    conf.write_text("nameserver 127.0.0.1\noptions timeout:1 attempts:1\n")
    subprocess.run(["mount", "--bind", str(conf), "/etc/resolv.conf"], check=True)


def start_milter(port: int, state: Path) -> subprocess.Popen:
    """`sendwarden milter` with the default policy on 127.0.0.1:PORT, pinned to core 1."""
    config = state / "milter.toml"
    config.write_text(f'state_dir = "{state}"\n[metrics]\naddress = ""\n[audit]\nformat = "json"\nlevel = "warning"\n'
                      f'[milter]\naddress = "inet:127.0.0.1:{port}"\n'
                      '[recipients]\nverify_domains = false\n')  # no resolver outside the machine
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([*pin(1), PY, "-m", "proxy.cli", "milter", "--config", str(config)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    wait_port(port, proc=proc)
    return proc


def postfix_available() -> bool:
    sys.path.insert(0, str(ROOT))
    from tests.support.postfix import available

    return available() is None


IN_NETNS = False  # set by --netns-case


def run_case(case: str, size: str, msgfile: Path, n: int, sessions: int, state: Path) -> Run:
    if case == "postfix-rspamd" and not IN_NETNS:
        return run_in_netns(case, size, msgfile, n, sessions, state)
    sink_port = free_port()
    sink, sink_out = start_sink(sink_port)
    relay = postfix = None
    try:
        port = sink_port
        if case in ("postfix-milter", "postfix-rspamd"):  # CPU: the milter's processes (not Postfix's)
            milter_port = free_port()
            relay = start_milter(milter_port, state) if case == "postfix-milter" else start_rspamd(milter_port, state)
            postfix = start_postfix(sink_port, f"inet:127.0.0.1:{milter_port}")
            port = postfix.port
            cpu0 = proc_cpu_seconds(relay.pid)
        elif case == "postfix":
            postfix = start_postfix(sink_port)
            port = postfix.port
            master = int((postfix.queue_dir / "pid" / "master.pid").read_text().split()[0])
            cpu0 = proc_cpu_seconds(master)
        elif case != "direct":
            port = free_port()
            relay = start_relay(case, port, sink_port, state)
            cpu0 = proc_cpu_seconds(relay.pid)
        t0 = time.perf_counter()
        subprocess.run([*([] if postfix else pin(0)), "smtp-source", "-s", str(sessions), "-m", str(n), "-F", str(msgfile),
                        "-f", SENDER, "-t", RCPT, f"127.0.0.1:{port}"], check=True, timeout=600,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        if postfix is not None:  # Postfix queues first: done when the sink has every message
            deadline = time.monotonic() + 600
            while sink_count(sink_out) < n and time.monotonic() < deadline:
                time.sleep(0.02)
        seconds = time.perf_counter() - t0
        cpu = rss = None
        if relay is not None:
            cpu = (proc_cpu_seconds(relay.pid) - cpu0) * 1000 / n
            rss = peak_rss_kb(relay.pid)
            if postfix is not None:
                print(f"    ({case}: {busy_share(cpu, n, seconds)} of core 1 busy)", flush=True)
        elif postfix is not None:
            cpu = (proc_cpu_seconds(master) - cpu0) * 1000 / n
        time.sleep(0.3)
        return Run(case, size, seconds, n, sink_count(sink_out), cpu, rss)
    finally:
        if relay is not None:
            relay.send_signal(signal.SIGTERM)
            try:
                relay.wait(20)
            except subprocess.TimeoutExpired:
                relay.kill()
        if postfix is not None:
            postfix.stop()
        sink.send_signal(signal.SIGTERM)
        sink.wait(10)
        sink_out.unlink(missing_ok=True)


def busy_share(cpu_ms_per_msg: float, n: int, seconds: float) -> str:
    return f"{cpu_ms_per_msg * n / 1000 / seconds * 100:.0f} %"


def stop(proc: subprocess.Popen, timeout: float = 20) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


WARM_UP_TRANSACTIONS = 30


async def latency(case: str, msg: bytes, rate: float, seconds: float, state: Path) -> tuple[float, float, int, int]:
    """p50/p99 (ms) of whole transactions (connect .. QUIT) sent by one client at `rate`/s, how
    many there were, and how many failed (any reply but 250, or no answer)."""
    import aiosmtplib

    sink_port = free_port()
    sink, out = start_sink(sink_port)
    port, relay = sink_port, None
    if case != "direct":
        port = free_port()
        state.mkdir(exist_ok=True)
        relay = start_relay(case, port, sink_port, state)
    times: list[float] = []
    failed = 0
    try:
        async def one(counted: bool = True) -> None:
            nonlocal failed
            t = time.perf_counter()
            client = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, start_tls=False, timeout=30)
            try:
                await client.connect()
                await client.sendmail(SENDER, [RCPT], msg)
                await client.quit()
            except (aiosmtplib.SMTPException, OSError):
                failed += counted
                client.close()
                return
            if counted:
                times.append((time.perf_counter() - t) * 1000)

        # The relay as it runs, not as it starts: the upstream pool's connections are opened
        # and the client's own first-use costs paid by transactions that are not counted.
        for _ in range(WARM_UP_TRANSACTIONS):
            await one(counted=False)
        tasks = []
        start = time.perf_counter()
        k = 0
        while time.perf_counter() - start < seconds:
            tasks.append(asyncio.ensure_future(one()))
            k += 1
            await asyncio.sleep(max(0.0, start + k / rate - time.perf_counter()))
        await asyncio.gather(*tasks)
    finally:
        if relay is not None:
            stop(relay)
        stop(sink, 10)
        out.unlink(missing_ok=True)
    times.sort() if times else times.append(float("nan"))
    return statistics.median(times), times[min(len(times) - 1, int(len(times) * 0.99))], len(times), failed


async def idle_memory(state: Path, counts: tuple[int, ...] = (10, 1000)) -> list[tuple[int, float]]:
    """RSS of the relay (MB) with n idle connections open (greeted, then silent), for each n."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = max(counts) + 256
    if soft != resource.RLIM_INFINITY and soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want if hard == resource.RLIM_INFINITY else min(want, hard), hard))
    sink_port, port = free_port(), free_port()
    sink, out = start_sink(sink_port)
    state.mkdir(exist_ok=True)
    relay = start_relay("sendwarden", port, sink_port, state)
    conns: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    figures = []
    try:
        # one message first, so that what is loaded on first use is not counted as growth
        import aiosmtplib

        client = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, start_tls=False, timeout=30)
        await client.connect()
        msg = (ROOT / "examples" / "compliant.eml").read_bytes().replace(b"\n", b"\r\n")
        await client.sendmail(SENDER, [RCPT], msg)
        await client.quit()
        for n in counts:
            while len(conns) < n:
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                await reader.readline()
                conns.append((reader, writer))
            await asyncio.sleep(1.0)
            rss = next(int(line.split()[1]) for line in Path(f"/proc/{relay.pid}/status").read_text().splitlines()
                       if line.startswith("VmRSS:"))
            figures.append((n, rss / 1024))
    finally:
        for _, writer in conns:
            writer.close()
        stop(relay)
        stop(sink, 10)
        out.unlink(missing_ok=True)
    return figures


def check_tools() -> None:
    missing = [t for t in ("smtp-source", "smtp-sink") if not shutil.which(t)]
    if missing:
        sys.exit(f"bench: {', '.join(missing)} missing: install Debian's postfix package (make test does, preseeded)")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--messages", type=int, default=2000)
    ap.add_argument("--sessions", type=int, default=10)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--latency-seconds", type=float, default=10)
    ap.add_argument("--cases", default="direct,sendwarden,monitor,proxy,defaults,workers2bound,postfix,postfix-milter,postfix-rspamd")
    ap.add_argument("--sizes", default="30k,2k")
    ap.add_argument("--quick", action="store_true", help="tiny counts: proves the script works, figures mean little")
    ap.add_argument("--json", action="store_true", help="also print the raw runs as JSON")
    ap.add_argument("--netns-case", help=argparse.SUPPRESS)  # run_in_netns: one case, inside the namespace
    ap.add_argument("--msgfile", help=argparse.SUPPRESS)
    ap.add_argument("--state", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.netns_case:
        global IN_NETNS
        IN_NETNS = True
        enter_loopback_only()
        r = run_case(args.netns_case, args.sizes, Path(args.msgfile), args.messages, args.sessions, Path(args.state))
        print(json.dumps(r.__dict__))
        return 0
    if args.quick:
        args.messages, args.reps, args.latency_seconds, args.sessions = 40, 1, 1.0, 4
    check_tools()
    cases = args.cases.split(",")
    if not postfix_available():
        for case in ("postfix", "postfix-milter", "postfix-rspamd"):
            if case in cases:
                print(f"bench: {case} needs root and Debian's postfix package: case skipped")
                cases.remove(case)
    if "postfix-rspamd" in cases and (why := rspamd_available()) is not None:
        print(f"bench: postfix-rspamd skipped: {why}")
        cases.remove("postfix-rspamd")
    work = Path(tempfile.mkdtemp(prefix="sendwarden-bench-"))
    files = {}
    for size in args.sizes.split(","):
        kb = int(size.rstrip("k"))
        # smtp-source -F wants LF line endings: it sends each line with CRLF (NOTES.md).
        files[size] = work / f"msg-{size}.eml"
        files[size].write_text(newsletter(kb) if kb > 4 else (ROOT / "examples" / "compliant.eml").read_text())
        verdict = subprocess.run([PY, "-m", "proxy.cli", "scan", "--json", str(files[size])], capture_output=True,
                                 env={**os.environ, "PYTHONPATH": str(ROOT)})
        if verdict.returncode != 0:
            sys.exit(f"bench: the {size} message does not pass the default policy: {verdict.stdout.decode()}")
    print(f"sendwarden benchmark: {args.messages} messages, {args.sessions} sessions, median of {args.reps}; "
          f"load+sink pinned to core 0, relay to core 1" + (" (taskset missing: unpinned)" if not pin(0) else ""))
    runs: list[Run] = []
    for size, path in files.items():
        print(f"\n{size} message ({path.stat().st_size} bytes)")
        print(f"  {'case':<13} {'msg/s':>8} {'x direct':>9} {'x proxy':>8} {'CPU ms/msg':>11} {'peak RSS':>9}  valid")
        medians: dict[str, Run] = {}
        for case in cases:
            state = work / f"state-{case}-{size}"
            state.mkdir()
            reps = [run_case(case, size, path, args.messages, args.sessions, state) for _ in range(args.reps)]
            runs.extend(reps)
            medians[case] = sorted(reps, key=lambda r: r.rate)[len(reps) // 2]
        for case, r in medians.items():
            direct = medians.get("direct")
            proxy = medians.get("proxy")
            ratio = f"{r.rate / direct.rate:9.3f}" if direct else f"{'-':>9}"
            vs_proxy = f"{r.rate / proxy.rate:8.2f}" if proxy and case != "direct" else f"{'-':>8}"
            cpu = f"{r.cpu_ms_per_msg:11.2f}" if r.cpu_ms_per_msg is not None else f"{'-':>11}"
            rss = f"{r.peak_rss_kb / 1024:7.1f}MB" if r.peak_rss_kb else f"{'-':>9}"
            valid = "yes" if r.counted == r.sent else f"NO (sink counted {r.counted})"
            print(f"  {case:<13} {r.rate:8.1f} {ratio} {vs_proxy} {cpu} {rss}  {valid}")
        if "postfix-milter" in medians and "postfix-rspamd" in medians:
            ours, theirs = medians["postfix-milter"], medians["postfix-rspamd"]
            cpu_ratio = (f", CPU per message {ours.cpu_ms_per_msg / theirs.cpu_ms_per_msg:.2f}x"
                         if ours.cpu_ms_per_msg and theirs.cpu_ms_per_msg else "")
            print(f"  Postfix + sendwarden milter passes {ours.rate / theirs.rate:.2f}x what Postfix + rspamd passes{cpu_ratio}")
        if "sendwarden" in medians:
            rate = medians["sendwarden"].rate / 2
            data = path.read_text().replace("\n", "\r\n").encode()
            # A p99 on a shared machine moves by several times from run to run: each figure is
            # the median of `reps` runs, relay and direct alternating.
            ours, direct = [], []
            # The Python client runs where the load generator did (core 0): left free, the
            # scheduler also runs it on the relay's core, and the figure then includes the relay
            # waiting for the client (2 KB on this VM: added p50 18.6 ms unpinned, 3.8-4.7 pinned).
            everywhere = os.sched_getaffinity(0)
            if pin(0):
                os.sched_setaffinity(0, {0})
            try:
                for rep in range(args.reps):
                    ours.append(asyncio.run(latency("sendwarden", data, rate, args.latency_seconds, work / f"lat-{size}-{rep}")))
                    direct.append(asyncio.run(latency("direct", data, rate, args.latency_seconds, work / f"lat-direct-{size}-{rep}")))
            finally:
                os.sched_setaffinity(0, everywhere)
            p50, p99 = statistics.median(r[0] for r in ours), statistics.median(r[1] for r in ours)
            d50, d99 = statistics.median(r[0] for r in direct), statistics.median(r[1] for r in direct)
            count, failed = sum(r[2] for r in ours), sum(r[3] for r in ours)
            print(f"  latency at {rate:.0f} msg/s (half the maximum), {count} transactions of one Python client"
                  + (" on core 0" if pin(0) else "") +
                  f" in {args.reps} run(s), each after {WARM_UP_TRANSACTIONS} not counted"
                  + (f" ({failed} failed, not counted)" if failed else "") +
                  f" (connect..QUIT; median of the runs): p50 {p50:.2f} ms, p99 {p99:.2f} ms; straight to the sink p50 {d50:.2f} ms,"
                  f" p99 {d99:.2f} ms; added by sendwarden p50 {p50 - d50:.2f} ms, p99 {p99 - d99:.2f} ms"
                  + (f"; added p99 of each run: {', '.join(f'{o[1] - d[1]:.2f}' for o, d in zip(ours, direct, strict=True))} ms" if args.reps > 1 else ""))
    if "sendwarden" in cases:
        counts = (4, 40) if args.quick else (10, 1000)
        (a, rss_a), (b, rss_b) = asyncio.run(idle_memory(work / "idle", counts))
        print(f"\nmemory: relay RSS {rss_a:.1f} MB with {a} idle connections, {rss_b:.1f} MB with {b}"
              f" ({(rss_b - rss_a) / rss_a * 100:+.1f} %, {(rss_b - rss_a) * 1024 / (b - a):.1f} KB per connection)")
    if args.json:
        print(json.dumps([r.__dict__ | {"rate": r.rate} for r in runs]))
    shutil.rmtree(work, ignore_errors=True)
    return 0 if all(r.counted == r.sent for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
