"""`sendwarden scan`: judge messages exactly as the relay would, without sending them.

The same transaction code as the relay (proxy/transaction/): the envelope, List-Unsubscribe
insertion, the RCPT-time recipient screening, the facts, the engine and the one dispatch from
verdict to outcome. Offline (the default) it looks nothing up: no DNS, no DKIM verification, no
recipient store, and it says which lookups it skipped; `--online` runs them against the
configured resolver and store.

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
from pathlib import Path
from typing import Any, Iterator

from proxy.audit import configure
from proxy.commands.common import EXIT_ERROR, CliError, add_config, exits, load
from proxy.config import Config
from proxy.dns import Resolver
from proxy.facts.gather import wanted
from proxy.facts.reputation import Reputation
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
        store = store_from_config(config)
        try:
            await store.open()
        except StoreError as exc:
            raise CliError(f"{config.source}: store: {exc}") from None
        # Dead privacy links and complaint rates, as the relay reads them: a snapshot of the store.
        reputation = Reputation(announce=False)
        reputation.optout = tx.policy.options["optout"]
        try:
            await reputation.refresh(store, tx.policy.options["complaint_rate"])  # type: ignore[arg-type]
        except StoreError as exc:
            print(f"sendwarden: store: {exc}; judged without dead links and complaint rates", file=sys.stderr)
        facts = FactSources(Resolver.from_config(config.file.dns), store, reputation=reputation)
    else:
        skipped += [p.name for p in wanted(tx.policy, tx.stream)]
        if tx.ensure_plan().needed:
            skipped.append(RCPT_STATE)
    deps = JudgingDeps(facts, keys, Endpoints(u.base_url, u.mailto_local, u.mailto_domain), u.token_days,
                       config.file.timeouts.policy, verify_domains=config.file.recipients.verify_domains)
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
    if refused and not tx.recipients:  # every recipient refused at RCPT: the relay takes no message
        return {"action": "reject", "stream": tx.stream, "smtp": refused[0]["smtp"], "findings": [],
                "rcpts_refused": refused, "skipped": skipped}
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
    stream = policy.resolve_stream(listener=args.listener or "", user=args.user, sender=args.mail_from or "")

    def judge_one(raw: bytes) -> dict[str, Any]:
        mail_from = args.mail_from or ""
        tx = Transaction(new_queue_id(), mail_from, policy, stream.name, time.monotonic(), listener=args.listener or "",
                         auth_user=args.user)
        tx.recipients = [Recipient(r) for r in args.rcpt or ()]
        return asyncio.run(judge_as_relay(config, tx, raw, args.online))

    if len(args.files) == 1 and (args.files[0] == "-" or not Path(args.files[0]).is_dir()):
        found = list(messages(args.files[0]))
        if len(found) == 1:  # one message: the output and exit status it always had
            _, raw = found[0]
            if isinstance(raw, CliError):
                raise raw
            result = judge_one(raw)
            show(result, args.json)
            return EXIT_STATUS[Action.parse(result["action"])]
    counts: Counter[str] = Counter()
    strongest = Action.RELAY
    for name in args.files:
        for label, raw in messages(name):
            if isinstance(raw, CliError):
                print(f"sendwarden: {raw}", file=sys.stderr)
                counts["error"] += 1
                continue
            result = judge_one(raw)
            strongest = max(strongest, Action.parse(result["action"]))
            counts[result["action"]] += 1
            show(result, args.json, label)
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
    for r in result["rcpts_refused"]:
        print(f"  refused at RCPT {r['address']}: {r['smtp']['code']} {r['smtp']['enhanced']} {r['smtp']['text']}")
    for f in result["findings"]:
        print(f"  {f['action']:<11} {f['rule']:<36} {f['detail']}")
    if result["skipped"]:
        print(f"  skipped lookups (--online runs them): {', '.join(result['skipped'])}")


def register(sub: Any) -> None:
    s = sub.add_parser("scan", help="judge messages as the relay would, without sending them",
                       description="Judge messages exactly as the relay would, without sending them. Offline by "
                                   "default (no DNS, no DKIM verification, no store: the skipped lookups are named); "
                                   "--online runs them. Several inputs print one line per message and a summary line.")
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
