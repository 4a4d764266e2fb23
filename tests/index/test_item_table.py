"""The index's id table: removals against a plain list filter, and every undo from every point an
edit can stop at (the index runs them after a failure: tests/index/test_mol_add_rollback.py)."""

from __future__ import annotations

import random

import pytest

from rag_relax_plugins.index._item_table import ItemTable


def _table(n: int) -> ItemTable:
    return ItemTable([f"d{i}" for i in range(n)], [{"i": i} for i in range(n)])


def _state(table: ItemTable) -> tuple[list[str], list[dict[str, int]], dict[str, int]]:
    return list(table.ids), list(table.metadata), dict(table.rows)


@pytest.mark.parametrize("seed", range(20))
def test_remove_matches_a_list_filter(seed: int) -> None:
    rng = random.Random(seed)
    n = rng.randint(1, 30)
    gone = sorted(rng.sample(range(n), rng.randint(1, n)))
    table = _table(n)
    table.remove(gone)
    want = [f"d{i}" for i in range(n) if i not in gone]
    assert table.ids == want and [m["i"] for m in table.metadata] == [int(i[1:]) for i in want]
    assert table.rows == {i: r for r, i in enumerate(want)}


@pytest.mark.parametrize("after", range(1, 12))
def test_restore_tail_undoes_a_remove_stopped_anywhere(after: int, interrupted_at_write) -> None:  # type: ignore[no-untyped-def]
    table = _table(10)
    before = _state(table)
    table.rows = interrupted_at_write(table.rows, after)
    tail = table.tail(2)
    with pytest.raises(KeyboardInterrupt):
        table.remove([2, 5, 9])  # 3 deletes and 6 renumbered rows: 9 writes, then no interrupt
        raise KeyboardInterrupt  # after the whole remove (after > 9): the undo must still work
    table.rows = dict(table.rows)
    table.restore_tail(2, tail)
    assert _state(table) == before


@pytest.mark.parametrize("after", range(1, 5))
def test_undo_append_undoes_an_append_stopped_anywhere(after: int, interrupted_at_write) -> None:  # type: ignore[no-untyped-def]
    table = _table(5)
    before = _state(table)
    table.rows = interrupted_at_write(table.rows, after)
    with pytest.raises(KeyboardInterrupt):
        table.append(["x", "y", "z"], [{}, {}, {}])
        raise KeyboardInterrupt
    table.rows = dict(table.rows)
    table.undo_append(5, ["x", "y", "z"])
    assert _state(table) == before


def test_set_metadata_with_the_old_dicts_undoes_it() -> None:
    table = _table(4)
    before = _state(table)
    old = [table.metadata[r] for r in (1, 3)]
    table.set_metadata([1, 3], [{"new": 1}, {"new": 3}])
    assert table.metadata[1] == {"new": 1} and table.metadata[3] == {"new": 3}
    table.set_metadata([1, 3], old)
    assert _state(table) == before
