"""Every SMTP reply comes from the one catalogue (proxy/replies.py): a reply written anywhere
else in proxy/ (a "553 5.1.7 ..." string, an f-string starting with a code, a `Reply(550, ...)`)
fails here. Docstrings and comments may still quote codes."""

from __future__ import annotations

import ast
import inspect
import re
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.replies import Replies, Reply
from tests.conftest import ROOT

CATALOGUE = ROOT / "proxy" / "replies.py"
REPLY_TEXT = re.compile(r"^[2-5][0-9][0-9][ -]")


def _docstrings(tree: ast.AST) -> set[int]:
    ids = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                ids.add(id(first.value))
    return ids


def literals(path: Path) -> list[str]:
    """Reply literals in one module, as 'line: text'."""
    tree = ast.parse(path.read_text())
    skip = _docstrings(tree)
    skip |= {id(v) for node in ast.walk(tree) if isinstance(node, ast.JoinedStr) for v in node.values}
    found = []
    for node in ast.walk(tree):
        text = None
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in skip:
            text = node.value
        elif isinstance(node, ast.JoinedStr) and node.values and isinstance(node.values[0], ast.Constant):
            text = str(node.values[0].value)
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "Reply"
              and node.args and isinstance(node.args[0], ast.Constant)):
            text = f"Reply({node.args[0].value}, ...)"
        if text is not None and (REPLY_TEXT.match(text) or text.startswith("Reply(")):
            found.append(f"{node.lineno}: {text[:60]}")
    return found


def test_no_reply_literal_outside_the_catalogue() -> None:
    offenders = {
        str(path.relative_to(ROOT)): found
        for path in sorted((ROOT / "proxy").rglob("*.py"))
        if path != CATALOGUE and (found := literals(path))
    }
    assert offenders == {}


def test_the_scan_finds_what_it_looks_for(tmp_path: Path) -> None:
    """The guard itself: each form of literal is caught, a docstring quoting a code is not."""
    sample = tmp_path / "sample.py"
    sample.write_text('"""Answers 451 4.3.0 when the store is down."""\n'
                      'A = "250 2.1.5 Recipient ok"\n'
                      'B = f"553 {code} Sender address refused"\n'
                      'C = Reply(550, "5.7.1", "no")\n')
    assert [line.split(":")[0] for line in literals(sample)] == ["2", "3", "4"]
    assert literals(CATALOGUE)  # the catalogue itself is full of them


def test_the_catalogue_replies_are_well_formed() -> None:
    """Each named reply: a code of a known class, an enhanced code of the same class (RFC 3463),
    printable single-line text."""
    sample = {"list[str]": ["rule.one"], "str": "a reason", "int": 550, "float": 60.0}
    for name, fn in vars(Replies).items():
        if not isinstance(fn, staticmethod):
            continue
        params = inspect.signature(fn.__func__).parameters.values()
        reply = getattr(Replies, name)(*[sample[str(p.annotation)] for p in params])
        assert isinstance(reply, Reply), name
        assert 200 <= reply.code < 600 and reply.text and reply.text.isprintable(), name
        if reply.enhanced:
            assert reply.enhanced[0] == str(reply.code)[0], name


@settings(max_examples=500, deadline=None)
@given(text=st.text(alphabet=st.characters(max_codepoint=0x2100), max_size=500))
def test_clean_keeps_printable_ascii_as_it_is_and_masks_the_rest(text: str) -> None:
    """_clean's shortcut for printable ASCII gives what its per-character rewrite gives."""
    from proxy.replies import _clean

    joined = " ".join(text.split())
    assert _clean(text) == "".join(ch if 32 <= ord(ch) < 127 else "?" for ch in joined)[:400]
