"""Fixtures of the reliability tests, and the figures they report at the end of the run.

Counts are small enough for CI (the whole directory runs in well under two minutes on two
cores); set SENDWARDEN_SCALE=10 (or more) to run the same tests with ten times the messages,
and SENDWARDEN_FUZZ=long for long fuzzing runs (README.md here).
"""

from __future__ import annotations

import os
from collections import defaultdict
from pathlib import Path
from typing import Any, AsyncIterator, Awaitable, Callable

import pytest

from tests.reliability.serveproc import ServeProcess

SCALE = max(1, int(os.environ.get("SENDWARDEN_SCALE", "1")))
# name -> figures; printed at the end of the run (and kept for the closing report).
FIGURES: dict[str, dict[str, Any]] = defaultdict(dict)


def scaled(n: int) -> int:
    return n * SCALE


def record(test: str, **figures: Any) -> None:
    FIGURES[test].update(figures)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not FIGURES:
        return
    tr = terminalreporter
    tr.section("reliability figures")
    totals: dict[str, int] = defaultdict(int)
    for test, figures in FIGURES.items():
        tr.write_line(f"{test}: " + ", ".join(f"{k}={v}" for k, v in figures.items()))
        for key in ("messages", "faults", "lost", "duplicates"):
            if isinstance(figures.get(key), int):
                totals[key] += figures[key]
    if totals:
        tr.write_line(
            f"TOTAL: messages sent={totals['messages']}, faults injected={totals['faults']}, "
            f"accepted-then-lost={totals['lost']}, duplicates at upstream={totals['duplicates']}"
        )



@pytest.fixture
async def serve(tmp_path: Path, cli_env: dict[str, str]) -> AsyncIterator[Callable[..., Awaitable[ServeProcess]]]:
    """Factory: start a `sendwarden serve` subprocess (stopped, or killed, at the end)."""
    started: list[ServeProcess] = []

    async def start(upstream: str, extra: dict[str, Any] | None = None, policy: str | None = None,
                    preexec: Callable[[], None] | None = None) -> ServeProcess:
        proc = ServeProcess(tmp_path, upstream, cli_env, extra, policy, preexec)
        started.append(proc)
        return await proc.start()

    yield start
    for proc in started:
        if proc.proc is not None and proc.proc.returncode is None:
            proc.proc.kill()
            await proc.proc.wait()
