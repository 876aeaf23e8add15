"""The visibility corpus (tests/fixtures/enforcement/visibility/, labels.toml beside it): every way
of hiding a required link is found, every ordinary template that hides something else is left
alone. Prints recall and false positives (run with -s to see them)."""

from __future__ import annotations

import tomllib

import pytest

from tests.conftest import FIXTURES
from tests.policy.checks.judging import rules

FOLDER = FIXTURES / "enforcement" / "visibility"
LABELS: dict[str, list[str] | str] = tomllib.loads((FOLDER / "labels.toml").read_text())["messages"]


def test_every_message_is_labelled_and_every_label_has_its_message() -> None:
    assert {p.name for p in FOLDER.glob("*.eml")} == set(LABELS)


def test_each_of_the_sixteen_hiding_kinds_has_a_message() -> None:
    kinds = {name[4:6] for name in LABELS if name.startswith("hide")}
    assert kinds == {f"{n:02d}" for n in range(1, 17)}


def test_recall_and_false_positives() -> None:
    caught = missed = false_positives = clean = 0
    wrong: list[str] = []
    for name, expected in sorted(LABELS.items()):
        got = rules(FOLDER / name)
        if expected == "clean":
            clean += 1
            if got:
                false_positives += 1
                wrong.append(f"{name}: {got}")
        elif got == sorted(expected):
            caught += 1
        else:
            missed += 1
            wrong.append(f"{name}: {got}, expected {expected}")
    print(f"\nvisibility corpus: recall {caught}/{caught + missed} ({100 * caught / (caught + missed):.0f} %), "
          f"false positives {false_positives}/{clean}")
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("name", sorted(n for n, e in LABELS.items() if e == "clean"))
def test_the_links_of_each_clean_template_are_read(name: str) -> None:
    from tests.policy.checks.judging import message

    hrefs = {link.href for link in message(FOLDER / name).links}
    assert {"https://shop.example.com/unsubscribe?u=7f3a", "https://shop.example.com/privacy"} <= hrefs


@pytest.mark.parametrize(("hidden", "expected"), [
    ("", []),
    ("<style>.c{color:#ffffff}</style>", []),  # the link keeps its own (blue) colour: read
    ("<style>.c, .c a{color:#ffffff}</style>", ["compliance.complaint_address_missing"]),
    ("<style>.c{display:none}</style>", ["compliance.complaint_address_missing"]),
])
def test_a_hidden_complaints_address_does_not_count(hidden: str, expected: list[str]) -> None:
    from tests.policy.checks.judging import policy

    raw = (FOLDER / "clean_grey_footer.eml").read_bytes().replace(
        b"</head>", hidden.encode() + b"</head>").replace(
        b"<p>Example Shop", b'<p class="c">Complaints: <a href="mailto:abuse@example.com">abuse@example.com</a></p><p>Example Shop')
    assert rules(raw, policy({"compliance": {"complaints_address": "abuse@example.com"}})) == expected
