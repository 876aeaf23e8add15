"""The labelled enforcement corpus (tests/fixtures/enforcement/<kind>/, each folder with its
labels file): every message judged by the shipped default policy with example.com listed as
the sender domain, as `sendwarden scan --json` judges the corpus kept outside the repository.

A labels file is labels.toml or labels.json, its `[messages]` table: file name -> the rule
IDs the message must find (each at least once, and no other rule), or "clean" (no finding
at all). Per kind the test
prints recall (messages that find exactly their rules) and false positives (clean messages
with a finding, or a message finding a rule it is not labelled with); it requires 100 %
recall and no false positive.
"""

from __future__ import annotations

import json
import subprocess
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from proxy.commands.scan import read_input
from proxy.message.mime import Message
from proxy.policy.engine import findings
from proxy.policy.registry import Context
from tests.conftest import FIXTURES, SENDWARDEN
from tests.policy.checks.judging import policy

ENFORCEMENT = FIXTURES / "enforcement"
SENDER_POLICY = {"sender": {"domains": ["example.com"]}}
CLEAN = "clean"


def labels(folder: Path) -> dict[str, list[str] | str]:
    """A folder's labels: its `[messages]` table (tests/fixtures/enforcement/README.md), or
    the file's top level."""
    if (folder / "labels.toml").exists():
        data = tomllib.loads((folder / "labels.toml").read_text(encoding="utf-8"))
    else:
        data = json.loads((folder / "labels.json").read_text(encoding="utf-8"))
    table = data.get("messages", data)
    assert isinstance(table, dict)
    return table


def kinds() -> list[Path]:
    return sorted(p for p in ENFORCEMENT.iterdir() if p.is_dir() and ((p / "labels.toml").exists() or (p / "labels.json").exists()))


@dataclass
class Score:
    positives: int = 0
    caught: int = 0
    clean: int = 0
    false_positives: int = 0
    wrong: list[str] = field(default_factory=list)


def judge_kind(folder: Path) -> Score:
    pol = policy(SENDER_POLICY)
    ctx = Context(stream="marketing", marketing=True)
    score = Score()
    for name, label in labels(folder).items():
        found = findings(pol, Message.from_bytes(read_input(str(folder / name))), ctx)  # as `scan` reads it
        rules = sorted({f.rule for f in found})
        if label == CLEAN:
            score.clean += 1
            if rules:
                score.false_positives += 1
                score.wrong.append(f"{name}: clean, but found " + "; ".join(f"{f.rule}: {f.detail}" for f in found))
            continue
        score.positives += 1
        expected = sorted(set(label))
        if rules == expected:
            score.caught += 1
            continue
        if set(expected) <= set(rules):
            score.caught += 1
        extra = sorted(set(rules) - set(expected))
        if extra:
            score.false_positives += 1
        score.wrong.append(f"{name}: expected {expected}, found " + ("; ".join(f"{f.rule}: {f.detail}" for f in found) or "nothing"))
    return score


def test_the_corpus_has_every_kind_and_enough_messages() -> None:
    names = [p.name for p in kinds()]
    assert {"content", "obfuscation", "attachments", "traps"} <= set(names)
    for folder in kinds():
        on_disk = {p.name for p in folder.glob("*.eml")}
        assert on_disk == set(labels(folder)), f"{folder.name}: labels and .eml files differ"
    assert sum(len(labels(f)) for f in kinds()) >= 40


@pytest.mark.parametrize("folder", kinds(), ids=lambda p: p.name)
def test_every_message_is_judged_as_labelled(folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    score = judge_kind(folder)
    recall = 100.0 * score.caught / score.positives if score.positives else 100.0
    with capsys.disabled():
        print(f"\n{folder.name:<14} recall {score.caught}/{score.positives} ({recall:.0f} %), "
              f"false positives {score.false_positives} (of {score.clean} clean)")
    assert not score.wrong, "\n".join(score.wrong)


def test_scan_json_judges_as_the_test_does(tmp_path: Path, cli_env: dict[str, str]) -> None:
    """One message of each kind through `sendwarden scan --json` with a policy file listing
    example.com, as the corpus outside the repository is run."""
    from importlib import resources

    default = resources.files("proxy.policies").joinpath("default.toml").read_text(encoding="utf-8")
    pol = tmp_path / "policy.toml"
    pol.write_text(default.replace("\ndomains = []\n", '\ndomains = ["example.com"]\n', 1), encoding="utf-8")
    assert 'domains = ["example.com"]' in pol.read_text(encoding="utf-8")
    for folder in kinds():
        name, label = next(iter(labels(folder).items()))
        out = subprocess.run([*SENDWARDEN, "scan", "--json", "--policy", str(pol), str(folder / name)],
                             capture_output=True, text=True, env=cli_env, timeout=60)
        doc = json.loads(out.stdout)
        rules = sorted({f["rule"] for f in doc["findings"]})
        assert rules == ([] if label == CLEAN else sorted(set(label))), (folder.name, name, doc)
