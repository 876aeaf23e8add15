"""Every message of CPython's own email test data goes through `sendwarden scan`: each gets a
verdict (exit 0, 2 or 3 with the JSON document), none crashes, no check fails.

The messages are committed under tests/fixtures/cpython_email/ (from CPython 3.11.7); when
the interpreter ships its test package, its copy is scanned too, so a newer Python's new
messages are covered as well.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from proxy.cli import main
from tests.conftest import FIXTURES

COMMITTED = sorted((FIXTURES / "cpython_email").glob("msg_*.txt"))


def _stdlib_messages() -> list[Path]:
    try:
        import test.test_email  # type: ignore[import-not-found]
    except ImportError:
        return []
    data = Path(test.test_email.__file__).parent / "data"
    committed = {p.name: p.read_bytes() for p in COMMITTED}
    return [p for p in sorted(data.glob("msg_*.txt")) if committed.get(p.name) != p.read_bytes()]


MESSAGES = COMMITTED + _stdlib_messages()


def test_the_corpus_is_there() -> None:
    assert len(COMMITTED) >= 47


@pytest.mark.parametrize("path", MESSAGES, ids=lambda p: f"{p.parent.parent.name}/{p.name}")
def test_scan_gives_a_verdict(path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status = main(["scan", "--json", str(path)])
    out = capsys.readouterr()
    assert status in (0, 2, 3), out.err
    doc = json.loads(out.out)
    assert doc["action"] in ("relay", "quarantine", "reject")
    assert {"rule", "action", "detail"} <= set(doc["findings"][0]) if doc["findings"] else True
    assert "check.error" not in {f["rule"] for f in doc["findings"]}, doc["findings"]
