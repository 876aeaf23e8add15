"""The log: one JSON line per record, also when several processes share stdout."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.conftest import ROOT

_LOGGER = (
    "from proxy.audit import configure; import structlog; configure(); log = structlog.get_logger(); "
    "[log.info('line', n=n, pad='x' * 300) for n in range(3000)]"
)


def test_workers_sharing_unbuffered_stdout_never_fuse_lines() -> None:
    """`workers > 1` processes write to one stdout. With PYTHONUNBUFFERED=1 (common in container
    images), a line and its newline written by two system calls let another process's line land
    between them; each record must be one write."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(ROOT)}
    read, write = os.pipe()
    procs = [subprocess.Popen([sys.executable, "-c", _LOGGER], stdout=write, env=env) for _ in range(3)]
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        out = pipe.read()
    assert [p.wait(timeout=60) for p in procs] == [0, 0, 0]
    lines = out.decode().splitlines()
    records = [json.loads(line) for line in lines]  # a fused or split line fails here
    assert len(records) == 9000
    assert {r["event"] for r in records} == {"line"}
