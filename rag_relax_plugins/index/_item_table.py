"""The index's id table: its ids in storage order, the row of each id and each row's metadata.

Row ``r`` of the table is row ``r`` of the caches (:class:`~rag_relax_plugins.index._storage.ItemStore`).
Each change has an undo that :class:`~rag_relax_plugins.index.mol_index.MoLIndex` runs when an
edit fails part-way (out of memory, an interrupt between two statements): the table is then as it
was before the edit, whatever step the failure came at.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = ["ItemTable"]


class ItemTable:
    """Ids (storage order), ``id -> row`` and per-row metadata dicts."""

    def __init__(self, ids: Sequence[str] = (), metadata: Sequence[dict[str, Any]] = ()) -> None:
        self.ids: list[str] = list(ids)
        self.metadata: list[dict[str, Any]] = list(metadata)
        self.rows: dict[str, int] = {i: r for r, i in enumerate(self.ids)}

    def __len__(self) -> int:
        return len(self.ids)

    def append(self, ids: Sequence[str], metadata: Sequence[dict[str, Any]]) -> None:
        """Register new ``ids`` (none of them in the table) at the end, with their metadata."""
        n = len(self.ids)
        for j, (item_id, meta) in enumerate(zip(ids, metadata, strict=True)):
            self.rows[item_id] = n + j
            self.ids.append(item_id)
            self.metadata.append(meta)

    def undo_append(self, n: int, ids: Sequence[str]) -> None:
        """Undo an :meth:`append` of ``ids`` to a table of ``n`` rows, however far it got."""
        for item_id in ids:
            self.rows.pop(item_id, None)
        del self.ids[n:], self.metadata[n:]

    def set_metadata(self, rows: Sequence[int], metadata: Sequence[dict[str, Any]]) -> None:
        """Replace the metadata of ``rows`` (undo: the same call with the old dicts)."""
        for r, meta in zip(rows, metadata, strict=True):
            self.metadata[r] = meta

    def tail(self, first: int) -> tuple[list[str], list[dict[str, Any]]]:
        """Copies of the ids and metadata lists from row ``first`` on, for :meth:`restore_tail`."""
        return self.ids[first:], self.metadata[first:]

    def remove(self, gone_rows: Sequence[int]) -> None:
        """Drop ``gone_rows`` (ascending, unique); the rows after the first of them move up."""
        first, gone = gone_rows[0], set(gone_rows)
        kept = [r for r in range(first, len(self.ids)) if r not in gone]
        for r in gone_rows:
            del self.rows[self.ids[r]]
        self.ids[first:] = [self.ids[r] for r in kept]
        self.metadata[first:] = [self.metadata[r] for r in kept]
        for r in range(first, len(self.ids)):
            self.rows[self.ids[r]] = r

    def restore_tail(self, first: int, tail: tuple[list[str], list[dict[str, Any]]]) -> None:
        """Put back what :meth:`tail` copied (undoes a :meth:`remove` whose first row was ``first``,
        however far it got: the removed ids are registered again)."""
        ids, metadata = tail
        self.ids[first:], self.metadata[first:] = ids, metadata
        self.rows.update(zip(ids, range(first, first + len(ids)), strict=True))  # one C call: no interrupt inside
