"""The `sendwarden` command line as a contract: help on every option, exit statuses in every
command's --help, generated man page and completions."""

from __future__ import annotations

import argparse
import subprocess

from proxy.cli import build_parser, commands
from tests.conftest import SENDWARDEN


def _walk(p: argparse.ArgumentParser, path: str):
    yield path, p
    for a in p._actions:
        if isinstance(a, argparse._SubParsersAction):
            for name, child in a.choices.items():
                yield from _walk(child, f"{path} {name}")


def test_every_option_and_argument_has_help() -> None:
    missing = [f"{path}: {'/'.join(a.option_strings) or a.dest}"
               for path, p in _walk(build_parser(), "sendwarden") for a in p._actions
               if not isinstance(a, argparse._SubParsersAction) and not a.help]
    assert missing == []


def test_every_command_documents_its_exit_statuses() -> None:
    for p in commands(build_parser()):
        assert "exit status:" in (p.epilog or ""), p.prog
        assert "  64  a wrong command line" in p.epilog and "  78  a wrong configuration or policy" in p.epilog


def test_usage_errors_exit_64(cli_env) -> None:
    out = subprocess.run([*SENDWARDEN, "scan", "--no-such-option", "x.eml"], env=cli_env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 64 and "unrecognized arguments" in out.stderr
    out = subprocess.run([*SENDWARDEN, "suppress", "check", "--help"], env=cli_env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "  10  the address is suppressed" in out.stdout


def test_man_page_and_completions_are_generated_from_the_parser(cli_env, tmp_path) -> None:
    page = subprocess.run([*SENDWARDEN, "manpage"], env=cli_env, capture_output=True, text=True, timeout=60)
    assert page.returncode == 0, page.stderr
    assert page.stdout.startswith(".TH SENDWARDEN") and ".SH EXIT STATUS" in page.stdout
    for p in commands(build_parser()):
        assert p.prog.replace("-", "\\-") in page.stdout
    (tmp_path / "sendwarden.1").write_text(page.stdout)
    rendered = subprocess.run(["man", "-l", "-Tutf8", str(tmp_path / "sendwarden.1")], capture_output=True, timeout=60,
                              env={**cli_env, "MANWIDTH": "100"})
    if rendered.returncode == 0:  # man-db is there: the page renders with its exit statuses
        assert b"suppress check" in rendered.stdout and b"the address is suppressed" in rendered.stdout
    for shell, marker in (("bash", "-F _shtab_sendwarden sendwarden"), ("zsh", "#compdef sendwarden")):
        out = subprocess.run([*SENDWARDEN, "completion", shell], env=cli_env, capture_output=True, text=True, timeout=60)
        assert out.returncode == 0 and marker in out.stdout
        assert "quarantine" in out.stdout and "--non-default" in out.stdout
    script = subprocess.run([*SENDWARDEN, "completion", "bash"], env=cli_env, capture_output=True, text=True, timeout=60).stdout
    (tmp_path / "c.bash").write_text(script)
    # bash itself loads the script, and completing `sendwarden qua` offers `quarantine`.
    probe = ('source c.bash; COMP_WORDS=(sendwarden qua); COMP_CWORD=1; COMP_LINE="sendwarden qua"; COMP_POINT=14; '
             '_shtab_sendwarden; printf "%s\\n" "${COMPREPLY[@]}"')
    done = subprocess.run(["bash", "-c", probe], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "quarantine" in done.stdout.split(), done.stderr


JSON_COMMANDS = ("scan", "policy check", "config show", "status", "quarantine list", "quarantine show", "suppress list",
                 "suppress check", "consent show", "frequency show", "links check", "dns-check")


def test_commands_that_print_data_take_json() -> None:
    by_prog = {p.prog: p for p in commands(build_parser())}
    for name in JSON_COMMANDS:
        options = {o for a in by_prog[f"sendwarden {name}"]._actions for o in a.option_strings}
        assert "--json" in options, name
