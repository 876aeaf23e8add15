"""proxy/message/view.py (lexbor) reads every HTML body of the fixtures and examples as
proxy/message/html.py (lxml, the relay's view) does: the same links with their texts, the same
visible text and words, the same forms and the same problem. A message that view.py hands to
html.py (something may hide that only html.py's walk or the style sheet judges) is equal by
construction; the test still runs it."""

from __future__ import annotations

from pathlib import Path

import pytest

from proxy.message import html as lxmlview
from proxy.message import view as lexview
from proxy.message.mime import Message
from tests.conftest import FIXTURES

ROOT = FIXTURES.parent.parent
FILES = sorted([*FIXTURES.rglob("*.eml"), *(ROOT / "examples").glob("*.eml")])
FIELDS = ("anchors", "visible_text", "tokens", "password_inputs", "forms", "inputs", "form_actions", "problem")


BODIES = [(p, h) for p in FILES if (h := Message.from_bytes(p.read_bytes()).html)]


def test_the_corpus_has_html_bodies() -> None:
    assert len(BODIES) > 50


@pytest.mark.parametrize(("path", "html"), BODIES, ids=[str(p.relative_to(ROOT)) for p, _ in BODIES])
def test_lexbor_view_equals_lxml_view(path: Path, html: str) -> None:
    old, new = lxmlview.extract(html), lexview.extract(html)
    diffs = {f: (getattr(old, f), getattr(new, f)) for f in FIELDS if getattr(old, f) != getattr(new, f)}
    assert not diffs, diffs
