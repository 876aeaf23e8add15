"""`sendwarden suppress add|remove|check|list|import|export`: the suppression list.

CSV columns: address,scope,reason,source,created (a header row, or addresses only in the
first column). scope is global, brand:NAME or list:NAME; created is ISO 8601 or Unix seconds.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from proxy.commands import csvio
from proxy.commands.common import EXIT_NONE, EXIT_SUPPRESSED, add_json, exits
from proxy.commands.storecli import add_common, add_import_args, export, run, scope_arg
from proxy.store import GLOBAL, REASONS, RecipientStore, Scope, Suppression

COLUMNS = ("address", "scope", "reason", "source", "created")


def _row(s: Suppression) -> list[str]:
    return [s.address, str(s.scope), s.reason, s.source, csvio.format_time(s.created)]


def _doc(s: Suppression) -> dict[str, str]:
    return dict(zip(COLUMNS, _row(s), strict=True))


def cmd_add(args: argparse.Namespace) -> int:
    now = time.time()
    entries = [Suppression(a, args.scope, args.reason, args.source, now) for a in args.address]
    added = run(args, lambda store: store.suppress(entries))
    print(f"{added} added, {len(entries) - added} already suppressed")
    return 0


def cmd_remove(args: argparse.Namespace) -> int:
    removed = run(args, lambda store: store.unsuppress(args.address, args.scope))
    print(f"{removed} removed")
    return 0 if removed else EXIT_NONE


def cmd_check(args: argparse.Namespace) -> int:
    found = run(args, lambda store: store.suppressions(args.address))
    wanted = {GLOBAL} | ({Scope("brand", args.brand)} if args.brand else set()) | ({Scope("list", args.list)} if args.list else set())
    applies = [s for s in found if s.scope in wanted or not (args.brand or args.list)]
    if args.json:
        print(json.dumps({"address": args.address, "suppressed": bool(applies),
                          "suppressions": [{**_doc(s), "applies": s in applies} for s in found]}))
        return EXIT_SUPPRESSED if applies else 0
    for s in found:
        mark = "suppressed" if s in applies else "other scope"
        print(f"{mark:<12} {s.address}  {s.scope}  {s.reason}  {s.source}  {csvio.format_time(s.created)}")
    if not applies:
        print("not suppressed")
    return EXIT_SUPPRESSED if applies else 0


def cmd_list(args: argparse.Namespace) -> int:
    async def body(store: RecipientStore) -> int:
        shown = 0
        async for batch in store.iter_suppressions(scope=args.scope, reason=args.reason):
            for s in batch:
                if args.limit and shown >= args.limit:
                    return shown
                print(json.dumps(_doc(s)) if args.json else "  ".join(_row(s)))
                shown += 1
        return shown

    shown = run(args, body)
    print(f"({shown} shown)", file=sys.stderr)
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    now = time.time()
    source = args.source or f"import:{args.file}"

    async def body(store: RecipientStore) -> csvio.ImportResult:
        def parse(row: dict[str, str]) -> Suppression:
            address = row.get("address", "")
            store.normalize(address)  # raises InvalidAddress (a ValueError) for the row
            scope = Scope.parse(row["scope"]) if row.get("scope") else GLOBAL
            return Suppression(address, scope, row.get("reason") or args.reason, row.get("source") or source,
                               csvio.parse_time(row.get("created", ""), now))

        rows = csvio.Rows(COLUMNS, ("address",), parse, csvio.Progress(0, "importing", args.progress))
        return await csvio.run_import(args.file, rows, store.suppress, on_error=args.on_error, batch=args.batch)

    result = run(args, body)
    print(f"{result.applied} rows imported ({result.changed} new, {result.applied - result.changed} already there)"
          + (f", {result.bad} bad rows skipped" if result.bad else ""), file=sys.stderr)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    return export(args, COLUMNS, lambda store: store.iter_suppressions(scope=args.scope, reason=args.reason), _row)


def register(sub: Any) -> None:
    s = sub.add_parser("suppress", help="the suppression list (opt-outs)")
    ssub = s.add_subparsers(dest="suppress_command", required=True, metavar="ACTION")
    scope = scope_arg()

    p = ssub.add_parser("add", help="suppress addresses")
    add_common(p, create=True)
    p.add_argument("address", nargs="+", help="the addresses to suppress")
    p.add_argument("--scope", type=scope, default=GLOBAL, help="global (default), brand:NAME or list:NAME")
    p.add_argument("--reason", choices=REASONS, default="manual", help="why (default manual)")
    p.add_argument("--source", default="cli", help="where the request came from (ticket, person)")
    p.set_defaults(func=cmd_add)

    p = ssub.add_parser("remove", help="lift an address's suppression (all scopes unless --scope)")
    add_common(p)
    p.add_argument("address", help="the address whose suppression is lifted")
    p.add_argument("--scope", type=scope, help="only this scope: global, brand:NAME or list:NAME")
    exits(p, {EXIT_NONE: "the address had no such suppression"})
    p.set_defaults(func=cmd_remove)

    p = ssub.add_parser("check", help=f"is the address suppressed? (exit status {EXIT_SUPPRESSED}: yes)")
    add_common(p)
    p.add_argument("address", help="the address to look up (normalised as the relay does)")
    add_json(p)
    exits(p, {0: "the address is not suppressed", EXIT_SUPPRESSED: "the address is suppressed"})
    p.add_argument("--brand", help="count brand:NAME as applying (default: every scope counts)")
    p.add_argument("--list", help="count list:NAME as applying")
    p.set_defaults(func=cmd_check)

    p = ssub.add_parser("list", help="list suppressions")
    add_common(p)
    p.add_argument("--scope", type=scope, help="only this scope: global, brand:NAME or list:NAME")
    p.add_argument("--reason", choices=REASONS, help="only suppressions for this reason")
    p.add_argument("--limit", type=int, default=0, metavar="N", help="at most N (default: all)")
    add_json(p, "one JSON object per suppression")
    p.set_defaults(func=cmd_list)

    p = ssub.add_parser("import", help="import suppressions from CSV (address,scope,reason,source,created)")
    add_import_args(p)
    p.add_argument("--reason", choices=REASONS, default="import", help="for rows without one (default import)")
    p.add_argument("--source", help="for rows without one (default import:FILE)")
    p.set_defaults(func=cmd_import)

    p = ssub.add_parser("export", help="export suppressions as CSV")
    add_common(p)
    p.add_argument("file", nargs="?", default="-", metavar="FILE.csv|-", help="where to write (default -: stdout)")
    p.add_argument("--scope", type=scope, help="only this scope: global, brand:NAME or list:NAME")
    p.add_argument("--reason", choices=REASONS, help="only suppressions for this reason")
    p.set_defaults(func=cmd_export)
