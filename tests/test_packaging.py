"""The package ships everything: pyproject's explicit package list is complete, and the policy
files travel inside it (the embedded default must work from any install)."""

from __future__ import annotations

import tomllib
from importlib import resources

from tests.conftest import ROOT


def test_every_package_directory_is_listed() -> None:
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {
        ".".join(p.parent.relative_to(ROOT).parts)
        for p in (ROOT / "proxy").rglob("__init__.py")
        if "__pycache__" not in p.parts
    }
    assert found | {"proxy.policies"} == listed


def test_default_policy_ships_in_the_package() -> None:
    text = resources.files("proxy.policies").joinpath("default.toml").read_text(encoding="utf-8")
    assert text == (ROOT / "policies" / "default.toml").read_text(encoding="utf-8")
