"""The `sendwarden` command.

    sendwarden serve [--config FILE] [--listen HOST:PORT] [--upstream URL] [--monitor]
    sendwarden scan [--config FILE] [--policy FILE] [--mail-from ADDR] [--rcpt ADDR ...] [--json] FILE.eml|-
    sendwarden policy check FILE
    sendwarden passwd USER

Errors in input or configuration end in one line on stderr and exit status 1, never a
traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import sys
import time
from typing import Any, Sequence

from proxy import __version__
from proxy.config import Config, ConfigError, load_config, parse_hostport
from proxy.message import Message
from proxy.policy.engine import judge
from proxy.policy.loader import Policy, describe, load_policy
from proxy.policy.registry import Context
from proxy.policy.verdict import Action, Replies, Reply, Verdict

EXIT_RELAY, EXIT_ERROR, EXIT_QUARANTINE, EXIT_REJECT = 0, 1, 2, 3


class CliError(Exception):
    """An error for people: printed as one line, exit status 1."""


def _load(config_path: str | None, policy_path: str | None = None, monitor: bool = False) -> tuple[Config, Policy]:
    config = load_config(config_path)
    policy = load_policy(policy_path or config.policy_path)
    if monitor:
        policy = policy.with_monitor(True)
    return config, policy


# -- serve ----------------------------------------------------------------------------------------

def cmd_serve(args: argparse.Namespace) -> int:
    from proxy.audit import configure
    from proxy.service import Service

    config, policy = _load(args.config, monitor=args.monitor)
    changes: dict[str, Any] = {}
    if args.listen:
        try:
            parse_hostport(args.listen)
        except ValueError as exc:
            raise CliError(f"--listen: {exc}") from None
        first = config.file.listeners[0].model_dump()
        first["address"] = args.listen
        changes["listeners"] = [first, *[x.model_dump() for x in config.file.listeners[1:]]]
    if args.upstream:
        up = config.file.upstream.model_dump()
        up["url"] = args.upstream
        changes["upstream"] = up
    if changes:
        config = config.replace(**changes)
    configure(config.file.audit.level, config.file.audit.format)
    service = Service(config, policy)
    asyncio.run(service.run())
    return 0


# -- scan -----------------------------------------------------------------------------------------

def _read_input(path: str) -> bytes:
    try:
        raw = sys.stdin.buffer.read() if path == "-" else open(path, "rb").read()
    except OSError as exc:
        raise CliError(f"{path}: {exc.strerror or exc}") from None
    # Files on disk usually have LF line endings; on the wire every line ends in CRLF.
    if b"\r\n" not in raw:
        raw = raw.replace(b"\n", b"\r\n")
    return raw


def scan_reply(verdict: Verdict) -> Reply:
    action = verdict.effective
    if action == Action.REJECT:
        return verdict.reject_reply()
    if action == Action.QUARANTINE:
        return Replies.quarantined("(scan)")
    return Reply(250, "2.0.0", "Ok: would be relayed")


def scan_result(verdict: Verdict) -> dict[str, Any]:
    """The `scan --json` document; its shape is a public interface."""
    return {
        "action": str(verdict.effective),
        "stream": verdict.stream,
        "smtp": scan_reply(verdict).as_dict(),
        "findings": [{"rule": j.rule, "action": str(j.action), "detail": j.finding.detail} for j in verdict.judged],
    }


def cmd_scan(args: argparse.Namespace) -> int:
    _, policy = _load(args.config, args.policy)
    raw = _read_input(args.file)
    stream = policy.resolve_stream(listener=args.listener or "", user=args.user, sender=args.mail_from or "")
    ctx = Context(
        stream=stream.name,
        marketing=stream.marketing,
        mail_from=args.mail_from or "",
        rcpts=tuple(args.rcpt or ()),
        client_ip="",
        auth_user=args.user,
        now=time.time(),
    )
    verdict = judge(policy, Message.from_bytes(raw), ctx)
    result = scan_result(verdict)
    if args.json:
        print(json.dumps(result))
    else:
        smtp = result["smtp"]
        print(f"{result['action']} (stream {result['stream']}): {smtp['code']} {smtp['enhanced']} {smtp['text']}")
        for f in result["findings"]:
            print(f"  {f['action']:<11} {f['rule']:<36} {f['detail']}")
    return {Action.RELAY: EXIT_RELAY, Action.QUARANTINE: EXIT_QUARANTINE, Action.REJECT: EXIT_REJECT}[verdict.effective]


# -- policy, passwd -------------------------------------------------------------------------------

def cmd_policy_check(args: argparse.Namespace) -> int:
    policy = load_policy(args.file)
    print(describe(policy))
    print(f"\n{args.file}: ok")
    return 0


def cmd_passwd(args: argparse.Namespace) -> int:
    from proxy.auth import hash_password

    if sys.stdin.isatty():
        pw = getpass.getpass(f"password for {args.user}: ")
        if pw != getpass.getpass("again: "):
            raise CliError("the passwords differ")
    else:
        pw = sys.stdin.readline().rstrip("\n")
    if len(pw) < 12:
        raise CliError("use a password of at least 12 characters")
    print(f'{json.dumps(args.user)} = "{hash_password(pw)}"')
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="sendwarden", description="An SMTP relay that enforces an Acceptable Use Policy inline.")
    p.add_argument("--version", action="version", version=f"sendwarden {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    s = sub.add_parser("serve", help="run the relay")
    s.add_argument("--config", help="service configuration (TOML); default: the embedded development config")
    s.add_argument("--listen", metavar="HOST:PORT", help="address of the (first) listener")
    s.add_argument("--upstream", metavar="URL", help="smtp://HOST:PORT or maildir:PATH")
    s.add_argument("--monitor", action="store_true", help="judge and log every message, but relay them all")
    s.set_defaults(func=cmd_serve)

    s = sub.add_parser("scan", help="judge a message offline, as the relay would")
    s.add_argument("file", metavar="FILE.eml|-")
    s.add_argument("--config")
    s.add_argument("--policy", help="policy file (default: the config's)")
    s.add_argument("--mail-from", metavar="ADDR")
    s.add_argument("--rcpt", metavar="ADDR", action="append")
    s.add_argument("--user", metavar="NAME", help="as if authenticated as NAME")
    s.add_argument("--listener", metavar="NAME", help="as if received on listener NAME")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_scan)

    s = sub.add_parser("policy", help="policy files")
    psub = s.add_subparsers(dest="policy_command", required=True, metavar="ACTION")
    c = psub.add_parser("check", help="validate a policy file and show it resolved")
    c.add_argument("file")
    c.set_defaults(func=cmd_policy_check)

    s = sub.add_parser("passwd", help="print a credentials line (argon2 hash) for USER")
    s.add_argument("user")
    s.set_defaults(func=cmd_passwd)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except (CliError, ConfigError) as exc:
        print(f"sendwarden: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
