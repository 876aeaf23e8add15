"""systemd's notify protocol: one datagram per message to $NOTIFY_SOCKET (sd_notify(3)).

It is small enough to speak directly: READY=1 once listeners are bound and stores open,
RELOADING=1/READY=1 around a reload, STOPPING=1 on shutdown, STATUS= a live summary, and
WATCHDOG=1 from the event loop itself, so that a wedged loop stops the pings and systemd
restarts the service. Without $NOTIFY_SOCKET every call is a no-op.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from typing import Callable

import structlog

log = structlog.get_logger("sendwarden.sdnotify")


class SystemdNotifier:
    def __init__(self, environ: dict[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        path = env.get("NOTIFY_SOCKET", "")
        if path.startswith("@"):  # abstract namespace
            path = "\0" + path[1:]
        self.address = path or None
        self.watchdog_usec = int(env.get("WATCHDOG_USEC", "0") or 0)
        if env.get("WATCHDOG_PID") and env.get("WATCHDOG_PID") != str(os.getpid()):
            self.watchdog_usec = 0
        self._sock: socket.socket | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def notify(self, *fields: str) -> None:
        if self.address is None:
            return
        if self._sock is None:
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        try:
            self._sock.sendto("\n".join(fields).encode(), self.address)
        except OSError as exc:  # systemd gone or socket full: never fatal for mail
            log.warning("sd_notify_failed", error=str(exc))

    def ready(self, status: str) -> None:
        self.notify("READY=1", f"STATUS={status}", f"MAINPID={os.getpid()}")

    def reloading(self) -> None:
        self.notify("RELOADING=1", f"MONOTONIC_USEC={time.monotonic_ns() // 1000}")

    def stopping(self) -> None:
        self.notify("STOPPING=1")

    def status(self, text: str) -> None:
        self.notify(f"STATUS={text}")

    def start_watchdog(self, summary: Callable[[], str]) -> None:
        """Ping at half the watchdog interval from the event loop, with a fresh STATUS."""
        if self.address is None or self.watchdog_usec <= 0:
            return
        interval = self.watchdog_usec / 2_000_000

        async def ping() -> None:
            while True:
                self.notify("WATCHDOG=1", f"STATUS={summary()}")
                await asyncio.sleep(interval)

        self._task = asyncio.get_running_loop().create_task(ping())

    def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
        if self._sock is not None:
            self._sock.close()
            self._sock = None
