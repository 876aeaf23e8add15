"""What the store commands share: opening the configured store for one command run."""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any, AsyncIterator, Awaitable, Callable, Sequence, TypeVar

from proxy.commands import csvio
from proxy.commands.common import CliError
from proxy.config import load_config
from proxy.store import RecipientStore, Scope, StoreError, from_config
from proxy.store.base import SUPPRESSION_SCOPES, InvalidAddress

T = TypeVar("T")
EXIT_FOUND = 2  # `suppress check`: the address is suppressed


def run(args: argparse.Namespace, body: Callable[[RecipientStore], Awaitable[T]]) -> T:
    """Open the store named by --config, run `body` with it, close it; errors for people."""

    async def main() -> T:
        store = from_config(load_config(args.config))
        try:
            await store.open()
            return await body(store)
        finally:
            await store.close()

    try:
        return asyncio.run(main())
    except StoreError as exc:
        raise CliError(f"store: {exc}") from None
    except InvalidAddress as exc:
        raise CliError(str(exc)) from None


def export(args: argparse.Namespace, columns: Sequence[str], batches: Callable[[RecipientStore], AsyncIterator[list[T]]],
           row: Callable[[T], list[str]]) -> int:
    """Stream the store's records as CSV to args.file ("-": stdout)."""
    out, fh = csvio.writer(args.file)

    async def body(store: RecipientStore) -> int:
        out.writerow(columns)
        n = 0
        async for batch in batches(store):
            out.writerows(row(r) for r in batch)
            n += len(batch)
        return n

    try:
        n = run(args, body)
    finally:
        fh.flush()
        if args.file == "-":
            fh.detach()  # type: ignore[attr-defined]
        else:
            fh.close()
    print(f"{n} rows exported", file=sys.stderr)
    return 0


def scope_arg(kinds: tuple[str, ...] = SUPPRESSION_SCOPES) -> Callable[[str], Scope]:
    def parse(text: str) -> Scope:
        try:
            return Scope.parse(text, kinds)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return parse


def add_common(p: Any) -> None:
    p.add_argument("--config", help="service configuration (TOML) naming the store; default: the embedded one")


def add_import_args(p: Any) -> None:
    add_common(p)
    p.add_argument("file", metavar="FILE.csv|-")
    p.add_argument("--on-error", choices=("abort", "skip"), default="abort",
                   help="a bad row aborts before anything is applied (default), or is reported and skipped")
    p.add_argument("--batch", type=int, default=5000, metavar="N", help="rows per transaction (default 5000)")
    p.add_argument("--progress", action="store_true", help="show progress even when stderr is not a terminal")
