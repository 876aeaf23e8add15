"""message/lazy.py's cached_property behaves as functools.cached_property, which it replaces
in the message views (mime.py, linktable.py)."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

from proxy.message import lazy
from proxy.message.mime import Message


def _views(decorator: Any) -> type:
    @dataclass(frozen=True)  # as Message: the view is written past the frozen __setattr__
    class View:
        text: str

        @decorator
        def words(self) -> list[str]:
            """The words."""
            calls.append(self.text)
            return self.text.split()

    calls: list[str] = []
    View.calls = calls  # type: ignore[attr-defined]
    return View


def test_computed_once_and_kept_in_the_instance_as_functools_does() -> None:
    for decorator in (functools.cached_property, lazy.cached_property):
        view_class = _views(decorator)
        one, two = view_class("a b"), view_class("c")
        assert one.words == ["a", "b"] and one.words is one.words and two.words == ["c"]
        assert view_class.calls == ["a b", "c"]  # type: ignore[attr-defined]
        assert vars(one)["words"] == ["a", "b"]
        assert view_class.__dict__["words"].__get__(None, view_class) is view_class.__dict__["words"]
        assert view_class.__dict__["words"].__doc__ == "The words."


def test_a_message_computes_each_view_once() -> None:
    raw = (b"From: a@shop.example.com\r\nSubject: hi\r\nContent-Type: text/html\r\n\r\n"
           b"<p>Hello <a href='https://shop.example.com/x'>shop</a></p>\r\n")
    msg = Message.from_bytes(raw)
    assert msg.link_table is msg.link_table and msg.folded_text is msg.folded_text
    assert {"link_table", "folded_text", "_folded", "html_view"} <= set(vars(msg))
    assert Message.html_view.__doc__ == Message.__dict__["html_view"].fn.__doc__
