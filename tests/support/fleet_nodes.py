"""Real `sendwarden serve` processes sharing one PostgreSQL database: a small fleet for tests."""

from __future__ import annotations

import asyncio
import json
import secrets
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import SENDWARDEN
from tests.runtime.test_serve_process import free_port


@dataclass
class Node:
    name: str
    proc: asyncio.subprocess.Process
    port: int
    web_port: int
    config: Path

    async def stop(self) -> None:
        if self.proc.returncode is None:
            self.proc.terminate()
            try:
                await asyncio.wait_for(self.proc.wait(), 15)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()


def write_config(base: Path, name: str, store: str, upstream: str, policy: Path, web_port: int, extra: str = "") -> Path:
    """One node's config: its own state directory, the shared store and unsubscribe key."""
    key = base / "unsubscribe.key"
    if not key.exists():
        key.write_text(secrets.token_hex(32) + "\n")
        key.chmod(0o600)
    config = base / f"{name}.toml"
    config.write_text(
        f'state_dir = "{base / name}"\nworkers = 1\nstore = "{store}"\npolicy = "{policy}"\n'
        f'[recipients]\nverify_domains = false\n'  # no resolver outside the machine
        f'[upstream]\nurl = "{upstream}"\n[timeouts]\nshutdown = 10\n'
        f'[unsubscribe]\nlisten = "127.0.0.1:{web_port}"\nbase_url = "https://unsub.test"\n'
        f'mailto_domain = "unsub.test"\nkey_file = "{key}"\n'
        f'[complaints]\naddress = "abuse@unsub.test"\n{extra}'
    )
    return config


async def start_node(base: Path, name: str, store: str, upstream: str, policy: Path, env: dict[str, str],
                     extra: str = "") -> Node:
    port, web_port = free_port(), free_port()
    config = write_config(base, name, store, upstream, policy, web_port, extra)
    proc = await asyncio.create_subprocess_exec(
        *SENDWARDEN, "serve", "--config", str(config), "--listen", f"127.0.0.1:{port}", "--metrics", "",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, env=env,
    )
    assert proc.stdout is not None
    seen = []
    while True:
        line = await asyncio.wait_for(proc.stdout.readline(), 30)
        assert line, f"node {name} exited before it was ready: {b''.join(seen).decode(errors='replace')}"
        seen.append(line)
        try:
            if json.loads(line).get("event") == "ready":
                break
        except ValueError:
            continue
    asyncio.get_running_loop().create_task(_drain(proc))
    return Node(name, proc, port, web_port, config)


async def _drain(proc: asyncio.subprocess.Process) -> None:
    """Keep reading the node's log so that a full pipe never stalls it."""
    assert proc.stdout is not None
    while await proc.stdout.readline():
        pass
