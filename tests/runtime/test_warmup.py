"""Warm-up (proxy/runtime/warmup.py): the sample message runs the whole judging path once."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from proxy.message import html as htmlview
from proxy.message.mime import Message
from proxy.policy import contentlists
from proxy.policy.engine import judge
from proxy.policy.loader import BUILTIN_DEFAULT, load_policy
from proxy.policy.registry import Context
from proxy.runtime.warmup import SAMPLE, warm_up


def test_the_sample_is_clean_and_reaches_every_part_a_check_reads() -> None:
    policy = load_policy(BUILTIN_DEFAULT)
    msg = Message.from_bytes(SAMPLE)
    for name, stream in policy.streams.items():
        assert judge(policy, msg, Context(stream=name, marketing=stream.marketing)).rules == []
    assert [a.names for a in msg.attachments] == [("catalogue.pdf",)]
    assert "Preheader" not in msg.html_view.visible_text and len(msg.html_view.anchors) == 4
    assert msg.text and msg.html


def test_warm_up_builds_the_thread_s_parser_and_stylesheet() -> None:
    seen: list[tuple[bool, bool]] = []

    def fresh_thread() -> None:
        before = getattr(htmlview._LOCAL, "xslt", None) is not None
        warm_up(load_policy(BUILTIN_DEFAULT))
        seen.append((before, getattr(htmlview._LOCAL, "xslt", None) is not None and getattr(htmlview._LOCAL, "parser", None) is not None))

    t = threading.Thread(target=fresh_thread)
    t.start()
    t.join()
    assert seen == [(False, True)]


def test_a_failing_check_does_not_stop_the_warm_up(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*_: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr("proxy.runtime.warmup.judge", broken)
    assert warm_up(load_policy(BUILTIN_DEFAULT)) >= 0


def _term_sets(policy: Any) -> list[Any]:
    found = []
    for checks in policy.checks.values():
        for _, options in checks:
            lists = getattr(options, "compiled", None)
            if lists is not None:
                found += [lists.terms, lists.offers]
            links = getattr(options, "_links", None)
            if links is not None:
                found.append(links.words)
    return found


def test_warm_up_prepares_what_the_sample_does_not_reach(monkeypatch: pytest.MonkeyPatch) -> None:
    """The label patterns of every term set (content lists, unsubscribe and privacy link
    words) are made at warm-up, not by the first message with a hit."""
    monkeypatch.setattr(contentlists, "_COMPILED", {})  # lists compiled afresh, not shared with other tests
    policy = load_policy(BUILTIN_DEFAULT)
    sets = _term_sets(policy)
    assert len(sets) >= 4 and not any(s.prepared for s in sets)
    warm_up(policy)
    assert all(s.prepared for s in sets)


def test_a_failing_prepare_does_not_stop_the_warm_up(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*_: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr("proxy.policy.checks.content.ContentOptions.prepare", broken)
    assert warm_up(load_policy(BUILTIN_DEFAULT)) >= 0
