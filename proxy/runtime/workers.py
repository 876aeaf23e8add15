"""Worker processes: `workers = N` runs N relay processes on the same listening ports
(SO_REUSEPORT: the kernel spreads new connections over them), so every core judges mail.

The main process is worker 0 and alone speaks to systemd, serves /metrics and the unsubscribe
endpoint. It starts the others as `sendwarden serve ... --worker I` children, forwards SIGHUP
(reload) and SIGTERM (drain and stop) to them, restarts one that dies, and waits for all of
them when it stops. A child asks the kernel for SIGTERM when its parent dies, so no worker
outlives a killed main process.
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import signal
import sys
from typing import Sequence

import structlog

log = structlog.get_logger("sendwarden.workers")
PR_SET_PDEATHSIG = 1
RESTART_DELAY = 1.0


def die_with_parent() -> None:
    """Linux: SIGTERM this process when its parent exits (for worker children)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):  # not Linux: the parent's SIGTERM still reaches us
        pass


def worker_count(configured: int) -> int:
    return configured if configured > 0 else (os.cpu_count() or 1)


class Workers:
    """The children of the main process."""

    def __init__(self, argv: Sequence[str], count: int, cpus: Sequence[int | None] = ()) -> None:
        self.argv = list(argv)
        self.count = count
        self.cpus = list(cpus) or [None] * count
        self.procs: dict[int, asyncio.subprocess.Process] = {}
        self.stopping = False
        self._watchers: list[asyncio.Task[None]] = []

    async def _spawn(self, index: int) -> None:
        cmd = [sys.executable, "-m", "proxy.cli", *self.argv, "--worker", str(index)]
        cpu = self.cpus[index]
        if cpu is not None:
            cmd += ["--cpu", str(cpu)]
        self.procs[index] = await asyncio.create_subprocess_exec(*cmd)
        log.info("worker_started", worker=index, pid=self.procs[index].pid, cpu=cpu)

    async def _watch(self, index: int) -> None:
        while not self.stopping:
            rc = await self.procs[index].wait()
            if self.stopping:
                return
            log.error("worker_died", worker=index, status=rc)
            await asyncio.sleep(RESTART_DELAY)
            if not self.stopping:
                await self._spawn(index)

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
