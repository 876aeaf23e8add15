"""`sendwarden scan`: judge a message offline, exactly as the relay would."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from proxy.audit import configure
from proxy.commands.common import CliError, load
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


def read_input(path: str) -> bytes:
    try:
        raw = sys.stdin.buffer.read() if path == "-" else Path(path).read_bytes()
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
    raw = read_input(args.file)
    stream = policy.resolve_stream(listener=args.listener or "", user=args.user, sender=args.mail_from or "")
    ctx = Context(
        stream=stream.name,
        marketing=stream.marketing,
        mail_from=args.mail_from or "",
        rcpts=tuple(args.rcpt or ()),
        auth_user=args.user,
        now=time.time(),
    )
    verdict = asyncio.run(_judge(config, policy, Message.from_bytes(raw), ctx, args.online))
    result = scan_result(verdict)
    if args.json:
        print(json.dumps(result))
    else:
        smtp = result["smtp"]
        print(f"{result['action']} (stream {result['stream']}): {smtp['code']} {smtp['enhanced']} {smtp['text']}")
        for f in result["findings"]:
            print(f"  {f['action']:<11} {f['rule']:<36} {f['detail']}")
    return EXIT_STATUS[verdict.effective]


def register(sub: Any) -> None:
    s = sub.add_parser("scan", help="judge a message offline, as the relay would")
    s.add_argument("file", metavar="FILE.eml|-")
    s.add_argument("--config")
    s.add_argument("--policy", help="policy file (default: the config's)")
    s.add_argument("--mail-from", metavar="ADDR")
    s.add_argument("--rcpt", metavar="ADDR", action="append")
    s.add_argument("--user", metavar="NAME", help="as if authenticated as NAME")
    s.add_argument("--listener", metavar="NAME", help="as if received on listener NAME")
    s.add_argument("--online", action="store_true",
                   help="look facts up as the relay does: recipient domains, URI blocklists and DKIM keys through "
                        "the configured resolver; dead privacy links and complaint rates from the store "
                        "(default: offline, those rules stay silent)")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_scan)
