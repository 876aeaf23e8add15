"""Streaming CSV import and export for the store commands.

Import reads the file once per pass, row by row, in bounded memory, and applies rows in
batches, each batch one transaction: a crash or a kill leaves whole batches applied and none
half-applied, and running the same import again is harmless (the store skips what it has).

    --on-error abort (default)  a regular file is validated completely first; any bad row
                                aborts with its line number before anything is applied. From a
                                pipe (one pass only) the import stops at the bad row and says
                                exactly how many rows were committed before it.
    --on-error skip             bad rows are reported with their line numbers and left out.
"""

from __future__ import annotations

import csv
import io
import os
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import IO, Any, Awaitable, Callable, Generic, Iterator, Sequence, TypeVar

from proxy.commands.common import CliError, rfc3339

T = TypeVar("T")
MAX_FIELD = 4096
csv.field_size_limit(MAX_FIELD * 4)


class RowError(ValueError):
    """A row that cannot be imported; the message says what is wrong with it."""


def parse_time(text: str, now: float) -> float:
    """ISO 8601 (naive means UTC) or Unix seconds; empty means now."""
    text = text.strip()
    if not text:
        return now
    try:
        return float(text)
    except ValueError:
        pass
    try:
        dt = datetime.fromisoformat(text)
    except ValueError:
        raise RowError(f"bad time {text!r} (expected ISO 8601 or Unix seconds)") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.timestamp()


format_time = rfc3339


class Progress:
    """A one-line progress indicator on stderr, only when it is a terminal (or forced)."""

    def __init__(self, total: int, label: str, force: bool = False, stream: IO[str] | None = None) -> None:
        self.stream = stream or sys.stderr
        self.on = force or self.stream.isatty()
        self.total = total
        self.label = label
        self.started = self.last = time.monotonic()

    def update(self, done_bytes: int, rows: int, final: bool = False) -> None:
        now = time.monotonic()
        if not self.on or (not final and now - self.last < 0.2):
            return
        self.last = now
        rate = rows / max(now - self.started, 1e-6)
        share = f"{100 * done_bytes / self.total:5.1f}% " if self.total else ""
        self.stream.write(f"\r{self.label}: {share}{rows:,} rows, {rate:,.0f} rows/s" + ("\n" if final else ""))
        self.stream.flush()


class _Counting:
    """Binary lines → text lines, counting bytes for the progress indicator."""

    def __init__(self, fh: IO[bytes]) -> None:
        self.fh = fh
        self.done = 0
        self.bad_line: str | None = None

    def __iter__(self) -> Iterator[str]:
        first = True
        for raw in self.fh:
            self.done += len(raw)
            if first and raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]
            first = False
            try:
                yield raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                self.bad_line = f"not UTF-8 ({exc.reason} at byte {exc.start})"
                yield raw.decode("utf-8", "replace")


@dataclass
class Rows(Generic[T]):
    """Parse a CSV stream row by row: (line number, value or RowError)."""

    columns: Sequence[str]  # the default order, when the file has no header
    required: Sequence[str]
    parse: Callable[[dict[str, str]], T]
    progress: Progress | None = None
    reader: _Counting | None = field(default=None, init=False)

    def __call__(self, fh: IO[bytes]) -> Iterator[tuple[int, T | RowError]]:
        self.reader = _Counting(fh)
        rows = csv.reader(self.reader)
        header: list[str] | None = None
        line = 1
        count = 0
        for cells in rows:
            start, line = line, rows.line_num + 1
            if not cells or all(not c.strip() for c in cells):
                continue
            if self.reader.bad_line:
                yield start, RowError(self.reader.bad_line)
                self.reader.bad_line = None
                continue
            if header is None:
                if "@" not in cells[0]:
                    header = [c.strip().lower() for c in cells]
                    unknown = [c for c in header if c not in self.columns]
                    missing = [c for c in self.required if c not in header]
                    if unknown or missing:
                        raise CliError(f"line {start}: header names {'unknown columns ' + ', '.join(unknown) if unknown else ''}"
                                       f"{'; ' if unknown and missing else ''}{'no ' + ', '.join(missing) if missing else ''}"
                                       f" (columns: {', '.join(self.columns)})")
                    continue
                header = list(self.columns)
            if len(cells) > len(header):
                yield start, RowError(f"{len(cells)} fields, the header has {len(header)}")
                continue
            if any(len(c) > MAX_FIELD for c in cells):
                yield start, RowError(f"a field longer than {MAX_FIELD} characters")
                continue
            try:
                # A row may leave out trailing optional columns (a longer one was refused above).
                yield start, self.parse({k: v.strip() for k, v in zip(header, cells, strict=False)})
            except (RowError, ValueError) as exc:
                yield start, RowError(str(exc))
            count += 1
            if self.progress:
                self.progress.update(self.reader.done, count)


@dataclass
class ImportResult:
    applied: int = 0  # rows sent to the store in committed batches
    changed: int = 0  # rows the store reported as new
    bad: int = 0


def _open(path: str) -> IO[bytes]:
    if path == "-":
        return sys.stdin.buffer
    try:
        return open(path, "rb")
    except OSError as exc:
        raise CliError(f"{path}: {exc.strerror or exc}") from None


async def run_import(path: str, rows: Rows[T], apply: Callable[[list[T]], Awaitable[int]], *,
                     on_error: str, batch: int, err: IO[str] | None = None) -> ImportResult:
    err = err or sys.stderr
    name = "stdin" if path == "-" else path
    fh = _open(path)
    seekable = path != "-" and fh.seekable()
    total = os.fstat(fh.fileno()).st_size if seekable else 0
    result = ImportResult()
    try:
        if on_error == "abort" and seekable:
            progress, rows.progress = rows.progress, None
            bad = [(n, e) for n, e in rows(fh) if isinstance(e, RowError)]
            rows.progress = progress
            if bad:
                for n, e in bad[:20]:
                    err.write(f"{name}:{n}: {e}\n")
                more = f" (and {len(bad) - 20} more)" if len(bad) > 20 else ""
                raise CliError(f"{name}: {len(bad)} bad rows{more}; nothing was imported (use --on-error skip to leave them out)")
            fh.seek(0)
        if rows.progress:
            rows.progress.total = total
        pending: list[T] = []
        for n, value in rows(fh):
            if isinstance(value, RowError):
                result.bad += 1
                if on_error == "abort":
                    raise CliError(f"{name}:{n}: {value}; aborted: {result.applied} rows before it were imported"
                                   f" (in committed batches), nothing from line {n} on")
                err.write(f"{name}:{n}: {value} (skipped)\n")
                continue
            pending.append(value)
            if len(pending) >= batch:
                result.changed += await apply(pending)
                result.applied += len(pending)
                pending = []
        if pending:
            result.changed += await apply(pending)
            result.applied += len(pending)
        if rows.progress and rows.reader:
            rows.progress.update(rows.reader.done, result.applied + result.bad, final=True)
    finally:
        if fh is not sys.stdin.buffer:
            fh.close()
    return result


def writer(path: str) -> tuple[Any, IO[str]]:
    """A csv writer on `path` ("-": stdout), and the file to close."""
    if path == "-":
        out: IO[str] = io.TextIOWrapper(sys.stdout.buffer, encoding="utf-8", newline="", write_through=False)
    else:
        try:
            out = open(path, "w", encoding="utf-8", newline="")
        except OSError as exc:
            raise CliError(f"{path}: {exc.strerror or exc}") from None
    return csv.writer(out, lineterminator="\r\n"), out
