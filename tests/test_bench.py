"""The benchmark script works (tiny counts; the figures mean nothing here, CI prints them)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import ROOT


def test_smtp_bench_quick_run() -> None:
    out = subprocess.run([sys.executable, str(ROOT / "bench" / "smtp_bench.py"), "--quick", "--sizes", "2k",
                          "--cases", "direct,sendwarden,proxy,workers2bound"], capture_output=True, text=True, timeout=300)
    print(out.stdout)
    assert out.returncode == 0, out.stdout + out.stderr
    cases = {"direct", "sendwarden", "proxy", "workers2bound"}
    rows = {line.split()[0]: line for line in out.stdout.splitlines() if line.startswith("  ") and line.split()[0] in cases}
    assert set(rows) == cases
    assert all(row.rstrip().endswith("yes") for row in rows.values()), rows
    assert "latency at" in out.stdout and "p99" in out.stdout


@pytest.mark.timeout(1200)  # rspamd compiles its rules on its first start (minutes on a busy VM)
def test_smtp_bench_milter_cases_quick_run() -> None:
    """Postfix with `sendwarden milter`, and with rspamd (in a loopback-only network namespace)."""
    sys.path.insert(0, str(ROOT / "bench"))
    import smtp_bench

    if not smtp_bench.postfix_available():
        pytest.skip("Postfix needs root and Debian's postfix package")
    cases = ["postfix-milter"] + (["postfix-rspamd"] if smtp_bench.rspamd_available() is None else [])
    out = subprocess.run([sys.executable, str(ROOT / "bench" / "smtp_bench.py"), "--quick", "--sizes", "2k",
                          "--cases", ",".join(cases)], capture_output=True, text=True, timeout=900, check=False)
    print(out.stdout)
    assert out.returncode == 0, out.stdout + out.stderr
    rows = {line.split()[0]: line for line in out.stdout.splitlines() if line.startswith("  ") and line.split()[0] in cases}
    assert set(rows) == set(cases)
    assert all(row.rstrip().endswith("yes") for row in rows.values()), rows
    assert "of core 1 busy" in out.stdout
    if "postfix-rspamd" in cases:
        assert "Postfix + sendwarden milter passes" in out.stdout


def test_pg_store_bench_quick_run() -> None:
    out = subprocess.run([sys.executable, str(ROOT / "bench" / "pg_store.py"), "--rows", "2000", "--lookups", "200",
                          "--concurrency", "5", "--pool", "2"], capture_output=True, text=True, timeout=300)
    print(out.stdout)
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.count("median") == 7 and "record_sends x5" in out.stdout


def test_store_lookup_bench_quick_run(tmp_path) -> None:  # type: ignore[no-untyped-def]
    out = subprocess.run([sys.executable, str(ROOT / "bench" / "store_lookup.py"), "--rows", "3000", "--lookups", "400",
                          "--db", str(tmp_path / "store.sqlite3")], capture_output=True, text=True, timeout=300)
    print(out.stdout)
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.count("SQL on the connection") == 3
    assert out.stdout.count("(reader thread, one core, as cpu_affinity binds it)") == 3 and out.stdout.count("(reader thread, any core)") == 3


def test_html_view_bench_quick_run() -> None:
    out = subprocess.run([sys.executable, str(ROOT / "bench" / "html_view_bench.py"), "--count", "3"],
                         capture_output=True, text=True, timeout=300)
    print(out.stdout)
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.count("extract()") == 2 and "checks (default policy" in out.stdout


def test_mime_bench_quick_run() -> None:
    out = subprocess.run([sys.executable, str(ROOT / "bench" / "bench_mime.py"), "--rounds", "1", "--number", "1"],
                         capture_output=True, text=True, timeout=300)
    print(out.stdout)
    assert out.returncode == 0, out.stdout + out.stderr
    rows = [line for line in out.stdout.splitlines()[2:] if line.strip()]
    assert len(rows) == 4 and rows[1].startswith("newsletter_en.eml") and rows[1].split()[-1] == "2", out.stdout
