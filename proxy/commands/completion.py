"""`sendwarden completion bash|zsh` and `sendwarden manpage`: shell completion and the manual
page, generated from the argument parser itself so that neither drifts from the commands.

shtab writes the completion scripts and argparse-manpage the roff page: both read an
argparse parser as it is, which is what the command line is built from. The page gets one more
section, EXIT STATUS, from the statuses each command documents in its --help.
"""

from __future__ import annotations

import argparse
from typing import Any, Iterator

from proxy import __version__


def _roff(text: str) -> str:
    return text.replace("\\", "\\e").replace("-", "\\-")


def commands(p: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
    """Every parser of a command that runs (one without subcommands of its own)."""
    subs = [a for a in p._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        yield p
    for action in subs:
        seen: set[int] = set()
        for child in action.choices.values():
            if id(child) not in seen:  # aliases map to the same parser
                seen.add(id(child))
                yield from commands(child)


def manpage(parser: argparse.ArgumentParser) -> str:
    """The manual page of `parser` (the whole `sendwarden` command line, which cli.main hands
    every command as `args.parser`: commands sit below the CLI and do not import it)."""
    from argparse_manpage.manpage import Manpage

    page = str(Manpage(parser, _data={"project_name": "sendwarden", "version": __version__,
                                      "manual_title": "sendwarden manual"}))
    lines = [".SH EXIT STATUS"]
    for p in commands(parser):
        epilog = p.epilog or ""
        statuses = epilog[epilog.index("exit status:") + len("exit status:"):].strip().splitlines()
        lines += [".TP", f"\\fB{_roff(p.prog)}\\fR"]
        lines += [_roff(s.strip()) + "\n.br" for s in statuses]
    return page.rstrip("\n") + "\n" + "\n".join(lines) + "\n"


def completion(parser: argparse.ArgumentParser, shell: str) -> str:
    import shtab

    return str(shtab.complete(parser, shell))


def cmd_completion(args: argparse.Namespace) -> int:
    print(completion(args.parser, args.shell), end="")
    return 0


def cmd_manpage(args: argparse.Namespace) -> int:
    print(manpage(args.parser), end="")
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
