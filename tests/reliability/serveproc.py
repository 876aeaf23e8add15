"""A real `sendwarden serve` process for the tests that measure it (memory), kill it (SIGKILL)
or limit it (RLIMIT_FSIZE): configured from a dict, logging JSON lines to a file the test can
read, restartable on the same port."""

from __future__ import annotations

import asyncio
import json
import os
import signal
from pathlib import Path
from typing import Any, Callable

from tests.conftest import SENDWARDEN, merge
from tests.runtime.test_serve_process import free_port


def to_toml(data: dict[str, Any]) -> str:
    """Enough TOML for a service config: scalars, lists of scalars, tables, arrays of tables
    (JSON's string, number and array syntax are valid TOML)."""
    lines = [f"{k} = {json.dumps(v)}" for k, v in data.items() if not isinstance(v, (dict, list)) or
             (isinstance(v, list) and not (v and isinstance(v[0], dict)))]
    for k, v in data.items():
        if isinstance(v, dict):
            lines.append(f"[{k}]")
            lines += [f"{kk} = {json.dumps(vv)}" for kk, vv in v.items()]
        elif isinstance(v, list) and v and isinstance(v[0], dict):
            for item in v:
                lines.append(f"[[{k}]]")
                lines += [f"{kk} = {json.dumps(vv)}" for kk, vv in item.items()]
    return "\n".join(lines) + "\n"


class ServeProcess:
    def __init__(self, tmp_path: Path, upstream: str, env: dict[str, str], extra: dict[str, Any] | None = None,
                 policy: str | None = None, preexec: Callable[[], None] | None = None) -> None:
        self.tmp_path = tmp_path
        self.port = free_port()
        self.log = tmp_path / "serve.log"
        self.env = env
        self.preexec = preexec
        self.proc: asyncio.subprocess.Process | None = None
        self.starts = 0
        data: dict[str, Any] = {
            "hostname": "relay.test",
            "workers": 1,  # these tests watch one process (and kill it)
            "state_dir": str(tmp_path / "var"),
            "listeners": [{"name": "default", "address": f"127.0.0.1:{self.port}"}],
            "upstream": {"url": upstream, "pool_size": 4},
            "timeouts": {"upstream_connect": 3, "upstream_command": 3, "upstream_data": 5, "shutdown": 5},
            "recipients": {"verify_domains": False},  # no resolver outside the machine
        }
        if policy is not None:
            path = tmp_path / "policy.toml"
            path.write_text(policy, encoding="utf-8")
            data["policy"] = str(path)
        self.config = tmp_path / "sendwarden.toml"
        self.config.write_text(to_toml(merge(data, extra or {})), encoding="utf-8")

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    async def start(self, timeout: float = 30) -> "ServeProcess":
        offset = self.log.stat().st_size if self.log.exists() else 0
        with open(self.log, "ab") as out:
            self.proc = await asyncio.create_subprocess_exec(
                *SENDWARDEN, "serve", "--config", str(self.config), stdout=out, stderr=asyncio.subprocess.STDOUT,
                env=self.env, preexec_fn=self.preexec,
            )
        self.starts += 1
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline:
            if any(e.get("event") == "ready" for e in self.events(offset)):
                return self
            if self.proc.returncode is not None:
                break
            await asyncio.sleep(0.05)
        raise AssertionError(f"serve did not get ready:\n{self.log.read_text()[offset:][-3000:]}")

    def events(self, offset: int = 0) -> list[dict[str, Any]]:
        out = []
        with open(self.log, "rb") as fh:
            fh.seek(offset)
            for line in fh.read().splitlines():
                try:
                    out.append(json.loads(line))
                except ValueError:
                    out.append({"event": "<not json>", "line": line.decode("utf-8", "replace")})
        return out

    def status(self, field: str) -> int:
        """A figure from /proc/PID/status in bytes (VmRSS: now, VmHWM: the peak so far)."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
        raise KeyError(field)

    def open_files(self) -> int:
        return len(os.listdir(f"/proc/{self.pid}/fd"))

    async def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        await self.proc.wait()

    async def stop(self) -> int:
        if self.proc is None or self.proc.returncode is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            return await asyncio.wait_for(self.proc.wait(), 20)
        except asyncio.TimeoutError:
            self.proc.kill()
            await self.proc.wait()
            raise
