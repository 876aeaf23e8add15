"""`sendwarden config check|show|init`, `policy init`, and how every command finds its
configuration: real `sendwarden` processes in temporary directories."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from proxy.config import locate_config
from tests.conftest import ROOT, SENDWARDEN

EMBEDDED_NOTE = "sendwarden: using the embedded development configuration"


def run(env: dict[str, str], cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*SENDWARDEN, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=60)


def test_locate_config_order(tmp_path: Path) -> None:
    system = tmp_path / "etc.toml"
    assert locate_config(None, {}, system) == (None, f"no --config, no $SENDWARDEN_CONFIG, no {system}")
    system.write_text("")
    assert locate_config(None, {}, system) == (system, "the system configuration")
    assert locate_config(None, {"SENDWARDEN_CONFIG": "/x.toml"}, system) == (Path("/x.toml"), "$SENDWARDEN_CONFIG")
    assert locate_config("/y.toml", {"SENDWARDEN_CONFIG": "/x.toml"}, system) == (Path("/y.toml"), "--config")


def test_a_store_command_in_the_wrong_directory_refuses_to_start_an_empty_store(tmp_path: Path, cli_env) -> None:
    out = run(cli_env, tmp_path, "suppress", "add", "x@example.com")
    assert out.returncode == 65, out.stderr  # EX_DATAERR
    note, error = out.stderr.splitlines()
    assert note.startswith(EMBEDDED_NOTE) and str(tmp_path) in note
    assert f"no store at {tmp_path / 'var' / 'recipients.sqlite3'}" in error and "--create" in error
    assert not (tmp_path / "var").exists()
    # A reading command does not offer to make one.
    out = run(cli_env, tmp_path, "suppress", "check", "x@example.com")
    assert out.returncode == 65 and "--create" not in out.stderr and not (tmp_path / "var").exists()

    made = run(cli_env, tmp_path, "suppress", "add", "--create", "x@example.com")
    assert made.returncode == 0, made.stderr
    assert (tmp_path / "var" / "recipients.sqlite3").exists()


def test_the_environment_names_the_configuration_and_says_so(tmp_path: Path, cli_env) -> None:
    config = tmp_path / "sw.toml"
    config.write_text(f'state_dir = "{tmp_path / "state"}"\nstore = "postgresql://sw:s3cret@db.internal/sw"\n'
                      '[quarantine.notify]\nwebhook = "https://hooks.example.com/x?token=abc"\n')
    env = {**cli_env, "SENDWARDEN_CONFIG": str(config)}
    out = run(env, tmp_path, "config", "show", "--non-default", "--json")
    assert out.returncode == 0, out.stderr
    assert out.stderr == f"sendwarden: using {config} ($SENDWARDEN_CONFIG)\n"
    shown = json.loads(out.stdout)
    assert shown["source"] == str(config)
    assert shown["config"] == {"state_dir": str(tmp_path / "state"), "store": "postgresql://sw:****@db.internal/sw",
                               "quarantine": {"notify": {"webhook": "https://hooks.example.com/x?****"}}}
    assert "s3cret" not in out.stdout and "abc" not in out.stdout
    # --config wins, and then nothing is said about where the configuration came from.
    out = run(env, tmp_path, "config", "show", "--config", str(ROOT / "examples" / "sendwarden.toml"))
    assert out.returncode == 0 and out.stderr == ""
    assert 'hostname = "relay.example.com"' in out.stdout.splitlines()
    assert 'listeners[1].address = "0.0.0.0:10026"' in out.stdout.splitlines()
    assert 'timeouts.policy = 10.0' in out.stdout.splitlines()  # every key, defaults too
    # A $SENDWARDEN_CONFIG that names no file is an error, not a fall-back to the default.
    out = run({**cli_env, "SENDWARDEN_CONFIG": str(tmp_path / "none.toml")}, tmp_path, "config", "show")
    assert out.returncode == 78 and f"{tmp_path / 'none.toml'}: file not found" in out.stderr


def test_init_writes_the_shipped_files_and_check_finds_what_serve_would_refuse(tmp_path: Path, cli_env) -> None:
    config, policy = tmp_path / "etc" / "sendwarden.toml", tmp_path / "etc" / "policy.toml"
    assert run(cli_env, tmp_path, "config", "init", str(config)).returncode == 0
    assert config.read_text() == (ROOT / "examples" / "sendwarden.toml").read_text()
    again = run(cli_env, tmp_path, "config", "init", str(config))
    assert again.returncode == 1 and "exists; give --force" in again.stderr
    assert run(cli_env, tmp_path, "config", "init", "--force", str(config)).returncode == 0
    assert run(cli_env, tmp_path, "policy", "init", str(policy)).returncode == 0
    assert policy.read_text() == (ROOT / "policies" / "default.toml").read_text()
    assert run(cli_env, tmp_path, "policy", "init", str(policy)).returncode == 1
    assert run(cli_env, tmp_path, "policy", "check", str(policy)).returncode == 0

    # The production starting point names files this machine does not have: each is reported.
    out = run(cli_env, tmp_path, "config", "check", str(config))
    assert out.returncode == 78, out.stderr  # EX_CONFIG
    for key, what in (("policy", "/etc/sendwarden/policy.toml"), ("tls.cert", "/etc/sendwarden/tls/fullchain.pem"),
                      ("tls.key", "/etc/sendwarden/tls/privkey.pem"), ("auth.credentials", "/etc/sendwarden/credentials.toml")):
        assert f"{config}: {key}: {what}" in out.stderr, out.stderr

    # Pointed at the files made here, the same configuration checks out, and nothing is made.
    text = config.read_text()
    state = tmp_path / "state"
    for old, new in (('"/etc/sendwarden/policy.toml"', f'"{policy}"'), ('"/var/lib/sendwarden"', f'"{state}"'),
                     ('cert = "/etc/sendwarden/tls/fullchain.pem"', 'cert = ""'),
                     ('key = "/etc/sendwarden/tls/privkey.pem"', 'key = ""'),
                     ('credentials = "/etc/sendwarden/credentials.toml"', 'credentials = ""')):
        assert old in text
        text = text.replace(old, new)
    config.write_text(text)
    out = run(cli_env, tmp_path, "config", "check", str(config))
    assert out.returncode == 0, out.stderr
    assert out.stdout == f"{config}: ok (policy {policy}: ok)\n"
    assert f"note: unsubscribe.key_file: {state / 'unsubscribe.key'} is made (0600) on first start" in out.stderr
    assert not state.exists()
