"""`sendwarden completion bash|zsh` and `sendwarden manpage`: shell completion and the manual
page, generated from the argument parser itself so that neither drifts from the commands.

shtab writes the completion scripts and argparse-manpage the roff page: both read an
argparse parser as it is, which is what the command line is built from. The page gets one more
section, EXIT STATUS, from the statuses each command documents in its --help.
"""

from __future__ import annotations

import argparse
from typing import Any

from proxy import __version__


def _roff(text: str) -> str:
    return text.replace("\\", "\\e").replace("-", "\\-")


def manpage() -> str:
    from argparse_manpage.manpage import Manpage

    from proxy.cli import build_parser, commands

    parser = build_parser()
    page = str(Manpage(parser, _data={"project_name": "sendwarden", "version": __version__,
                                      "manual_title": "sendwarden manual"}))
    lines = [".SH EXIT STATUS"]
    for p in commands(parser):
        epilog = p.epilog or ""
        statuses = epilog[epilog.index("exit status:") + len("exit status:"):].strip().splitlines()
        lines += [".TP", f"\\fB{_roff(p.prog)}\\fR"]
        lines += [_roff(s.strip()) + "\n.br" for s in statuses]
    return page.rstrip("\n") + "\n" + "\n".join(lines) + "\n"


def completion(shell: str) -> str:
    import shtab

    from proxy.cli import build_parser

    return str(shtab.complete(build_parser(), shell))


def cmd_completion(args: argparse.Namespace) -> int:
    print(completion(args.shell), end="")
    return 0


def cmd_manpage(args: argparse.Namespace) -> int:
    print(manpage(), end="")
    return 0


def register(sub: Any) -> None:
    s = sub.add_parser("completion", help="print a shell completion script (bash or zsh)",
                       description="Print a completion script. bash: save it as "
                                   "/usr/share/bash-completion/completions/sendwarden; zsh: as _sendwarden in a "
                                   "directory of $fpath.")
    s.add_argument("shell", choices=("bash", "zsh"), help="the shell to complete for")
    s.set_defaults(func=cmd_completion)

    s = sub.add_parser("manpage", help="print the manual page (roff), e.g. into /usr/share/man/man1/sendwarden.1")
    s.set_defaults(func=cmd_manpage)
