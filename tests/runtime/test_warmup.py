"""Warm-up (proxy/runtime/warmup.py): the sample message runs the whole judging path once."""

from __future__ import annotations

import threading

import pytest

from proxy.message import html as htmlview
from proxy.message.mime import Message
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
