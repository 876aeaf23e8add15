"""One message's way through the transaction code with only the parts it uses (a
`TransactionDeps` of a real SQLite store, a real file quarantine and the real resolver), no
running service: screening at RCPT, judging, holding, and the bookkeeping after relay."""

from __future__ import annotations

import time
import tomllib
from dataclasses import astuple
from pathlib import Path

import pytest

from proxy.audit import AddressMasker
from proxy.config import Notify
from proxy.dns import Resolver
from proxy.facts.sources import FactSources
from proxy.metrics import Metrics
from proxy.policy.loader import build
from proxy.policy.verdict import Action
from proxy.quarantine.files import Quarantine
from proxy.replies import Replies
from proxy.quarantine.notify import Notifier
from proxy.store import GLOBAL, AddressNormalizer, ConsentRecord, Suppression
from proxy.store.pending import PendingWrites
from proxy.store.sqlite import SqliteStore
from proxy.transaction import outcome, recipients
from proxy.transaction.evaluate import evaluate
from proxy.transaction.deps import JudgingDeps, TransactionDeps
from proxy.transaction.envelope import Recipient, Transaction, new_queue_id
from proxy.unsubscribe.headers import Endpoints
from tests.support.recipient_helpers import BARE, COMPLIANT, SENDER, policy


@pytest.fixture
async def deps(tmp_path: Path):
    store = SqliteStore(tmp_path / "state.db", AddressNormalizer())
    await store.open()
    quarantine = Quarantine(tmp_path / "quarantine")
    quarantine.open()
    notifier = Notifier(Notify(), "relay.example")
    pending = PendingWrites(5)
    judging = JudgingDeps(FactSources(Resolver(), store), unsubscribe_keys=None, endpoints=Endpoints(), token_days=30,
                          policy_timeout=5)
    yield TransactionDeps(judging, pending_writes=pending, quarantine=quarantine, notifier=notifier,
                          masker=AddressMasker("clear", b""), metrics=Metrics())
    quarantine.close()
    await pending.close()
    await store.close()


def transaction(text: str, rcpts: list[str]) -> Transaction:
    pol = build(tomllib.loads(text), "test.toml")
    tx = Transaction(new_queue_id(), SENDER, pol, "marketing", time.monotonic())
    tx.recipients = [Recipient(r) for r in rcpts]
    return tx


async def test_a_suppressed_recipient_is_refused_at_rcpt(deps: TransactionDeps) -> None:
    await deps.store.suppress([Suppression("gone@example.org", GLOBAL, "unsubscribe")])
    await deps.store.add_consent([ConsentRecord(a, "shop", time.time() - 86400, "signup-form")
                                  for a in ("gone@example.org", "reader@example.org")], time.time())
    tx = transaction(policy(), [])
    refused = await recipients.screen(deps.judging, tx.policy, tx.ensure_plan(), tx.stream, "gone@example.org")
    kept = await recipients.screen(deps.judging, tx.policy, tx.ensure_plan(), tx.stream, "reader@example.org")
    assert refused.reply is not None and refused.rule == "optout.suppressed"
    assert (refused.reply.code, refused.reply.enhanced) == astuple(Replies.recipient_refused("r", "x"))[:2]
    assert kept.reply is None


async def test_judged_then_held_or_counted_without_a_service(deps: TransactionDeps) -> None:
    tx = transaction(policy(frequency=""), ["reader@example.org"])
    record: dict[str, object] = {}
    judgement = await evaluate(deps.judging, tx, COMPLIANT, record)
    assert judgement.verdict.effective == Action.RELAY, judgement.verdict.rules
    await outcome.accepted(deps, tx, judgement)
    state = await deps.store.lookup("reader@example.org", tx.ensure_plan().query, time.time())
    assert sum(state.sends.values()) >= 1  # counted for the frequency cap

    bare = transaction(policy(), ["reader@example.org"])
    judgement = await evaluate(deps.judging, bare, BARE, {})
    assert judgement.verdict.action == Action.REJECT  # no unsubscribe: the policy says reject
    reply = await outcome.hold(deps, bare, judgement, BARE, record)
    assert (reply.code, reply.enhanced) == astuple(Replies.quarantined("x"))[:2]
    assert deps.quarantine.get(str(record["hold_id"])) is not None
    outcome.audit(deps, bare, reply, judgement.verdict, len(BARE), record, time.perf_counter())


async def test_the_audit_line_follows_the_level_and_the_metrics_count_either_way(deps: TransactionDeps) -> None:
    """Below the configured level the audit line is not even built (its addresses are not
    masked); the message is counted in the metrics all the same."""
    import logging

    import structlog
    from structlog.testing import capture_logs

    tx = transaction(policy(frequency=""), ["reader@example.org"])
    masked: list[str] = []
    deps = TransactionDeps(deps.judging, deps.pending_writes, deps.quarantine, deps.notifier,
                           lambda a: masked.append(a) or a, deps.metrics)  # type: ignore[arg-type]
    counted = deps.metrics.messages.labels("marketing", "refused")
    configured = structlog.get_config()
    try:
        for level, lines in ((logging.WARNING, 0), (logging.INFO, 1)):
            structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(level))  # as audit.configure sets it
            before, masked[:] = counted._value.get(), []
            with capture_logs() as logs:
                outcome.audit(deps, tx, Replies.bad_recipient("x"), None, 10, {}, time.perf_counter())
            assert len([e for e in logs if e["event"] == "message"]) == lines and len(masked) == 2 * lines
            assert counted._value.get() == before + 1
    finally:
        structlog.configure(**configured)
