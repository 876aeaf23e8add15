"""bench/bench_checks.py runs (with a tiny count) and prints its figures; the figures
themselves are for people, never asserted."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import ROOT


def test_bench_checks_runs() -> None:
    out = subprocess.run([sys.executable, str(ROOT / "bench" / "bench_checks.py"), "--count", "3"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "newsletter_en.eml" in out.stdout and "parse + all checks   median" in out.stdout
    assert "not clean" not in out.stdout  # the benchmark message passes the default policy
