"""freeze_heap (proxy/runtime/service.py): what is loaded at start is kept out of the collector's
sight, and what a reload replaced can still be collected."""

from __future__ import annotations

import gc
import weakref

from proxy.runtime.service import freeze_heap


class Node:
    def __init__(self) -> None:
        self.me = self  # a cycle: only the collector can free it


def test_frozen_at_start_and_collectable_after_a_reload() -> None:
    old_policy = Node()
    gone = weakref.ref(old_policy)
    try:
        freeze_heap()  # start: the policy is frozen
        assert gc.get_freeze_count() > 0
        del old_policy
        gc.collect()
        assert gone() is not None  # frozen: a full collection does not even look at it
        freeze_heap()  # a reload replaced it: unfrozen, collected, the rest frozen again
        assert gone() is None
        young = weakref.ref(Node())
        gc.collect()
        assert young() is None  # objects made after the freeze are collected as ever
    finally:
        gc.unfreeze()
