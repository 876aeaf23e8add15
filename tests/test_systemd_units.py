"""The shipped systemd units: one install path (/opt/sendwarden/bin/sendwarden, the venv of
docs/production.md) everywhere, commands that exist, the sendwarden user that sysusers.d makes
and the directories tmpfiles.d makes, and systemd's own verdict (systemd-analyze verify,
systemd-sysusers and systemd-tmpfiles run on a scratch root)."""

from __future__ import annotations

import configparser
import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from proxy.cli import build_parser
from tests.conftest import ROOT

UNITS = ROOT / "systemd"
JOBS = ["sendwarden-quarantine-purge", "sendwarden-links-check"]
DAEMONS = {"sendwarden": "serve", "sendwarden-milter": "milter"}
PROGRAM = "/opt/sendwarden/bin/sendwarden"
CONFIG = ["--config", "/etc/sendwarden/sendwarden.toml"]


def unit(name: str) -> configparser.ConfigParser:
    cp = configparser.ConfigParser(strict=False, interpolation=None)
    cp.optionxform = str  # type: ignore[assignment,method-assign]
    cp.read(UNITS / name)
    return cp


@pytest.mark.parametrize("job", JOBS)
def test_timer_and_service(job: str) -> None:
    timer = unit(f"{job}.timer")
    assert timer["Timer"]["OnCalendar"] == "daily" and timer["Timer"]["Persistent"] == "true"
    assert timer["Install"]["WantedBy"] == "timers.target"
    service = unit(f"{job}.service")["Service"]
    assert service["Type"] == "oneshot" and service["User"] == "sendwarden" and service["UMask"] == "0077"
    assert service["ReadWritePaths"] == "/var/lib/sendwarden"
    argv = shlex.split(service["ExecStart"])
    assert argv[0] == PROGRAM
    assert argv[-2:] == CONFIG
    if argv[1] == "links":
        return  # `links check` is another module's command; its own tests cover its options
    args = build_parser().parse_args(argv[1:])  # the command line is one this sendwarden accepts
    assert args.func is not None


def test_every_unit_runs_the_one_installed_program() -> None:
    services = sorted(UNITS.glob("*.service"))
    assert {p.stem for p in services} == set(JOBS) | set(DAEMONS)
    for path in services:
        argv = shlex.split(unit(path.name)["Service"]["ExecStart"])
        assert argv[0] == PROGRAM, path.name
    assert PROGRAM.removesuffix("/bin/sendwarden") in (ROOT / "docs" / "production.md").read_text(encoding="utf-8")


@pytest.mark.parametrize("name", sorted(DAEMONS))
def test_daemons_notify_and_run_as_the_sysusers_user(name: str) -> None:
    service = unit(f"{name}.service")["Service"]
    assert service["Type"] == "notify" and service["WatchdogSec"] and service["ExecReload"] == "/bin/kill -HUP $MAINPID"
    argv = shlex.split(service["ExecStart"])
    assert argv[1:] == [DAEMONS[name], *CONFIG]
    args = build_parser().parse_args(argv[1:])
    assert args.func is not None and args.config == CONFIG[1]
    [user_line] = [line.split() for line in (UNITS / "sendwarden.sysusers").read_text().splitlines()
                   if line.startswith("u ")]
    assert service["User"] == service["Group"] == user_line[1] == "sendwarden"
    assert service["StateDirectory"] == "sendwarden" and service["ReadWritePaths"] == "/var/lib/sendwarden"


def _tmpfiles() -> dict[str, tuple[str, str, str]]:
    lines = [line.split() for line in (UNITS / "sendwarden.tmpfiles").read_text().splitlines()
             if line.strip() and not line.startswith("#")]
    return {path: (mode, user, group) for _, path, mode, user, group, _ in lines}


def test_tmpfiles_makes_what_the_units_and_the_guide_use() -> None:
    dirs = _tmpfiles()
    assert dirs["/var/lib/sendwarden"] == ("0700", "sendwarden", "sendwarden")
    assert dirs["/etc/sendwarden"] == ("0750", "root", "sendwarden")  # config readable, not writable
    for name in [*JOBS, *DAEMONS]:
        assert unit(f"{name}.service")["Service"]["ReadWritePaths"] in dirs


@pytest.mark.skipif(shutil.which("systemd-sysusers") is None or os.geteuid() != 0,
                    reason="needs systemd-sysusers and systemd-tmpfiles, as root (chown)")
def test_sysusers_and_tmpfiles_on_a_scratch_root(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    for argv in (["systemd-sysusers", f"--root={tmp_path}", str(UNITS / "sendwarden.sysusers")],
                 ["systemd-tmpfiles", f"--root={tmp_path}", "--create", str(UNITS / "sendwarden.tmpfiles")]):
        done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
        assert done.returncode == 0, done.stderr
    [entry] = [line.split(":") for line in (tmp_path / "etc" / "passwd").read_text().splitlines()
               if line.startswith("sendwarden:")]
    uid, gid, home, shell = int(entry[2]), int(entry[3]), entry[5], entry[6]
    assert uid < 1000 and home == "/var/lib/sendwarden" and shell == "/usr/sbin/nologin"  # a system user
    for path, (mode, user, _group) in _tmpfiles().items():
        st = (tmp_path / path.lstrip("/")).stat()
        assert oct(st.st_mode & 0o7777) == oct(int(mode, 8)), path
        assert st.st_uid == (0 if user == "root" else uid) and st.st_gid == gid, path


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
def test_units_pass_systemd_analyze() -> None:
    files = [str(p) for p in sorted([*UNITS.glob("*.service"), *UNITS.glob("*.timer")])]
    assert len(files) == 6
    done = subprocess.run(["systemd-analyze", "verify", *files], capture_output=True, text=True, timeout=60)
    # The program itself is not installed on a test machine; every other complaint is a defect.
    problems = [line for line in done.stderr.splitlines() if "is not executable" not in line and line.strip()]
    assert problems == []


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
@pytest.mark.parametrize("name", sorted(DAEMONS))
def test_daemons_stay_hardened(name: str) -> None:
    """systemd's own exposure score of the long-running units stays at 2.0 or below ("OK");
    --threshold counts in tenths."""
    done = subprocess.run(["systemd-analyze", "security", "--offline=yes", "--threshold=20", str(UNITS / f"{name}.service")],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stdout[-400:] + done.stderr
    assert re.search(rf"Overall exposure level for {name}\.service: [01]\.\d OK", done.stdout), done.stdout[-200:]
