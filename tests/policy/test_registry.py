"""The options models: what a family compiles at load (its private attributes) reads, through
the registry's fast descriptor, exactly what pydantic stores."""

from __future__ import annotations

import pytest

from proxy.policy.loader import BUILTIN_DEFAULT, load_policy
from proxy.policy.registry import FAMILY_OPTIONS


def test_private_attributes_read_what_pydantic_stores() -> None:
    policy = load_policy(BUILTIN_DEFAULT)
    seen = 0
    for checks in policy.checks.values():
        for _, opts in checks:
            for name in type(opts).__private_attributes__:
                assert getattr(opts, name) is opts.__pydantic_private__[name]
                seen += 1
    assert seen > 10


@pytest.mark.parametrize("family", sorted(FAMILY_OPTIONS))
def test_private_attributes_are_set_per_instance(family: str) -> None:
    model = FAMILY_OPTIONS[family]
    one, two = model(), model()
    for name in model.__private_attributes__:
        assert getattr(one, name) is one.__pydantic_private__[name]
        assert getattr(two, name) is two.__pydantic_private__[name]
    bare = object.__new__(model)  # never initialised: nothing compiled, so nothing to read
    for name in model.__private_attributes__:
        with pytest.raises(AttributeError):
            getattr(bare, name)
