"""The installable package: `pip wheel` builds it from a clean copy of the source, and installed
into a fresh virtual environment outside the repository (its dependencies resolved by pip from
pyproject's list, as an operator's install would), the `sendwarden` command works with no file of
the checkout: --version, config init and policy init, scan with the shipped default policy, serve relaying one message into a
Maildir and stopping on SIGTERM.

Slow (a venv and a dependency install, about a minute): one test does it all.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import smtplib
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.support.postfix import free_port

COMPLIANT = (ROOT / "examples" / "compliant.eml").read_bytes()
PLAIN = (ROOT / "examples" / "plain.eml").read_bytes()
# What a source copy leaves out: local state, build output, caches and the developer's venv.
NOT_SOURCE = shutil.ignore_patterns(".git", ".venv", "build", "dist", "var", "*.egg-info", "__pycache__",
                                    ".pytest_cache", ".mypy_cache", ".ruff_cache", ".hypothesis")


def run(*argv: str | Path, cwd: Path, env: dict[str, str], timeout: float = 300,
        stdin: bytes | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(a) for a in argv], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout, input=stdin.decode() if stdin else None, check=False)


@pytest.mark.timeout(900)
def test_wheel_installs_and_runs_outside_the_checkout(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    src = tmp_path / "src"
    shutil.copytree(ROOT, src, ignore=NOT_SOURCE)
    built = run(sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", tmp_path / "dist", src, cwd=tmp_path, env=env)
    assert built.returncode == 0, built.stderr
    [wheel] = (tmp_path / "dist").glob("sendwarden-*.whl")
    shutil.rmtree(src)  # nothing of the source is left to import from

    venv = tmp_path / "venv"
    made = run(sys.executable, "-m", "venv", venv, cwd=tmp_path, env=env)
    assert made.returncode == 0, made.stderr
    installed = run(venv / "bin" / "pip", "install", "-q", wheel, cwd=tmp_path, env=env, timeout=600)
    assert installed.returncode == 0, installed.stderr

    work = tmp_path / "work"
    work.mkdir()
    sendwarden = venv / "bin" / "sendwarden"
    where = run(venv / "bin" / "python", "-c", "import proxy, sys; print(proxy.__file__); print(sys.path)", cwd=work, env=env)
    assert where.stdout.startswith(str(venv / "lib")), where.stdout
    assert str(ROOT) not in where.stdout

    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    shown = run(sendwarden, "--version", cwd=work, env=env)
    assert (shown.returncode, shown.stdout.strip()) == (0, f"sendwarden {version}")

    # config init and policy init: the production template and the default policy ship inside it.
    made = run(sendwarden, "config", "init", "sendwarden.toml", cwd=work, env=env)
    assert made.returncode == 0 and "[upstream]" in (work / "sendwarden.toml").read_text(), made.stderr
    made = run(sendwarden, "policy", "init", "policy.toml", cwd=work, env=env)
    assert made.returncode == 0, made.stderr
    checked = run(sendwarden, "policy", "check", "policy.toml", cwd=work, env=env)
    assert checked.returncode == 0 and "policy.toml: ok" in checked.stdout, checked.stdout + checked.stderr

    # scan: the embedded default policy ships inside the package.
    (work / "good.eml").write_bytes(COMPLIANT)
    (work / "plain.eml").write_bytes(PLAIN)
    good = run(sendwarden, "scan", "--json", "good.eml", cwd=work, env=env)
    assert good.returncode == 0 and json.loads(good.stdout)["action"] == "relay", good.stdout + good.stderr
    bad = run(sendwarden, "scan", "--json", "plain.eml", cwd=work, env=env)
    assert bad.returncode == 3 and "unsubscribe.header_missing" in bad.stdout, bad.stdout + bad.stderr

    # serve: on a loopback port, relays one message into a Maildir, stops on SIGTERM.
    port = free_port()
    outbox = work / "outbox"
    proc = subprocess.Popen([str(sendwarden), "serve", "--listen", f"127.0.0.1:{port}", "--metrics", "",
                             "--upstream", f"maildir:{outbox}"], cwd=work, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith("sendwarden: using "):  # which configuration: the embedded default
                continue
            if json.loads(line).get("event") == "ready":
                break
        else:
            pytest.fail("serve exited before it was ready")
        with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
            refused = client.sendmail("news@shop.example.com", ["reader@example.org"], COMPLIANT.replace(b"\n", b"\r\n"))
        assert refused == {}
        [delivered] = (outbox / "new").iterdir()
        assert delivered.read_bytes().endswith(COMPLIANT.replace(b"\n", b"\r\n"))
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
