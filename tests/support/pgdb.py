"""Throwaway PostgreSQL databases on the local server (127.0.0.1:5432, trust auth): each test
that asks for `pg_url` gets its own `sendwarden_test_<random>` database, dropped afterwards.

The fixture is synchronous (its statements run on a loop of their own in a worker thread), so
that parametrised fixtures can ask for it with `request.getfixturevalue`."""

from __future__ import annotations

import asyncio
import secrets
import threading
from typing import Any, Iterator

import asyncpg
import pytest

SERVER = "postgresql://postgres@127.0.0.1:5432"


async def admin(sql: str, *args: object, database: str = "postgres") -> Any:
    """One statement on the server (CREATE/DROP/ALTER DATABASE, pg_terminate_backend)."""
    db = await asyncpg.connect(f"{SERVER}/{database}", timeout=5)
    try:
        return await db.fetch(sql, *args)
    finally:
        await db.close()


def admin_sync(sql: str, *args: object, database: str = "postgres") -> Any:
    """`admin` from synchronous code, even where an event loop is running in this thread."""
    out: list[Any] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            out.append(asyncio.run(admin(sql, *args, database=database)))
        except BaseException as exc:  # handed to the caller below
            errors.append(exc)

    worker = threading.Thread(target=run)
    worker.start()
    worker.join(30)
    if errors:
        raise errors[0]
    return out[0] if out else None


def cut_off(name: str) -> None:
    """Make a database unreachable: refuse new connections and end the existing ones."""
    admin_sync(f"ALTER DATABASE {name} ALLOW_CONNECTIONS false")
    admin_sync("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1", name)


def restore(name: str) -> None:
    admin_sync(f"ALTER DATABASE {name} ALLOW_CONNECTIONS true")


@pytest.fixture
def pg_url() -> Iterator[str]:
    name = f"sendwarden_test_{secrets.token_hex(6)}"
    admin_sync(f"CREATE DATABASE {name}")
    try:
        yield f"{SERVER}/{name}"
    finally:
        restore(name)
        admin_sync(f"DROP DATABASE {name} WITH (FORCE)")
