"""`sendwarden consent add|show|import|export`: consent records, append-only.

CSV columns: address,scope,consented_at,source,proof,status (status granted or withdrawn,
default granted). A newer record supersedes the current one for its address and scope; nothing
is ever overwritten, so `show` gives the whole history.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from proxy.commands import csvio
from proxy.commands.common import EXIT_NONE, CliError, add_json, exits
from proxy.commands.storecli import add_common, add_import_args, export, run
from proxy.store import ConsentRecord, RecipientStore

COLUMNS = ("address", "scope", "consented_at", "source", "proof", "status")
EXPORT_COLUMNS = (*COLUMNS, "recorded_at", "id", "superseded_by")


def _row(c: ConsentRecord) -> list[str]:
    return [c.address, c.scope, csvio.format_time(c.consented_at), c.source, c.proof, c.status,
            csvio.format_time(c.recorded_at), str(c.id), str(c.superseded_by or "")]


def cmd_add(args: argparse.Namespace) -> int:
    now = time.time()
    try:
        at = csvio.parse_time(args.at or "", now)
        record = ConsentRecord(args.address, args.scope, at, args.source, args.proof,
                               "withdrawn" if args.withdraw else "granted")
    except ValueError as exc:
        raise CliError(str(exc)) from None
    added = run(args, lambda store: store.add_consent([record], now))
    print("recorded" if added else "the same record is already current")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    history = run(args, lambda store: store.consent_history(args.address))
    if args.json:
        print(json.dumps({"address": args.address, "records": [dict(zip(EXPORT_COLUMNS, _row(c), strict=True)) for c in history]}))
        return 0 if history else EXIT_NONE
    if not history:
        print("no consent records")
        return EXIT_NONE
    for c in history:
        state = "current" if c.superseded_by is None else f"superseded by #{c.superseded_by}"
        print(f"#{c.id} {c.scope}: {c.status} at {csvio.format_time(c.consented_at)} via {c.source}"
              f" proof {c.proof or '-'} (recorded {csvio.format_time(c.recorded_at)}; {state})")
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    now = time.time()

    async def body(store: RecipientStore) -> csvio.ImportResult:
        def parse(row: dict[str, str]) -> ConsentRecord:
            store.normalize(row.get("address", ""))
            if not row.get("consented_at"):
                raise csvio.RowError("consented_at is required (when the person opted in)")
            # An export's recorded_at is kept, so an export imports back as the same trail.
            recorded = csvio.parse_time(row["recorded_at"], now) if row.get("recorded_at") else 0.0
            return ConsentRecord(row["address"], row.get("scope", ""), csvio.parse_time(row["consented_at"], now),
                                 row.get("source", ""), row.get("proof", ""), row.get("status") or "granted", recorded)

        # The export's own columns are accepted (id and superseded_by are the store's to assign).
        rows = csvio.Rows(EXPORT_COLUMNS, ("address", "scope", "consented_at", "source"), parse,
                          csvio.Progress(0, "importing", args.progress))
        return await csvio.run_import(args.file, rows, lambda batch: store.add_consent(batch, now),
                                      on_error=args.on_error, batch=args.batch)

    result = run(args, body)
    print(f"{result.applied} rows imported ({result.changed} recorded, {result.applied - result.changed} already current)"
          + (f", {result.bad} bad rows skipped" if result.bad else ""), file=sys.stderr)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    return export(args, EXPORT_COLUMNS, lambda store: store.iter_consent(history=args.history), _row)


def register(sub: Any) -> None:
    s = sub.add_parser("consent", help="consent records (append-only audit trail)")
    csub = s.add_subparsers(dest="consent_command", required=True, metavar="ACTION")

    p = csub.add_parser("add", help="record a consent (or, with --withdraw, its withdrawal)")
    add_common(p, create=True)
    p.add_argument("address", help="whose consent it is")
    p.add_argument("--scope", required=True, help="the brand (or brand/use) the consent was given for")
    p.add_argument("--source", required=True, help="where it was collected (form URL, event)")
    p.add_argument("--proof", default="", help="reference to the proof (form submission id, double opt-in message id)")
    p.add_argument("--at", help="when the person consented (ISO 8601; default now)")
    p.add_argument("--withdraw", action="store_true", help="record that the consent was withdrawn")
    p.set_defaults(func=cmd_add)

    p = csub.add_parser("show", help="an address's consent history")
    add_common(p)
    p.add_argument("address", help="whose history to show")
    add_json(p)
    exits(p, {EXIT_NONE: "the address has no consent records"})
    p.set_defaults(func=cmd_show)

    p = csub.add_parser("import", help="import consent records from CSV (address,scope,consented_at,source,proof,status)")
    add_import_args(p)
    p.set_defaults(func=cmd_import)

    p = csub.add_parser("export", help="export current consent records as CSV (--history: all)")
    add_common(p)
    p.add_argument("file", nargs="?", default="-", metavar="FILE.csv|-", help="where to write (default -: stdout)")
    p.add_argument("--history", action="store_true", help="superseded records too")
    p.set_defaults(func=cmd_export)
