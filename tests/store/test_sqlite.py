"""The recipient store, through its public async interface only: the same tests are meant to
run against every backend (the `store` fixture is parametrised by backend name)."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import AsyncIterator

import pytest

from proxy.store import (
    GLOBAL, AddressNormalizer, ConsentRecord, DomainRule, FrequencyOverride, InvalidAddress, Query, RecipientStore,
    Scope, StoreError, Suppression, open_store,
)
from proxy.store.sqlite_schema import SCHEMA_VERSION

NORMALIZE = AddressNormalizer(DomainRule(), {"gmail.com": DomainRule(ignore_dots=True)})
BRAND = Scope("brand", "shop")
DAY = 86400.0


def backend_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:{tmp_path / 'state.sqlite3'}"
    if request.param == "postgresql":
        return str(request.getfixturevalue("pg_url"))
    raise AssertionError(request.param)


@pytest.fixture(params=["sqlite", "postgresql"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[RecipientStore]:
    s = open_store(backend_url(request, tmp_path), NORMALIZE)
    await s.open()
    yield s
    await s.close()


def test_normalisation() -> None:
    n = NORMALIZE
    assert n("Reader@Example.ORG") == "reader@example.org"
    assert n("<reader+news@example.org>") == "reader@example.org"
    assert n("Re.Ader+x@GMail.com") == "reader@gmail.com"
    assert n("re.ader@example.org") == "re.ader@example.org"  # dots matter elsewhere
    assert n("kunde@Bücher.example") == "kunde@xn--bcher-kva.example"
    assert n("+tagonly@example.org") == "+tagonly@example.org"  # nothing left to strip to
    assert n('"Quoted Name"@example.org') == '"Quoted Name"@example.org'
    keep = AddressNormalizer(DomainRule(fold_case=False, plus_tag=""))
    assert keep("Reader+news@EXAMPLE.org") == "Reader+news@example.org"
    for bad in ("", "no-at-sign", "@example.org", "a b@example.org", "x@", "x@exa mple.org", "x@" + "a" * 400):
        with pytest.raises(InvalidAddress):
            n(bad)


async def test_suppression_scopes_and_lookup(store: RecipientStore) -> None:
    added = await store.suppress([
        Suppression("Reader@Example.org", GLOBAL, "unsubscribe", "one-click", 100.0),
        Suppression("other@example.org", BRAND, "complaint", "arf", 101.0),
        Suppression("other@example.org", Scope("list", "news"), "manual", "cli", 102.0),
    ])
    assert added == 3
    # The same entries again are no news, and the first record stands.
    assert await store.suppress([Suppression("reader+x@example.org", GLOBAL, "manual", "again", 200.0)]) == 0
    state = await store.lookup("READER@example.org", Query(scopes=(GLOBAL, BRAND)), 1000.0)
    assert state.address == "reader@example.org"
    assert [(str(s.scope), s.reason, s.source, s.created) for s in state.suppressions] == [("global", "unsubscribe", "one-click", 100.0)]
    other = await store.lookup("other@example.org", Query(scopes=(GLOBAL, Scope("brand", "elsewhere"))), 1000.0)
    assert other.suppressions == ()
    other = await store.lookup("other@example.org", Query(scopes=(GLOBAL, BRAND, Scope("list", "news"))), 1000.0)
    assert sorted(str(s.scope) for s in other.suppressions) == ["brand:shop", "list:news"]
    found = await store.suppressions_for(["reader@example.org", "nobody@example.org", "other@example.org"], [GLOBAL])
    assert list(found) == ["reader@example.org"]
    assert await store.unsuppress("other@example.org", BRAND) == 1
    assert [str(s.scope) for s in await store.suppressions("other@example.org")] == ["list:news"]
    assert await store.unsuppress("other@example.org") == 1
    batches = [b async for b in store.iter_suppressions(batch=1)]
    assert [[s.address for s in b] for b in batches] == [["reader@example.org"]]


async def test_consent_is_superseded_never_overwritten(store: RecipientStore) -> None:
    first = ConsentRecord("reader@example.org", "shop", 1000.0, "signup-form", "form-123")
    assert await store.add_consent([first], now=1001.0) == 1
    assert await store.add_consent([first], now=1002.0) == 0  # the same record again
    state = await store.lookup("reader@example.org", Query(consent_scope="shop"), 2000.0)
    assert state.consent is not None and state.consent.proof == "form-123" and state.consent_scopes == ("shop",)
    wrong = await store.lookup("reader@example.org", Query(consent_scope="partner"), 2000.0)
    assert wrong.consent is None and wrong.consent_scopes == ("shop",)

    withdrawn = ConsentRecord("Reader@example.org", "shop", 3000.0, "preference-centre", "req-9", status="withdrawn")
    older = ConsentRecord("reader@example.org", "shop", 500.0, "import-2019", "paper-form")
    assert await store.add_consent([withdrawn, older], now=3001.0) == 2
    state = await store.lookup("reader@example.org", Query(consent_scope="shop"), 4000.0)
    assert state.consent is not None and state.consent.status == "withdrawn" and state.consent_scopes == ()
    history = await store.consent_history("reader@example.org")
    assert [(c.source, c.status, c.superseded_by is None) for c in history] == [
        ("signup-form", "granted", False), ("preference-centre", "withdrawn", True), ("import-2019", "granted", False)]
    current = [c async for b in store.iter_consent() for c in b]
    assert [c.source for c in current] == ["preference-centre"]
    assert len([c async for b in store.iter_consent(history=True) for c in b]) == 3


async def test_frequency_counts_and_overrides(store: RecipientStore) -> None:
    now = 100 * DAY
    for days_ago, brand in ((1, "shop"), (2, "shop"), (3, "other"), (9, "shop")):
        await store.record_sends(["reader@example.org"], brand, "marketing", now - days_ago * DAY)
    week = 7 * DAY
    q = Query(windows=((BRAND, week), (GLOBAL, week), (GLOBAL, 30 * DAY)), overrides=True)
    state = await store.lookup("reader@example.org", q, now)
    assert state.sends == {(BRAND, week): 2, (GLOBAL, week): 3, (GLOBAL, 30 * DAY): 4}
    await store.set_frequency_override(FrequencyOverride("Reader@example.org", BRAND, 1, 2 * DAY, "preference-centre", now))
    state = await store.lookup("reader@example.org", q, now)
    assert [(str(o.scope), o.max_count, o.window) for o in state.overrides] == [("brand:shop", 1, 2 * DAY)]
    assert state.sends[(BRAND, 2 * DAY)] == 1
    assert await store.clear_frequency_override("reader@example.org") == 1
    assert await store.prune(now, 5 * DAY) == 1
    assert (await store.counts())["sends"] == 3


async def test_privacy_link_ledger(store: RecipientStore) -> None:
    await store.record_privacy_links("Shop.example.com", ["https://shop.example.com/privacy"], 10 * DAY)
    await store.record_privacy_links("shop.example.com", ["https://shop.example.com/privacy", "https://shop.example.com/privacy"], 20 * DAY)
    await store.record_privacy_links("old.example.com", ["https://old.example.com/privacy"], 1 * DAY)
    links = await store.privacy_links_within(now=40 * DAY)
    assert [(p.url, p.sender_domain, p.first_sent, p.last_sent, p.messages) for p in links] == [
        ("https://shop.example.com/privacy", "shop.example.com", 10 * DAY, 20 * DAY, 2)]


async def test_bad_records_are_refused() -> None:
    with pytest.raises(ValueError):
        Suppression("a@example.org", GLOBAL, "because")
    with pytest.raises(ValueError):
        Suppression("a@example.org", Scope("stream", "x"))
    with pytest.raises(ValueError):
        Scope.parse("brand")
    with pytest.raises(ValueError):
        ConsentRecord("a@example.org", "shop", 1.0, "", "")
    assert Scope.parse(" Brand:shop ") == BRAND


async def test_sqlite_schema_version_and_append_only_consent(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite3"
    s = open_store(f"sqlite:{path}", NORMALIZE)
    await s.open()
    await s.add_consent([ConsentRecord("a@example.org", "shop", 1.0, "form")], now=2.0)
    await s.close()
    await s.open()  # a second open migrates nothing
    await s.close()
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    with pytest.raises(sqlite3.IntegrityError, match="never overwritten"):
        db.execute("UPDATE consent SET proof = 'forged'")
    with pytest.raises(sqlite3.IntegrityError, match="never deleted"):
        db.execute("DELETE FROM consent")
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.commit()
    db.close()
    with pytest.raises(StoreError, match="newer"):
        await open_store(f"sqlite:{path}", NORMALIZE).open()


async def test_unwritable_store_is_a_store_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(StoreError):
        await open_store(f"sqlite:{blocker / 'sub' / 's.sqlite3'}", NORMALIZE).open()


async def test_sqlite_checkpoints_in_the_background_not_in_a_commit(tmp_path: Path) -> None:
    """The writer never checkpoints (a commit that did would fsync on the relay's path); the
    checkpointer does, so the WAL is reused instead of growing."""
    import asyncio

    from proxy.store.sqlite import SqliteStore

    path = tmp_path / "state.sqlite3"
    store = SqliteStore(path, NORMALIZE, checkpoint_every=0.05)
    await store.open()
    try:
        assert await store._run("write", lambda db: db.execute("PRAGMA wal_autocheckpoint").fetchone()[0]) == 0
        wal = Path(f"{path}-wal")
        sizes = []
        for round_ in range(6):
            for i in range(300):
                await store.record_delivery(1e9 + i, [f"r{round_}-{i}@example.org"], "shop", "news",
                                            sender_domain="shop.example.com", urls=[f"https://shop.example.com/p{i}"])
            await asyncio.sleep(0.2)  # a few checkpoint rounds
            sizes.append(wal.stat().st_size)
        assert store.checkpoints >= 3
        # 1,800 commits of a few pages each would be tens of MB of WAL without checkpoints:
        # with them the WAL is written over from its start again and stays at one round's size.
        assert max(sizes) < 8 * 2**20 and sizes[-1] <= 2 * sizes[0] + 2**20, sizes
        assert (await store.counts())["sends"] == 1800
    finally:
        await store.close()
    assert not store._checkpointer


async def test_sqlite_bookkeeping_commits_without_fsync_durable_ones_with_it(tmp_path: Path) -> None:
    """The relay's bookkeeping commits at synchronous=NORMAL and leaves the writer there (no
    PRAGMA per message); a suppression after it commits at FULL all the same."""
    from proxy.store.sqlite import SqliteStore

    seen: list[str] = []  # PRAGMA synchronous=... run by the writer, and the level read back after each write
    store = SqliteStore(tmp_path / "state.sqlite3", NORMALIZE)
    await store.open()
    try:
        writer = store._dbs["write"]
        writer.set_trace_callback(lambda sql: seen.append(sql) if sql.startswith("PRAGMA synchronous=") else None)

        def level(db: sqlite3.Connection) -> None:
            seen.append({1: "normal", 2: "full"}[db.execute("PRAGMA synchronous").fetchone()[0]])

        for i in range(3):
            await store.record_delivery(1e9 + i, [f"r{i}@example.org"], "shop", "news")
            await store._run("write", level)
        await store.suppress([Suppression("a@example.org", GLOBAL, "unsubscribe", "test", 1e9)])
        await store._run("write", level)
        await store.record_delivery(1e9, ["b@example.org"], "shop", "news")
        await store._run("write", level)
    finally:
        await store.close()
    assert seen == ["PRAGMA synchronous=NORMAL", "normal", "normal", "normal",
                    "PRAGMA synchronous=FULL", "full", "PRAGMA synchronous=NORMAL", "normal"], seen
