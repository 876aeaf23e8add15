"""`sendwarden scan --json` run as a real CLI process from an async test (so that the test's own
loopback servers, such as the DNS server, keep answering while it runs)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from tests.conftest import SENDWARDEN


async def scan_json(env: dict[str, str], config: Path, eml: Path, *args: str) -> tuple[int, dict[str, Any]]:
    """(exit status, the JSON document) of `sendwarden scan --json --config CONFIG ARGS EML`."""
    proc = await asyncio.create_subprocess_exec(*SENDWARDEN, "scan", "--json", "--config", str(config), *args, str(eml),
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert b"Traceback" not in err, err
    return proc.returncode or 0, json.loads(out)
