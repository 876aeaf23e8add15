"""`sendwarden scan`: judge messages offline, exactly as the relay would.

Inputs are message files, `-` (stdin), directories (every file in them, Maildirs included) and
mbox files (each message in them). One message prints as it always has and exits with its
verdict; several print one line each and a summary, and exit with the strongest verdict.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import mailbox
import sys
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any, Iterator

from proxy.audit import configure
from proxy.commands.common import EXIT_ERROR, CliError, add_config, exits, load
from proxy.config import Config
from proxy.dns import Resolver
from proxy.facts.gather import gather
from proxy.facts.sources import FactSources
from proxy.facts.reputation import Reputation
from proxy.message.mime import Message
from proxy.policy.engine import judge
from proxy.policy.loader import Policy
from proxy.policy.registry import Context
from proxy.policy.verdict import Action, Finding, Replies, Reply, Verdict
from proxy.store import StoreError, from_config
from proxy.transaction.recipients import domain_findings

EXIT_STATUS = {Action.RELAY: 0, Action.QUARANTINE: 2, Action.REJECT: 3, Action.TEMPFAIL: 4}


def wire(raw: bytes) -> bytes:
    # Files on disk usually have LF line endings; on the wire every line ends in CRLF.
    return raw if b"\r\n" in raw else raw.replace(b"\n", b"\r\n")


def read_input(path: str) -> bytes:
    try:
        raw = sys.stdin.buffer.read() if path == "-" else Path(path).read_bytes()
    except OSError as exc:
        raise CliError(f"{path}: {exc.strerror or exc}") from None
    return wire(raw)


def _is_mbox(path: Path) -> bool:
    with path.open("rb") as fh:
        return fh.read(5) == b"From "


def messages(name: str) -> Iterator[tuple[str, bytes | CliError]]:
    """(name, message bytes or the error reading it) for one input: a file, `-`, an mbox
    file (one per message, named FILE#N), a directory (its files, in name order; a Maildir's
    new/ and cur/)."""
    if name == "-":
        yield name, read_input(name)
        return
    path = Path(name)
    try:
        if path.is_dir():
            parts = [path / "new", path / "cur"] if (path / "cur").is_dir() and (path / "new").is_dir() else [path]
            for part in parts:
                for child in sorted(part.rglob("*")):
                    if child.is_file() and not any(x.startswith(".") for x in child.relative_to(path).parts):
                        yield from messages(str(child))
            return
        if path.is_file() and _is_mbox(path):
            box = mailbox.mbox(path, create=False)
            try:
                for n, key in enumerate(box.keys(), 1):
                    yield f"{name}#{n}", wire(box.get_bytes(key))
            finally:
                box.close()
            return
        yield name, read_input(name)
    except CliError as exc:
        yield name, exc
    except OSError as exc:
        yield name, CliError(f"{name}: {exc.strerror or exc}")


def scan_reply(verdict: Verdict) -> Reply:
    action = verdict.effective
    if action == Action.REJECT:
        return verdict.reject_reply()
    if action == Action.TEMPFAIL:
        return verdict.tempfail_reply()
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


class _Stderr:
    """sys.stderr as it is at each write (the command also runs in-process, under pytest's
    capture, which replaces and closes sys.stderr)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()

    def isatty(self) -> bool:
        return sys.stderr.isatty()


async def online_sources(config: Config, policy: Policy) -> FactSources:
    """What the fact providers use when `scan --online` looks facts up as the relay does: the
    configured resolver, and the dead privacy links and complaint rates read from the store."""
    store = from_config(config)
    reputation = Reputation(announce=False)
    reputation.optout = policy.options["optout"]
    try:
        await store.open()
        await reputation.refresh(store, policy.options["complaint_rate"])  # type: ignore[arg-type]
    except StoreError as exc:
        print(f"sendwarden: store: {exc}; judged without dead links and complaint rates", file=sys.stderr)
    finally:
        await store.close()  # the snapshot is read; no provider asks the store itself here
    return FactSources(Resolver.from_config(config.file.dns), store, reputation=reputation)


async def _judge(config: Config, policy: Policy, message: Message, ctx: Context, online: bool) -> Verdict:
    """Judge as the relay would: the recipients' domains (blocked destinations always; routing
    only online), then, online, the message's facts (DNS, blocklists) under the policy timeout."""
    timeout = config.file.timeouts.policy
    lookups = await online_sources(config, policy) if online else None
    resolver = lookups.resolver if lookups is not None and config.file.recipients.verify_domains else None
    extra: list[Finding] = []
    for rcpt in ctx.rcpts:
        extra += await domain_findings(resolver, policy.options["recipient"], rcpt, timeout)  # type: ignore[arg-type]
    if lookups is not None:
        facts = await gather(lookups, policy, message, ctx, timeout)
        ctx = replace(ctx, facts=facts or None)
    return judge(policy, message, ctx, extra=extra)


