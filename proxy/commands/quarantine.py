"""`sendwarden quarantine list|show|release|delete|purge`: people review held messages.

Exit status: 0 when every message ended as asked; 65 for an ID that is malformed, ambiguous or
not in the quarantine; 12 when a filter matched nothing; 13 when an action did not happen (the
upstream refused a release, another reviewer is releasing it, a recheck still finds problems).
IDs may be given by a unique prefix, or as `-` to read them from stdin (as `postsuper -d -`);
release and delete also take filters instead of IDs. The operations live in
proxy/transaction/release.py; this module only reads options and prints.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import getpass
import json
import os
import re
import sqlite3
import sys
import time
from typing import Any, Callable

from proxy.commands.common import (
    EX_DATAERR,
    EX_USAGE,
    EXIT_NONE,
    EXIT_NOT_DONE,
    CliError,
    add_config,
    add_json,
    config_for,
    exits,
    rfc3339,
)
from proxy.config import Config, parse_duration
from proxy.quarantine.files import STATUSES, Quarantine, QuarantineError, for_config, valid_id
from proxy.transaction.release import Filters, ReleaseOutcome, Reviewer, find, rules_of

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff]")
# Characters that reorder or hide text on the reviewer's screen: bidi embeddings, overrides and
# isolates (`Invoice <U+202E>gpj.exe` reads as "Invoice exe.jpg"), marks, line and paragraph
# separators, zero-width and invisible characters. Shown by their code point, so the reviewer
# sees that they are there. (ZWJ/ZWNJ stay: emoji and several scripts need them.)
_HIDDEN = re.compile("[\u00ad\u061c\u180e\u200b\u200e\u200f\u2028-\u202e\u2060-\u2064\u2066-\u206f\ufeff\ufff9-\ufffb]")


def safe(text: str) -> str:
    """Text from a message, made harmless for a terminal (no escape sequences, no surrogates)
    and for a reader (no bidi tricks or invisible characters: they show as <U+XXXX>)."""
    return _HIDDEN.sub(lambda m: f"<U+{ord(m.group(0)):04X}>", _CONTROL.sub("?", text))


def actor(args: argparse.Namespace) -> tuple[str, str]:
    """(who acts, the OS user): --as NAME, else the login behind sudo, else the OS user."""
    os_user = getpass.getuser()
    if os.environ.get("SUDO_USER") and os_user == "root":
        os_user = f"{os.environ['SUDO_USER']} (sudo)"
    return (args.as_name or os_user), os_user


def open_quarantine(config: Config) -> Quarantine:
    directory = config.quarantine_dir
    if not config.quarantine_url and not (directory / "index.sqlite3").exists():
        raise CliError(f"no quarantine at {directory} (configuration: {config.source}): nothing has been held yet, "
                       "or the installation's configuration is another one (--config FILE or $SENDWARDEN_CONFIG)",
                       EX_DATAERR)
    q = for_config(config)
    try:
        q.open()
    except QuarantineError as exc:
        raise CliError(str(exc)) from None
    return q


def setup(args: argparse.Namespace) -> tuple[Config, Quarantine, Reviewer]:
    from proxy.audit import configure

    config = config_for(args.config)
    configure(config.file.audit.level, "auto", stream=sys.stderr)
    sys.stdout.reconfigure(errors="replace")  # type: ignore[union-attr]
    q = open_quarantine(config)
    who, os_user = actor(args)
    return config, q, Reviewer(q, config, who, os_user)


_HEX = re.compile(r"^[0-9a-f]{1,24}$")
MAX_SHOWN = 10


def read_ids(given: list[str]) -> list[str]:
    """The IDs as given, or read from stdin (whitespace-separated) for a lone `-`; each must
    look like an id or a prefix of one (refused before the quarantine is opened)."""
    if given == ["-"]:
        given = sys.stdin.read().split()
    elif "-" in given:
        raise CliError("give - alone to read IDs from stdin", EX_USAGE)
    for text in given:
        if not _HEX.match(text):
            raise CliError(f"not a quarantine id: {safe(text)!r} (an id is 24 hex digits, as `quarantine list` shows;"
                           " a unique prefix is enough)", EX_DATAERR)
    return given


def resolve_ids(q: Quarantine, given: list[str]) -> list[str]:
    """Full IDs for IDs and unique prefixes of them (as read_ids checked them); a prefix that
    matches none or several is an error that names the matches, before anything is done."""
    out = []
    for prefix in given:
        if valid_id(prefix):
            out.append(prefix)
            continue
        rows, total = q.search("id LIKE ?", [prefix + "%"], MAX_SHOWN, 0)
        if total == 0:
            raise CliError(f"{prefix}: no message in the quarantine has an id starting so", EX_DATAERR)
        if total > 1:
            shown = ", ".join(r["id"] for r in rows) + (f" and {total - len(rows)} more" if total > len(rows) else "")
            raise CliError(f"{prefix}: ambiguous, {total} messages have ids starting so: {shown}", EX_DATAERR)
        out.append(rows[0]["id"])
    return list(dict.fromkeys(out))


def filters_of(args: argparse.Namespace, status: str | None) -> Filters:
    since = time.time() - _duration(args.since, "--since") if args.since else None
    return Filters(status, since, args.rule or "", args.sender or "", args.stream or "")


def targets(args: argparse.Namespace, q: Quarantine, verb: str) -> list[str]:
    """The messages a release or delete acts on: IDs (or prefixes, or - for stdin), or every
    held message matching the filters, counted and listed before anything is done."""
    filtered = any((args.rule, args.sender, args.since, args.stream))
    if args.ids and filtered:
        raise CliError("give IDs or filters (--rule, --sender, --since, --stream), not both", EX_USAGE)
    if args.ids:
        return resolve_ids(q, args.ids)
    if not filtered:
        raise CliError("give IDs (or - to read them from stdin), or filters: --rule, --sender, --since, --stream", EX_USAGE)
    page = find(q, filters_of(args, "held"), limit=100_000)
    now = time.time()
    print(f"{page.total} held message(s) match; {'would ' + verb if args.dry_run else verb + ':'}", file=sys.stderr)
    for row in page.rows:
        print(f"  {row['id']}  {age(now - row['created']):>4}  {clip(row['mail_from'] or '<>', 28):<28}  "
              f"{clip(row['subject'], 34):<34}  {', '.join(rules_of(row))}", file=sys.stderr)
    return [row["id"] for row in page.rows]


def age(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit}"
    return f"{int(max(seconds, 0))}s"


def stamp(ts: float | None) -> str:
    return "-" if ts is None else rfc3339(ts)


def clip(text: str, width: int) -> str:
    text = safe(" ".join(text.split()))
    return text if len(text) <= width else text[: width - 1] + "~"


def summary(row: sqlite3.Row, now: float) -> dict[str, Any]:
    """The `list --json` document of one message; its shape is a public interface."""
    return {
        "id": row["id"], "created": stamp(row["created"]), "age_s": round(now - row["created"]),
        "status": row["status"], "stream": row["stream"], "sender": row["mail_from"], "subject": row["subject"],
        "rcpt_count": row["rcpt_count"], "rules": rules_of(row), "size": row["size"],
        "released_by": row["released_by"], "released_at": stamp(row["released_at"]) if row["released_at"] else None,
        "deleted_by": row["deleted_by"],
    }


# -- list -----------------------------------------------------------------------------------------

def cmd_list(args: argparse.Namespace) -> int:
    _, q, _ = setup(args)
    since = time.time() - _duration(args.since, "--since") if args.since else None
    status = None if args.status == "all" else args.status
    page = find(q, Filters(status, since, args.rule or "", args.sender or "", args.stream or ""), args.limit, args.page)
    now = time.time()
    if args.json:
        for row in page.rows:
            print(json.dumps(summary(row, now)))
        return 0
    if not page.rows:
        print(f"no {args.status if status else ''} messages match".replace("  ", " "))
        return 0
    print(f"{'ID':<24}  {'AGE':>4}  {'SENDER':<28}  {'SUBJECT':<34}  {'RCPT':>4}  {'STATUS':<9}  RULES")
    for row in page.rows:
        print(f"{row['id']:<24}  {age(now - row['created']):>4}  {clip(row['mail_from'] or '<>', 28):<28}  "
              f"{clip(row['subject'], 34):<34}  {row['rcpt_count']:>4}  {row['status']:<9}  {', '.join(rules_of(row))}")
    more = f"; next: --page {page.page + 1}" if page.page < page.pages else ""
    print(f"-- page {page.page} of {page.pages}, {page.total} message(s){more}")
    return 0


# -- show -----------------------------------------------------------------------------------------

def cmd_show(args: argparse.Namespace) -> int:
    from proxy.quarantine.render import Masker, readable

    [given] = read_ids([args.id])
    _, q, reviewer = setup(args)
    [args.id] = resolve_ids(q, [given])
    row = _row(q, args.id)
    if args.raw:
        if sys.stdout.isatty() and not args.force:
            raise CliError("--raw writes the message's exact bytes, escape sequences included: not to a terminal; "
                           "redirect it to a file or a pager (or add --force)")
        raw = _raw(q, args.id)
        reviewer.revealed(args.id, "raw bytes")
        sys.stdout.flush()
        sys.stdout.buffer.write(raw)
        return 0
    rcpts = json.loads(row["rcpts"])
    masker = Masker([r["address"] for r in rcpts], enabled=not args.reveal)
    if args.reveal:
        reviewer.revealed(args.id, "recipient addresses")
    view = readable(_raw(q, args.id), masker, prefer="text" if args.text else "html") if row["status"] != "deleted" else None
    if args.json:
        print(json.dumps(_show_doc(row, rcpts, masker, view, q.history(args.id))))
        return 0
    out = print
    out(f"Message {row['id']}  [{row['status']}]  held {stamp(row['created'])} ({age(time.time() - row['created'])} ago)")
    out(f"  stream {row['stream']}; client {row['client']} (helo {safe(row['helo'] or '?')}, {row['proto'] or '?'});"
        f" auth {row['auth_user'] or '-'}; queue id {row['queue_id']}; {row['size']} bytes")
    out("\nEnvelope")
    out(f"  MAIL FROM:<{safe(row['mail_from'])}>{_params(json.loads(row['mail_dsn']))}{' SMTPUTF8' if row['smtputf8'] else ''}")
    for r in rcpts:
        out(f"  RCPT TO:<{safe(masker(r['address']))}>{_params(r.get('dsn') or {})}")
    if not rcpts:
        out(f"  ({row['rcpt_count']} recipient(s), addresses removed)")
    out("\nFindings")
    from proxy.policy.rules import RULES

    for f in json.loads(row["findings"]):
        out(f"  {f['action']:<11} {f['rule']}  ({RULES.get(f['rule'], 'rule not in this catalogue')})")
        out(f"              {safe(masker(f['detail']))}")
    if view is not None:
        out("\nHeaders")
        for name, value in view.headers:
            out(f"  {safe(name)}: {safe(value)}")
        what = {"html": "HTML, as text", "text": "text/plain", "none": "no text body"}[view.body_kind]
        alt = "; a text/plain alternative exists: --text shows it" if view.has_text_alternative else ""
        out(f"\nBody ({what}{alt})")
        for line in view.body.splitlines():
            out(f"  | {safe(line)}")
        out("\nLinks" + ("" if view.links else ": none"))
        for n, (text, href) in enumerate(view.links, 1):
            out(f"  [{n}] {safe(href)}" + (f"  \"{clip(text, 60)}\"" if text else ""))
        out("\nAttachments" + ("" if view.attachments else ": none"))
        for name, ctype, size in view.attachments:
            out(f"  {safe(name) or '(no name)'}  {ctype}  {size} bytes")
    history = q.history(args.id)
    if history:
        out("\nHistory")
        for e in history:
            out(f"  {stamp(e['at'])}  {e['event']:<14} {safe(e['actor'])}" + (f": {safe(e['detail'])}" if e["detail"] else ""))
    return 0


def _show_doc(row: Any, rcpts: list[dict[str, Any]], masker: Any, view: Any, history: list[Any]) -> dict[str, Any]:
    """The `show --json` document: the `list --json` summary with what `show` prints."""
    doc = summary(row, time.time())
    doc.update({
        "client": row["client"], "helo": row["helo"], "auth_user": row["auth_user"], "queue_id": row["queue_id"],
        "recipients": [masker(r["address"]) for r in rcpts],
        "findings": [{"rule": f["rule"], "action": f["action"], "detail": masker(f["detail"])} for f in json.loads(row["findings"])],
        "history": [{"at": stamp(e["at"]), "event": e["event"], "actor": e["actor"], "detail": e["detail"]} for e in history],
    })
    if view is not None:
        doc.update({"headers": [[n, v] for n, v in view.headers], "body_kind": view.body_kind, "body": view.body,
                    "links": [{"text": t, "href": h} for t, h in view.links],
                    "attachments": [{"name": n, "type": c, "size": z} for n, c, z in view.attachments]})
    return doc


def _params(params: dict[str, str]) -> str:
    return "".join(f" {k}={safe(v)}" for k, v in params.items())


def _row(q: Quarantine, hold_id: str) -> sqlite3.Row:
    row = q.get(hold_id)
    if row is None:
        raise CliError(f"{hold_id}: no such message in the quarantine", EX_DATAERR)
    return row


def _raw(q: Quarantine, hold_id: str) -> bytes:
    try:
        return q.raw(hold_id)
    except QuarantineError as exc:
        raise CliError(str(exc)) from None


# -- release, delete, purge -----------------------------------------------------------------------

def report(outcomes: list[ReleaseOutcome], done_word: str) -> int:
    status = 0
    for o in outcomes:
        if o.ok:
            print(f"{o.hold_id}: {done_word if o.result in ('released', 'deleted') else o.result.replace('_', ' ')}: {safe(o.message)}")
            continue
        print(f"sendwarden: {o.hold_id}: {o.result.replace('_', ' ').upper()}: {safe(o.message)}", file=sys.stderr)
        for f in o.findings:
            print(f"  {f['action']:<11} {f['rule']:<36} {safe(f['detail'])}", file=sys.stderr)
        status = max(status, EX_DATAERR if o.result == "not_found" else EXIT_NOT_DONE)
    return status


def acting_on(args: argparse.Namespace, verb: str) -> tuple[Config, Reviewer, list[str]]:
    """The configuration, the reviewer and the messages a release or delete acts on; IDs are
    checked before the quarantine is opened."""
    args.ids = read_ids(args.ids)
    config, q, reviewer = setup(args)
    return config, reviewer, targets(args, q, verb)


def cmd_release(args: argparse.Namespace) -> int:
    from proxy.policy.loader import load_policy
    from proxy.outbound.upstream import upstream_for

    config, reviewer, ids = acting_on(args, "release")
    if args.dry_run or not ids:
        return 0 if args.dry_run else EXIT_NONE
    policy = load_policy(config.policy_path) if args.recheck else None

    async def run() -> list[ReleaseOutcome]:
        reviewer.upstream = upstream_for(config)
        try:
            return [await reviewer.release(i, args.reason, policy=policy, retry_stale=args.retry_stale) for i in ids]
        finally:
            await reviewer.upstream.close()
            await reviewer.notifier.close()

    return report(asyncio.run(run()), "released")


def cmd_delete(args: argparse.Namespace) -> int:
    _, reviewer, ids = acting_on(args, "delete")
    if args.dry_run or not ids:
        return 0 if args.dry_run else EXIT_NONE

    async def run() -> list[ReleaseOutcome]:
        try:
            return [await reviewer.delete(i, args.reason) for i in ids]
        finally:
            await reviewer.notifier.close()

    return report(asyncio.run(run()), "deleted")


def cmd_purge(args: argparse.Namespace) -> int:
    config, _, reviewer = setup(args)
    text = args.older_than or config.file.quarantine.retention
    older = _duration(text, "--older-than")
    rows, files = reviewer.purge(older, args.dry_run)
    verb = "would remove" if args.dry_run else "removed"
    for row in rows:
        print(f"{verb} {row['id']}  {row['status']:<9} held {stamp(row['created'])}")
    for name in files:
        print(f"{verb} stray file {name}")
    print(f"{verb} {len(rows)} message(s) held more than {text} ago" + (f" and {len(files)} stray file(s)" if files else ""))
    return 0


def _duration(text: str, option: str) -> float:
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise CliError(f"{option}: {exc}", EX_USAGE) from None


def _errors_for_people(func: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Store errors (unreadable index, locked database, missing file) as one line, no traceback."""

    @functools.wraps(func)
    def run(args: argparse.Namespace) -> int:
        try:
            return func(args)
        except (QuarantineError, sqlite3.Error) as exc:
            raise CliError(f"quarantine: {exc}") from None

    return run


