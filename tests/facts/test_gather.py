"""Fact providers (proxy/facts/gather.py, the list in proxy/facts/providers.py): answers given at once, lookups awaited within the budget,
failures and timeouts turned into LookupFailed facts."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from proxy.facts.gather import gather
from proxy.facts.providers import PROVIDERS
from proxy.facts.sources import Provider
from proxy.message.mime import Message
from proxy.policy.loader import BUILTIN_DEFAULT, load_policy
from proxy.policy.context import Context, LookupFailed

RAW = b"From: news@shop.example.com\r\nTo: reader@example.org\r\nSubject: Hi\r\n\r\nHello\r\n"


def at_once(sources: Any, message: Message, ctx: Context, opts: Any) -> str:
    return "answered at once"


def looked_up(sources: Any, message: Message, ctx: Context, opts: Any) -> Any:
    async def lookup() -> str:
        await asyncio.sleep(0.01)
        return "looked up"
    return lookup()


def broken(sources: Any, message: Message, ctx: Context, opts: Any) -> Any:
    raise ValueError("no config")


def failing_lookup(sources: Any, message: Message, ctx: Context, opts: Any) -> Any:
    async def lookup() -> str:
        raise ConnectionRefusedError("refused")
    return lookup()


def hanging(sources: Any, message: Message, ctx: Context, opts: Any) -> Any:
    return asyncio.sleep(60)


TEST_PROVIDERS = tuple(Provider(fn.__name__, "content", fn) for fn in (at_once, looked_up, broken, failing_lookup, hanging)) + (
    Provider("elsewhere", "no-such-family", at_once),)


async def test_answers_lookups_failures_and_timeouts() -> None:
    policy = load_policy(BUILTIN_DEFAULT)
    ctx = Context(stream=policy.default_stream, marketing=True)
    loop = asyncio.get_running_loop()
    started = loop.time()
    facts = await gather(None, policy, Message.from_bytes(RAW), ctx, timeout=0.3, providers=TEST_PROVIDERS)  # type: ignore[arg-type]
    assert loop.time() - started < 5
    assert set(facts) == {"at_once", "looked_up", "broken", "failing_lookup", "hanging"}  # not a disabled family
    assert facts["at_once"] == "answered at once" and facts["looked_up"] == "looked up"
    assert isinstance(facts["broken"], LookupFailed) and "ValueError: no config" in facts["broken"].reason
    assert isinstance(facts["failing_lookup"], LookupFailed) and "ConnectionRefusedError" in facts["failing_lookup"].reason
    assert isinstance(facts["hanging"], LookupFailed) and "no answer within 0.3s" in facts["hanging"].reason


async def test_no_task_when_every_provider_answers_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(asyncio, "ensure_future", lambda *a, **k: pytest.fail("a task was made"))
    policy = load_policy(BUILTIN_DEFAULT)
    facts = await gather(None, policy, Message.from_bytes(RAW), Context(stream=policy.default_stream), timeout=1,  # type: ignore[arg-type]
                         providers=(Provider("at_once", "content", at_once),))
    assert facts == {"at_once": "answered at once"}


def test_the_shipped_providers_answer_at_once_for_a_plain_message() -> None:
    """Unsigned, no attachments, no late opt-out scopes: no lookup to await."""
    assert {"dkim", "clamav", "suppressions_after_data"} <= {p.name for p in PROVIDERS}
    policy = load_policy(BUILTIN_DEFAULT)
    ctx = Context(stream=policy.default_stream, marketing=True, rcpts=("reader@example.org",))
    message = Message.from_bytes(RAW)
    for p in PROVIDERS:
        answer = p.fn(None, message, ctx, policy.options[p.family])  # type: ignore[arg-type]
        assert not asyncio.iscoroutine(answer), p.name