def cmd_scan(args: argparse.Namespace) -> int:
    config, policy = load(args.config, args.policy)
    # Log lines (a check that failed, a pattern that ran out of time) go to stderr, so that
    # stdout is the result alone (`--json` is parsed by scripts).
    configure(config.file.audit.level, "auto", stream=_Stderr())
    stream = policy.resolve_stream(listener=args.listener or "", user=args.user, sender=args.mail_from or "")

    def judge_one(raw: bytes) -> Verdict:
        ctx = Context(
            stream=stream.name,
            marketing=stream.marketing,
            mail_from=args.mail_from or "",
            rcpts=tuple(args.rcpt or ()),
            auth_user=args.user,
            now=time.time(),
        )
        return asyncio.run(_judge(config, policy, Message.from_bytes(raw), ctx, args.online))

    if len(args.files) == 1 and (args.files[0] == "-" or not Path(args.files[0]).is_dir()):
        found = list(messages(args.files[0]))
        if len(found) == 1:  # one message: the output and exit status it always had
            _, raw = found[0]
            if isinstance(raw, CliError):
                raise raw
            verdict = judge_one(raw)
            show(scan_result(verdict), args.json)
            return EXIT_STATUS[verdict.effective]
    counts: Counter[str] = Counter()
    strongest = Action.RELAY
    for name in args.files:
        for label, raw in messages(name):
            if isinstance(raw, CliError):
                print(f"sendwarden: {raw}", file=sys.stderr)
                counts["error"] += 1
                continue
            verdict = judge_one(raw)
            strongest = max(strongest, verdict.effective)
            counts[str(verdict.effective)] += 1
            show(scan_result(verdict), args.json, label)
    total = sum(counts.values())
    summary = (f"{total} message(s): {counts['relay']} relay, {counts['quarantine']} quarantine, "
               f"{counts['reject']} reject, {counts['tempfail']} tempfail, {counts['error']} unreadable")
    print(summary, file=sys.stderr if args.json else sys.stdout)
    return EXIT_ERROR if counts["error"] or not total else EXIT_STATUS[strongest]


def show(result: dict[str, Any], as_json: bool, label: str = "") -> None:
    if as_json:
        print(json.dumps({"file": label, **result} if label else result))
        return
    smtp = result["smtp"]
    print(f"{label + ': ' if label else ''}{result['action']} (stream {result['stream']}): "
          f"{smtp['code']} {smtp['enhanced']} {smtp['text']}")
    for f in result["findings"]:
        print(f"  {f['action']:<11} {f['rule']:<36} {f['detail']}")


def register(sub: Any) -> None:
    s = sub.add_parser("scan", help="judge messages offline, as the relay would",
                       description="Judge messages offline, exactly as the relay would (no DNS lookups: DKIM "
                                   "signatures are not verified). Several inputs print one line per message and a "
                                   "summary line.")
    s.add_argument("files", nargs="+", metavar="FILE|DIR|-",
                   help="a message file, an mbox file, a directory or Maildir (every message in it), or - for stdin")
    add_config(s)
    s.add_argument("--policy", metavar="FILE", help="policy file (default: the configuration's)")
    s.add_argument("--mail-from", metavar="ADDR", help="the envelope sender to judge with (selects the stream)")
    s.add_argument("--rcpt", metavar="ADDR", action="append", help="an envelope recipient (repeatable)")
    s.add_argument("--user", metavar="NAME", help="as if authenticated as NAME")
    s.add_argument("--listener", metavar="NAME", help="as if received on listener NAME")
    s.add_argument("--online", action="store_true",
                   help="look facts up as the relay does: recipient domains, URI blocklists and DKIM keys through "
                        "the configured resolver; dead privacy links and complaint rates from the store "
                        "(default: offline, those rules stay silent)")
    s.add_argument("--json", action="store_true",
                   help="the verdict as JSON (several messages: one object per line, each with its \"file\"; the summary on stderr)")
    exits(s, {0: "relay (several messages: every one would be relayed)", 1: "an error; several messages: one could not be read",
              2: "quarantine", 3: "reject", 4: "tempfail (several messages: the strongest verdict)"})
    s.set_defaults(func=cmd_scan)
