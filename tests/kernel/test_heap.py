"""`inferq.heap.freeze_startup_heap`: garbage is collected first, and what is alive then is
out of later collections' sight (frozen), until this test gives it back."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from inferq.heap import freeze_startup_heap


class Node:
    def __init__(self) -> None:
        self.other: Node | None = None


@pytest.fixture
def thawed() -> Iterator[None]:
    yield
    gc.unfreeze()  # this test process is no serving process: give its heap back


def test_garbage_is_collected_then_the_rest_is_frozen(thawed: None) -> None:
    cycle_a, cycle_b = Node(), Node()
    cycle_a.other, cycle_b.other = cycle_b, cycle_a  # only the collector frees a cycle
    garbage = weakref.ref(cycle_a)
    del cycle_a, cycle_b
    kept = Node()

    freeze_startup_heap()

    assert garbage() is None  # collected, not frozen forever
    assert gc.get_freeze_count() > 0
    assert all(kept is not obj for obj in gc.get_objects())  # frozen: no generation holds it
