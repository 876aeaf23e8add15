"""What the store commands share: opening the configured store for one command run."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any, AsyncIterator, Awaitable, Callable, Sequence, TypeVar

from proxy.commands import csvio
from proxy.commands.common import EX_DATAERR, CliError, add_config, add_create, config_for
from proxy.config import Config
from proxy.store import RecipientStore, Scope, StoreError, from_config
from proxy.store.base import SUPPRESSION_SCOPES, InvalidAddress

T = TypeVar("T")
def refuse_new_store(config: Config, create: bool | None) -> None:
    """A store command run with the wrong configuration (or none) must not quietly start an
    empty store of its own: a SQLite file that is not there yet is made only with --create,
    which only the commands that add records offer (`create` None: a reading command)."""
    url = config.store_url
    if url.startswith("sqlite:") and not Path(url[len("sqlite:"):]).exists() and not create:
        path = url[len("sqlite:"):]
        hint = (", or --create to start a new, empty one there" if create is False
                else "; nothing has been stored yet, or that is another installation's configuration")
        raise CliError(f"no store at {path} (configuration: {config.source}): give --config FILE (or set "
                       f"$SENDWARDEN_CONFIG) for the installation's store{hint}", EX_DATAERR)


def run(args: argparse.Namespace, body: Callable[[RecipientStore], Awaitable[T]]) -> T:
    """Open the store of the command's configuration, run `body` with it, close it; errors
    for people."""
    config = config_for(args.config)
    refuse_new_store(config, getattr(args, "create", None))

    async def main() -> T:
        store = from_config(config)
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


def add_common(p: Any, create: bool = False) -> None:
    """--config, and --create for the commands that add records."""
    add_config(p)
    if create:
        add_create(p)


def add_import_args(p: Any) -> None:
    add_common(p, create=True)
    p.add_argument("file", metavar="FILE.csv|-", help="the CSV file to import, or - for stdin")
    p.add_argument("--on-error", choices=("abort", "skip"), default="abort",
                   help="a bad row aborts before anything is applied (default), or is reported and skipped")
    p.add_argument("--batch", type=int, default=5000, metavar="N", help="rows per transaction (default 5000)")
    p.add_argument("--progress", action="store_true", help="show progress even when stderr is not a terminal")
