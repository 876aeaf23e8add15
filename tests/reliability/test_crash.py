"""The relay process killed with SIGKILL under load, restarted, and the books balanced: no
message that a client was told 250 for is lost; what was in flight is sent again by its
client (a possible duplicate, counted); the quarantine comes back in step. The same with
SIGTERM (a restart by the service manager): transactions in flight finish, idle clients are
told 421."""

from __future__ import annotations

import asyncio
import random

import pytest

from proxy.quarantine.files import Quarantine
from tests.reliability.conftest import record, scaled
from tests.reliability.harness import POLICY, Ledger, reconcile, send_all
from tests.reliability.test_upstream_faults import mixed
from tests.support.sink import Sink


@pytest.mark.parametrize("signal", ["SIGKILL", "SIGTERM"])
async def test_killed_under_load_loses_nothing(serve, sink: Sink, tmp_path, signal) -> None:
    sink.behaviour.data_delay = 0.01  # keep transactions in flight when the kill comes
    relay = await serve(sink.url, None, POLICY)
    ledger = Ledger()
    msgs = mixed(ledger, scaled(400 if signal == "SIGKILL" else 250), weights=(65, 30, 5))
    rng = random.Random(9)
    kills = 0

    async def killer() -> None:
        """Kill three times (stop twice: each restart costs seconds), at points of progress
        (with some jitter), so that it always happens while messages are in flight."""
        nonlocal kills
        for share in (0.2, 0.45, 0.7) if signal == "SIGKILL" else (0.3, 0.65):
            while sum(1 for s in msgs if s.replies) < share * len(msgs):
                await asyncio.sleep(0.01)
            await asyncio.sleep(rng.uniform(0, 0.05))
            if signal == "SIGKILL":
                await relay.kill()
            else:
                assert await relay.stop() == 0
            kills += 1
            await asyncio.sleep(0.3)
            await relay.start()

    sending = asyncio.ensure_future(send_all(relay.port, ledger, msgs, workers=16, tries=8, stop_retrying=60))
    await asyncio.gather(sending, killer())
    assert await relay.stop() == 0

    qdir = tmp_path / "var" / "quarantine"
    r = reconcile(ledger, sink, qdir)
    repairs = [e for e in relay.events() if e["event"] == "quarantine_out_of_step"]
    moved = sum(len(e["files_without_index"]) for e in repairs)
    lost_found = len(list((qdir / "lost+found").glob("*.eml"))) if (qdir / "lost+found").exists() else 0
    connection_losses = sum(1 for s in msgs for reply in s.replies if reply == "conn")
    record(f"{signal} under load", messages=r.messages, attempts=r.attempts, kills=kills, faults=kills,
           accepted=r.accepted, relayed=r.relayed, held=r.held, refused=r.refused, gave_up=r.gave_up,
           lost=len(r.lost), duplicates=r.duplicate_copies, attempts_without_reply=connection_losses,
           quarantine_files_moved_to_lost_found=lost_found)
    assert relay.starts == kills + 1 == (4 if signal == "SIGKILL" else 3)
    assert r.violations() == {}
    assert r.accepted + r.refused == len(msgs)  # every message reached a final answer
    assert not [e for e in repairs if e["index_without_file"]]  # no acknowledged hold lost
    assert moved == lost_found
    # Back in step: every held row has its file, every file its row.
    q = Quarantine(qdir)
    assert q.audit() == ([], [])
    q.close()
