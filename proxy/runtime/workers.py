"""Worker processes: `workers = N` runs N relay processes on the same listening ports
(SO_REUSEPORT: the kernel spreads new connections over them), so every core judges mail. The
default (0) is one per CPU this service may use.

The main process is worker 0 and alone speaks to systemd, serves /metrics (the sum of every
worker's, proxy/metrics.py) and the unsubscribe endpoint. It starts the others as
`sendwarden serve ... --worker I` children, forwards SIGHUP (reload) and SIGTERM (drain and
stop) to them, restarts one that dies (after 1 s, doubling up to a minute while it keeps
dying young), and waits for all of them when it stops. A child asks the kernel for SIGTERM
when its parent dies, so no worker outlives a killed main process.
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import signal
import sys
from collections.abc import Callable, Sequence

import structlog

log = structlog.get_logger("sendwarden.workers")
PR_SET_PDEATHSIG = 1
RESTART_DELAY = 1.0  # after a worker died; doubled while restarted workers die young
RESTART_DELAY_MAX = 60.0
LIVED_LONG = 60.0  # a worker that served this long before dying starts the back-off over


def die_with_parent() -> None:
    """Linux: SIGTERM this process when its parent exits (for worker children)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):  # not Linux: the parent's SIGTERM still reaches us
        pass


def usable_cpus() -> int:
    """How many CPUs this process may run on (taskset, systemd's CPUAffinity=, a cpuset),
    which can be fewer than the machine has."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0)) or 1
    return os.cpu_count() or 1


def worker_count(configured: int) -> int:
    return configured if configured > 0 else usable_cpus()


class Workers:
    """The children of the main process."""

    def __init__(self, argv: Sequence[str], count: int, cpus: Sequence[int | None] = (),
                 on_death: Callable[[int, int], None] | None = None) -> None:
        self.argv = list(argv)
        self.count = count
        self.cpus = list(cpus) or [None] * count
        # Called with (index, pid) when a worker died, before it is restarted: the main process
        # drops what the dead one held (its live metrics, its connection counts).
        self.on_death = on_death
        self.procs: dict[int, asyncio.subprocess.Process] = {}
        self.stopping = False
        self._watchers: list[asyncio.Task[None]] = []

    async def _spawn(self, index: int) -> None:
        cmd = [sys.executable, "-m", "proxy.cli", *self.argv, "--worker", str(index), "--workers", str(self.count)]
        cpu = self.cpus[index]
        if cpu is not None:
            cmd += ["--cpu", str(cpu)]
        self.procs[index] = await asyncio.create_subprocess_exec(*cmd)
        log.info("worker_started", worker=index, pid=self.procs[index].pid, cpu=cpu)

    async def _watch(self, index: int) -> None:
        loop = asyncio.get_running_loop()
        delay = RESTART_DELAY
        while not self.stopping:
            started = loop.time()
            proc = self.procs[index]
            rc = await proc.wait()
            if self.stopping:
                return
            lived = loop.time() - started
            delay = RESTART_DELAY if lived >= LIVED_LONG else delay
            log.error("worker_died", worker=index, pid=proc.pid, status=rc, lived_seconds=round(lived, 1), restart_in=delay)
            if self.on_death is not None:
                self.on_death(index, proc.pid)
            await asyncio.sleep(delay)
            delay = min(delay * 2, RESTART_DELAY_MAX)
            if not self.stopping:
                await self._spawn(index)

    def running(self) -> int:
        """Worker processes alive now, the main process included."""
        return 1 + sum(1 for p in self.procs.values() if p.returncode is None)

    async def start(self) -> None:
        for i in range(1, self.count):
            await self._spawn(i)
            self._watchers.append(asyncio.ensure_future(self._watch(i)))

    def signal(self, sig: int) -> None:
        for proc in self.procs.values():
            if proc.returncode is None:
                proc.send_signal(sig)

    async def stop(self, timeout: float) -> None:
        self.stopping = True
        self.signal(signal.SIGTERM)
        for proc in self.procs.values():
            try:
                await asyncio.wait_for(proc.wait(), timeout)
            except asyncio.TimeoutError:
                proc.kill()
                await proc.wait()
        for w in self._watchers:
            w.cancel()



def pick_cpu(setting: str | Sequence[int], index: int, allowed: set[int]) -> int | None:
    """The CPU worker `index` should run on (None: leave it to the kernel). `allowed` is the
    set this service was started with (taskset, systemd's CPUAffinity=, a cgroup): "auto"
    deals those out in order; a list names CPUs, which must be among them."""
    if setting == "none":
        return None
    cpus = sorted(allowed) if setting == "auto" else list(setting)
    cpu = cpus[index % len(cpus)]
    if cpu not in allowed:
        raise ValueError(f"cpu_affinity: CPU {cpu} is not one this process may use "
                         f"({','.join(str(c) for c in sorted(allowed))})")
    return cpu


def plan_cpus(setting: str | Sequence[int], count: int) -> list[int | None]:
    """The CPU of each worker (index 0: the main process), decided once by the main process
    from the CPUs it was started with: a child started after the main process bound itself
    would otherwise see only the main process's one CPU."""
    if setting == "none" or not hasattr(os, "sched_getaffinity"):
        return [None] * count
    allowed = os.sched_getaffinity(0)
    return [pick_cpu(setting, i, allowed) for i in range(count)]


def pin(cpu: int | None) -> None:
    """Bind this process to `cpu` before it starts any thread: threads inherit the binding, so
    the store's threads share the event loop's core."""
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})
