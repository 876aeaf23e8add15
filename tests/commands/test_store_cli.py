"""`sendwarden suppress` and `sendwarden consent` as people run them: real processes, a real
SQLite file, CSV files with bad rows, and a SIGKILL in the middle of a big import."""

from __future__ import annotations

import csv
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import SENDWARDEN


def cli(env: dict[str, str], config: Path, *args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[str]:
    group, action, *rest = args
    if action in ("import", "add", "set"):  # the first of them makes the store (none is there yet)
        rest.append("--create")
    return subprocess.run([*SENDWARDEN, group, action, "--config", str(config), *rest], env=env, input=stdin and stdin.decode(),
                          capture_output=True, text=True, timeout=120)


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "sendwarden.toml"
    path.write_text('state_dir = "var"\n')
    return path


def test_suppression_import_export_round_trip_with_bad_rows(tmp_path: Path, config: Path, cli_env) -> None:
    src = tmp_path / "in.csv"
    src.write_bytes(
        b"address,scope,reason,source,created\r\n"
        b"Reader+news@Example.org,global,unsubscribe,one-click,2026-01-02T03:04:05Z\r\n"
        b"no-at-sign,global,,,\r\n"                                  # line 3: not an address
        b"fan@example.org,brand:shop,complaint,\"arf: mx, with comma\",1700000000\r\n"
        b"lister@example.org,team:x,,,\r\n"                          # line 5: unknown scope kind
        b"x@example.org,global,manual,a,b,c\r\n"                     # line 6: too many fields
        b"late@example.org,list:news,manual,\"two\r\nlines\",\r\n"   # lines 7-8: one record
        b"when@example.org,global,manual,src,yesterday\r\n"          # line 9: bad time
        b"\xff\xfe@example.org,global,,,\r\n"                        # line 10: not UTF-8
        b"kunde@B\xc3\xbccher.example,global,,,\r\n"
    )
    aborted = cli(cli_env, config, "suppress", "import", str(src))
    assert aborted.returncode == 1
    for line in (3, 5, 6, 9, 10):
        assert f"in.csv:{line}: " in aborted.stderr
    assert "nothing was imported" in aborted.stderr
    assert "0 rows" in cli(cli_env, config, "suppress", "export").stderr

    skipped = cli(cli_env, config, "suppress", "import", str(src), "--on-error", "skip")
    assert skipped.returncode == 0, skipped.stderr
    assert "4 rows imported (4 new" in skipped.stderr and "5 bad rows skipped" in skipped.stderr
    dump = tmp_path / "dump.csv"
    assert cli(cli_env, config, "suppress", "export", str(dump)).returncode == 0
    with dump.open(newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows == [
        ["address", "scope", "reason", "source", "created"],
        ["fan@example.org", "brand:shop", "complaint", "arf: mx, with comma", "2023-11-14T22:13:20Z"],
        ["kunde@xn--bcher-kva.example", "global", "import", f"import:{src}", rows[2][4]],
        ["late@example.org", "list:news", "manual", "two\r\nlines", rows[3][4]],
        ["reader@example.org", "global", "unsubscribe", "one-click", "2026-01-02T03:04:05Z"],
    ]
    # Importing the export into another store gives the same export; importing it again
    # into the first changes nothing.
    exported = cli(cli_env, config, "suppress", "export")
    other = tmp_path / "other.toml"
    other.write_text('state_dir = "var2"\n')
    assert cli(cli_env, other, "suppress", "import", str(dump)).returncode == 0
    assert cli(cli_env, other, "suppress", "export").stdout == exported.stdout
    again = cli(cli_env, config, "suppress", "import", "-", stdin=dump.read_bytes())
    assert "4 rows imported (0 new, 4 already there)" in again.stderr

    check = cli(cli_env, config, "suppress", "check", "READER@example.org")
    assert check.returncode == 10 and "unsubscribe" in check.stdout  # suppressed
    assert cli(cli_env, config, "suppress", "check", "fan@example.org", "--brand", "other").returncode == 0
    assert cli(cli_env, config, "suppress", "remove", "reader@example.org").returncode == 0
    assert cli(cli_env, config, "suppress", "check", "reader@example.org").returncode == 0


def test_a_bad_row_from_a_pipe_stops_the_import_and_says_what_was_applied(tmp_path: Path, config: Path, cli_env) -> None:
    data = b"address\n" + b"".join(f"u{i}@example.org\n".encode() for i in range(25)) + b"broken\n" + b"z@example.org\n"
    result = cli(cli_env, config, "suppress", "import", "-", "--batch", "10", stdin=data)
    assert result.returncode == 1
    assert "stdin:27: not an address: 'broken'; aborted: 20 rows before it were imported" in result.stderr
    assert "20 rows exported" in cli(cli_env, config, "suppress", "export").stderr


def test_consent_import_export_round_trip(tmp_path: Path, config: Path, cli_env) -> None:
    src = tmp_path / "consent.csv"
    src.write_text(
        "address,scope,consented_at,source,proof,status\n"
        "reader@example.org,shop,2025-03-01T10:00:00Z,https://shop.example.com/signup,form-81723,granted\n"
        "reader@example.org,shop,2025-09-01T10:00:00Z,preference-centre,req-9,withdrawn\n"
        "reader@example.org,shop/newsletter,2025-03-01T10:00:00Z,signup,form-81723,\n"
        "nobody@example.org,shop,,signup,x,granted\n"          # line 5: no time
        "fan@example.org,shop,2025-03-01T10:00:00Z,,x,granted\n"  # line 6: no source
        "fan@example.org,shop,2025-03-01T10:00:00Z,s,x,maybe\n"   # line 7: bad status
    )
    result = cli(cli_env, config, "consent", "import", str(src), "--on-error", "skip")
    assert result.returncode == 0
    assert all(f"consent.csv:{n}: " in result.stderr for n in (5, 6, 7))
    show = cli(cli_env, config, "consent", "show", "reader@example.org")
    assert "superseded by #2" in show.stdout and "withdrawn" in show.stdout
    history = cli(cli_env, config, "consent", "export", "--history")
    assert len(history.stdout.strip().splitlines()) == 4
    current = cli(cli_env, config, "consent", "export")
    assert len(current.stdout.strip().splitlines()) == 3
    other = tmp_path / "other.toml"
    other.write_text('state_dir = "var2"\n')
    dump = tmp_path / "history.csv"
    dump.write_text(history.stdout)
    assert cli(cli_env, other, "consent", "import", str(dump)).returncode == 0
    assert cli(cli_env, other, "consent", "export", "--history").stdout == history.stdout
    assert "0 recorded" in cli(cli_env, other, "consent", "import", str(dump)).stderr


def test_kill_during_import_leaves_whole_batches_only(tmp_path: Path, config: Path, cli_env) -> None:
    total, batch = 60_000, 500
    big = tmp_path / "big.csv"
    with big.open("w") as fh:
        fh.write("address,scope,reason,source\n")
        for i in range(total):
            fh.write(f"user{i:07d}@example.org,global,import,crm\n")
    db_path = tmp_path / "var" / "recipients.sqlite3"
    proc = subprocess.Popen([*SENDWARDEN, "suppress", "import", "--config", str(config), str(big), "--batch", str(batch), "--progress", "--create"],
                            env=cli_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    seen = 0
    while time.monotonic() < deadline and proc.poll() is None:
        if db_path.exists():
            try:
                with sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=5) as db:
                    seen = db.execute("SELECT count(*) FROM suppression").fetchone()[0]
            except sqlite3.OperationalError:
                seen = 0  # the schema is still being created
            if seen >= 4 * batch:
                break
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    assert proc.returncode == -signal.SIGKILL, "the import finished before it could be killed"

    with sqlite3.connect(db_path) as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        present = [r[0] for r in db.execute("SELECT address FROM suppression ORDER BY address")]
    assert 4 * batch <= len(present) < total
    assert len(present) % batch == 0  # whole batches, never part of one
    assert present == [f"user{i:07d}@example.org" for i in range(len(present))]

    # Running the same import again finishes the job; what was there is not doubled.
    again = cli(cli_env, config, "suppress", "import", str(big), "--batch", "20000", "--progress")
    assert again.returncode == 0, again.stderr
    assert f"{total} rows imported ({total - len(present)} new, {len(present)} already there)" in again.stderr
    assert "rows/s" in again.stderr  # the progress line
    with sqlite3.connect(db_path) as db:
        assert db.execute("SELECT count(*) FROM suppression").fetchone()[0] == total


def test_store_commands_print_json_with_rfc3339_times(config: Path, cli_env) -> None:
    import json
    import re

    assert cli(cli_env, config, "suppress", "add", "reader@example.org", "--reason", "unsubscribe").returncode == 0
    assert cli(cli_env, config, "consent", "add", "fan@example.org", "--scope", "shop", "--source", "form",
               "--at", "2026-01-02T03:04:05+01:00").returncode == 0
    assert cli(cli_env, config, "frequency", "set", "fan@example.org", "--max", "2", "--per", "7d").returncode == 0
    check = cli(cli_env, config, "suppress", "check", "Reader@Example.org", "--json")
    assert check.returncode == 10
    doc = json.loads(check.stdout)
    assert doc["suppressed"] is True and doc["suppressions"][0]["reason"] == "unsubscribe"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", doc["suppressions"][0]["created"])
    listed = [json.loads(x) for x in cli(cli_env, config, "suppress", "list", "--json").stdout.splitlines()]
    assert [x["address"] for x in listed] == ["reader@example.org"]
    consent = json.loads(cli(cli_env, config, "consent", "show", "fan@example.org", "--json").stdout)
    assert consent["records"][0]["consented_at"] == "2026-01-02T02:04:05Z" and consent["records"][0]["status"] == "granted"
    nobody = cli(cli_env, config, "consent", "show", "nobody@example.org", "--json")
    assert nobody.returncode == 12 and json.loads(nobody.stdout)["records"] == []
    freq = json.loads(cli(cli_env, config, "frequency", "show", "fan@example.org", "--json").stdout)
    assert freq["preferences"] == [{"scope": "global", "max": 2, "window_seconds": 604800.0, "source": "cli", "sent_in_window": 0}]