def register(sub: Any) -> None:
    common = argparse.ArgumentParser(add_help=False)
    add_config(common)
    common.add_argument("--as", dest="as_name", metavar="NAME", help="record NAME as who acted (default: the OS user)")
    s = sub.add_parser("quarantine", help="review held messages: list, show, release, delete, purge")
    qsub = s.add_subparsers(dest="quarantine_command", required=True, metavar="ACTION")

    p = qsub.add_parser("list", parents=[common], help="held messages, newest first")
    add_filters(p)
    p.add_argument("--status", choices=[*STATUSES, "all"], default="held", help="messages in this state (default held)")
    p.add_argument("--limit", type=_positive, default=50, help="messages per page (default 50)")
    p.add_argument("--page", type=_positive, default=1, metavar="N", help="which page (default 1)")
    add_json(p, "one JSON object per message, one per line")
    p.set_defaults(func=_errors_for_people(cmd_list))

    p = qsub.add_parser("show", parents=[common], help="one message: envelope, findings, headers, body as text, links, attachments")
    p.add_argument("id", metavar="ID", help="the message's id, a unique prefix of it, or - to read it from stdin")
    add_json(p)
    exits(p, {EX_DATAERR: "the id is malformed, ambiguous or not in the quarantine"})
    p.add_argument("--reveal", action="store_true", help="show recipient addresses in clear (logged)")
    p.add_argument("--raw", action="store_true", help="print the exact stored bytes (logged, as it reveals addresses); "
                   "refused on a terminal unless --force")
    p.add_argument("--force", action="store_true", help="with --raw: write to a terminal all the same")
    p.add_argument("--text", action="store_true", help="show the text/plain part instead of the rendered HTML")
    p.set_defaults(func=_errors_for_people(cmd_show))

    p = qsub.add_parser("release", parents=[common], help="send held messages on to the upstream, exactly once")
    add_targets(p, "release")
    p.add_argument("--reason", default="", metavar="TEXT", help="why (kept in the message's history)")
    p.add_argument("--recheck", action="store_true", help="judge the message again with the current policy; release only if it now passes")
    p.add_argument("--retry-stale", action="store_true", help="send again a message whose earlier release never finished")
    p.set_defaults(func=_errors_for_people(cmd_release))

    p = qsub.add_parser("delete", parents=[common], help="delete held messages (their bytes and recipients)")
    add_targets(p, "delete")
    p.add_argument("--reason", default="", metavar="TEXT", help="why (kept in the message's history)")
    p.set_defaults(func=_errors_for_people(cmd_delete))

    p = qsub.add_parser("purge", parents=[common], help="remove every message held longer than the retention")
    p.add_argument("--older-than", metavar="AGE", help="default: [quarantine] retention of the config (30d)")
    p.add_argument("--dry-run", action="store_true", help="only list what would be removed")
    p.set_defaults(func=_errors_for_people(cmd_purge))


def add_filters(p: Any) -> None:
    p.add_argument("--since", metavar="AGE", help="held within AGE (30m, 12h, 2d, 1w)")
    p.add_argument("--rule", metavar="PREFIX", help="with a finding whose rule ID starts with PREFIX")
    p.add_argument("--sender", metavar="ADDR", help="envelope sender ADDR, or @DOMAIN")
    p.add_argument("--stream", metavar="NAME", help="judged on stream NAME")


def add_targets(p: Any, verb: str) -> None:
    """IDs, or filters over the held messages, for release and delete."""
    p.add_argument("ids", nargs="*", metavar="ID",
                   help=f"messages to {verb}: ids or unique prefixes of them, or - to read them from stdin")
    add_filters(p)
    p.add_argument("--dry-run", action="store_true", help="with filters: list what matches, do nothing")
    exits(p, {EX_DATAERR: "an id is malformed, ambiguous or not in the quarantine", EXIT_NONE: "the filters matched nothing",
              EXIT_NOT_DONE: f"a {verb} did not happen (refused, another reviewer busy, a recheck failed)"})


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError("expected a whole number from 1")
    return int(text)
