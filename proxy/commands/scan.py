"""`sendwarden scan`: judge a message exactly as the relay would, without sending it.

The same transaction code as the relay (proxy/transaction/): the envelope, List-Unsubscribe
insertion, the RCPT-time recipient screening, the facts, the engine and the one dispatch from
verdict to outcome. Offline (the default) it looks nothing up: no DNS, no DKIM verification, no
recipient store, and it says which lookups it skipped; `--online` runs them against the
configured resolver and store.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

from proxy.audit import configure
from proxy.commands.common import CliError, load
from proxy.config import Config
from proxy.dns import Resolver
from proxy.facts.gather import wanted
from proxy.facts.sources import FactSources
from proxy.policy.verdict import Action, Verdict
from proxy.replies import Replies, Reply
from proxy.store import StoreError
from proxy.store import from_config as store_from_config
from proxy.transaction import outcome, recipients
from proxy.transaction.deps import JudgingDeps
from proxy.transaction.envelope import Recipient, Transaction, new_queue_id
from proxy.transaction.evaluate import evaluate
from proxy.unsubscribe.headers import Endpoints
from proxy.unsubscribe.token import TokenKeys

EXIT_STATUS = {Action.RELAY: 0, Action.QUARANTINE: 2, Action.REJECT: 3, Action.TEMPFAIL: 4}
RCPT_STATE = "recipient_state"  # the RCPT-time store lookup, named in `skipped`


def read_input(path: str) -> bytes:
    try:
        raw = sys.stdin.buffer.read() if path == "-" else Path(path).read_bytes()
    except OSError as exc:
        raise CliError(f"{path}: {exc.strerror or exc}") from None
    # Files on disk usually have LF line endings; on the wire every line ends in CRLF.
    if b"\r\n" not in raw:
        raw = raw.replace(b"\n", b"\r\n")
    return raw


async def _would_hold() -> Reply:
    return Replies.quarantined("(scan)")


async def _would_relay() -> Reply:
    return Replies.would_relay()


def _as_is(reply: Reply) -> Reply:
    return reply


async def scan_reply(verdict: Verdict) -> Reply:
    """What the relay would answer, through the relay's own dispatch."""
    return await outcome.act(verdict, refuse=_as_is, hold=_would_hold, relay=_would_relay)


def scan_result(verdict: Verdict, reply: Reply, skipped: list[str], refused: list[dict[str, Any]]) -> dict[str, Any]:
    """The `scan --json` document; its shape is a public interface."""
    return {
        "action": str(verdict.effective),
        "stream": verdict.stream,
        "smtp": reply.as_dict(),
        "findings": [{"rule": j.rule, "action": str(j.action), "detail": j.finding.detail} for j in verdict.judged],
        "rcpts_refused": refused,
        "skipped": skipped,
    }


def _unsubscribe_keys(config: Config, skipped: list[str]) -> TokenKeys | None:
    """The relay's List-Unsubscribe keys, when it has any (as the service loads them)."""
    u = config.file.unsubscribe
    if not (u.base_url or u.mailto_domain or u.listen):
        return None
    try:
        return TokenKeys.load(config.unsubscribe_key_path)
    except (OSError, ValueError) as exc:
        skipped.append(f"list_unsubscribe (unsubscribe.key_file: {exc})")
        return None


async def judge_as_relay(config: Config, tx: Transaction, raw: bytes, online: bool) -> dict[str, Any]:
    skipped: list[str] = []
    keys = _unsubscribe_keys(config, skipped)
    u = config.file.unsubscribe
    facts = None
    if online:
        facts = FactSources(Resolver.from_config(config.file.dns), store_from_config(config))
        try:
            await facts.store.open()
        except StoreError as exc:
            raise CliError(f"{config.source}: store: {exc}") from None
    else:
        skipped += [p.name for p in wanted(tx.policy, tx.stream)]
        if tx.ensure_plan().needed:
            skipped.append(RCPT_STATE)
    deps = JudgingDeps(facts, keys, Endpoints(u.base_url, u.mailto_local, u.mailto_domain), u.token_days,
                       config.file.timeouts.policy)
    refused: list[dict[str, Any]] = []
    try:
        for address in [r.address for r in tx.recipients]:
            screening = await recipients.screen(deps, tx.policy, tx.ensure_plan(), tx.stream, address)
            if screening.reply is not None:
                refused.append({"address": address, "smtp": screening.reply.as_dict()})
                tx.recipients = [r for r in tx.recipients if r.address != address]
            else:
                tx.rcpt_findings.extend(screening.findings)
        judgement = await evaluate(deps, tx, raw, {})
    finally:
        if facts is not None:
            await facts.store.close()
    verdict = judgement.verdict
    return scan_result(verdict, await scan_reply(verdict), skipped, refused)


class _Stderr:
    """sys.stderr as it is at each write (the command also runs in-process, under pytest's
    capture, which replaces and closes sys.stderr)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()

    def isatty(self) -> bool:
        return sys.stderr.isatty()


def cmd_scan(args: argparse.Namespace) -> int:
    config, policy = load(args.config, args.policy)
    # Log lines (a check that failed, a pattern that ran out of time) go to stderr, so that
    # stdout is the result alone (`--json` is parsed by scripts).
    configure(config.file.audit.level, "auto", stream=_Stderr())
    raw = read_input(args.file)
    mail_from = args.mail_from or ""
    stream = policy.resolve_stream(listener=args.listener or "", user=args.user, sender=mail_from)
    tx = Transaction(new_queue_id(), mail_from, policy, stream.name, time.monotonic(), listener=args.listener or "",
                     auth_user=args.user)
    tx.recipients = [Recipient(r) for r in args.rcpt or ()]
    result = asyncio.run(judge_as_relay(config, tx, raw, args.online))
    if args.json:
        print(json.dumps(result))
    else:
        smtp = result["smtp"]
        print(f"{result['action']} (stream {result['stream']}): {smtp['code']} {smtp['enhanced']} {smtp['text']}")
        for r in result["rcpts_refused"]:
            print(f"  refused at RCPT {r['address']}: {r['smtp']['code']} {r['smtp']['enhanced']} {r['smtp']['text']}")
        for f in result["findings"]:
            print(f"  {f['action']:<11} {f['rule']:<36} {f['detail']}")
        if result["skipped"]:
            print(f"  skipped lookups (--online runs them): {', '.join(result['skipped'])}")
    return EXIT_STATUS[Action.parse(result["action"])]


def register(sub: Any) -> None:
    s = sub.add_parser("scan", help="judge a message as the relay would, without sending it")
    s.add_argument("file", metavar="FILE.eml|-")
    s.add_argument("--config")
    s.add_argument("--policy", help="policy file (default: the config's)")
    s.add_argument("--mail-from", metavar="ADDR")
    s.add_argument("--rcpt", metavar="ADDR", action="append")
    s.add_argument("--user", metavar="NAME", help="as if authenticated as NAME")
    s.add_argument("--listener", metavar="NAME", help="as if received on listener NAME")
    s.add_argument("--online", action="store_true",
                   help="run the lookups the relay runs (DNS, DKIM verification, recipient store)")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_scan)
