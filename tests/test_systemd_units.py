"""The shipped systemd timers run commands that exist, as the sendwarden user, with the
production config."""

from __future__ import annotations

import configparser
import shlex
import shutil
import subprocess

import pytest

from proxy.cli import build_parser
from tests.conftest import ROOT

UNITS = ROOT / "systemd"
JOBS = ["sendwarden-quarantine-purge", "sendwarden-links-check"]


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
    assert argv[0] == "/usr/local/bin/sendwarden"
    assert argv[-2:] == ["--config", "/etc/sendwarden/sendwarden.toml"]
    if argv[1] == "links":
        return  # `links check` is another module's command; its own tests cover its options
    args = build_parser().parse_args(argv[1:])  # the command line is one this sendwarden accepts
    assert args.func is not None


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
def test_units_pass_systemd_analyze() -> None:
    files = [str(p) for p in sorted(UNITS.glob("sendwarden-*.*")) if p.stem in JOBS]
    done = subprocess.run(["systemd-analyze", "verify", *files], capture_output=True, text=True, timeout=60)
    # The program itself is not installed on a test machine; every other complaint is a defect.
    problems = [line for line in done.stderr.splitlines() if "is not executable" not in line and line.strip()]
    assert problems == []
