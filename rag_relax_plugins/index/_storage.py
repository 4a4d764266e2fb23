"""Row storage with amortised O(1) appends for the index caches.

Vector stores often add a few items at a time; concatenating the whole cache on every ``add``
would cost O(N) per call (O(N^2) over a corpus). :class:`RowBuffer` keeps a capacity that
grows by half when full and exposes the filled rows as a view. A delete gathers the kept rows
into a buffer with the same room to grow (:meth:`RowBuffer.kept`): an exact-size copy left none,
so the next single ``add`` copied the whole cache again.
"""

from __future__ import annotations

import torch

from rag_relax_plugins.core.modes import eval_mode, module_lock
from rag_relax_plugins.core.mol import MoLConfig, MoLItemState, MoLSimilarity

__all__ = ["ItemStore", "RowBuffer", "StoreSnapshot", "encode_item_states"]

_MIN_CAPACITY = 16
_ENCODE_BATCH = 65536


def _room(n: int) -> int:
    """Capacity for ``n`` rows with room to grow by half."""
    return max(n + (n + 1) // 2, _MIN_CAPACITY)


class RowBuffer:
    """Rows ``(n, *shape)`` stored in a buffer of capacity ``>= n``.

    Args:
        data: the initial rows (kept as the buffer, not copied).
    """

    def __init__(self, data: torch.Tensor) -> None:
        self._buf = data
        self._n = int(data.shape[0])

    @classmethod
    def with_room(cls, data: torch.Tensor) -> RowBuffer:
        """A buffer holding a copy of ``data`` with room to grow (capacity ``1.5 n``, the growth
        :meth:`append` uses), so that the next append does not copy it all again."""
        n = int(data.shape[0])
        out = cls(torch.empty((_room(n), *data.shape[1:]), dtype=data.dtype, device=data.device))
        out._buf[:n] = data
        out._n = n
        return out

    def __len__(self) -> int:
        return self._n

    @property
    def data(self) -> torch.Tensor:
        """The filled rows, a view ``(n, *shape)`` of the buffer (writes go to the buffer)."""
        return self._buf[: self._n]

    def append(self, rows: torch.Tensor) -> None:
        """Append ``(m, *shape)`` rows, growing the buffer geometrically when full."""
        need = self._n + int(rows.shape[0])
        if need > self._buf.shape[0]:
            capacity = max(need, int(1.5 * self._buf.shape[0]), _MIN_CAPACITY)
            grown = torch.empty(
                (capacity, *self._buf.shape[1:]), dtype=self._buf.dtype, device=self._buf.device
            )
            grown[: self._n] = self._buf[: self._n]
            self._buf = grown
        self._buf[self._n : need] = rows.to(self._buf.dtype)
        self._n = need

    def kept(self, rows: torch.Tensor, first: int = 0) -> torch.Tensor:
        """A new buffer holding only ``rows`` (ascending positions; the first ``first`` of them
        are ``0..first-1``), with room to grow: capacity ``1.5 m`` (at most the current one), the
        growth :meth:`append` uses. Install it with :meth:`replace`; ``self`` is not changed.

        Args:
            rows: ``(m,) x long`` positions to keep, ascending, on the buffer's device.
            first: how many leading rows stay where they are (the first deleted position).
        """
        m = int(rows.shape[0])
        capacity = min(self._buf.shape[0], _room(m))
        # one read and one write of each kept row (an in-place gather would copy the tail twice)
        out = torch.empty((capacity, *self._buf.shape[1:]), dtype=self._buf.dtype, device=self._buf.device)
        out[:first] = self._buf[:first]
        torch.index_select(self._buf, 0, rows[first:], out=out[first:m])
        return out

    def state(self) -> tuple[torch.Tensor, int]:
        """``(buffer, filled rows)``: the buffer itself, not a copy (for :meth:`replace`)."""
        return self._buf, self._n

    def truncate(self, n: int) -> None:
        """Drop the rows from ``n`` on (the buffer keeps its capacity); undoes an append."""
        self._n = min(self._n, n)

    def replace(self, data: torch.Tensor, n: int | None = None) -> None:
        """Use ``data`` as the buffer, its first ``n`` rows (default all) filled (e.g. after deleting rows)."""
        self._buf = data
        self._n = int(data.shape[0]) if n is None else n



class ItemStore:
    """The index caches: raw features ``(N, D_x)`` fp32, components ``(N, P_x, d_P)`` in the
    cache dtype and gate logits ``(N, P)`` fp32, each a :class:`RowBuffer`."""

    def __init__(self, config: MoLConfig, cache_dtype: torch.dtype, device: torch.device) -> None:
        c = config
        self.features = RowBuffer(torch.empty(0, c.item_dim, device=device))
        comps = torch.empty(
            0, c.num_item_embeddings, c.component_dim, device=device, dtype=cache_dtype
        )
        self.components = RowBuffer(comps)
        self.gate = RowBuffer(torch.empty(0, c.num_pairs, device=device))

    @property
    def state(self) -> MoLItemState:
        """Views of the cached item state."""
        return MoLItemState(self.components.data, self.gate.data)

    def set_state(self, state: MoLItemState) -> None:
        self.components.replace(state.components)
        self.gate.replace(state.gate)

    def keep(self, rows: torch.Tensor, first: int = 0) -> None:
        """Keep only ``rows`` in every cache (:meth:`RowBuffer.kept`); all three are built before
        any is installed, so a failed allocation leaves the caches as they were."""
        buffers = (self.features, self.components, self.gate)
        new = [buffer.kept(rows, first) for buffer in buffers]
        for buffer, data in zip(buffers, new, strict=True):
            buffer.replace(data, int(rows.shape[0]))

    def append(self, features: torch.Tensor, state: MoLItemState) -> None:
        """Append rows to every cache (one after another: after a failure, a :class:`StoreSnapshot`
        taken before puts the lengths back)."""
        self.features.append(features)
        self.components.append(state.components)
        self.gate.append(state.gate)

    def __len__(self) -> int:
        return len(self.features)

    def snapshot(self, rows: torch.Tensor) -> StoreSnapshot:
        """Copies of ``rows`` of every cache and the row count, to undo a change
        (:meth:`StoreSnapshot.restore`)."""
        return StoreSnapshot(self, rows)

    def buffers(self) -> list[tuple[torch.Tensor, int]]:
        """The caches' current buffers and row counts (references, no copy), for
        :meth:`restore_buffers` after a change that replaced them (a delete: :meth:`keep`)."""
        return [b.state() for b in (self.features, self.components, self.gate)]

    def restore_buffers(self, buffers: list[tuple[torch.Tensor, int]]) -> None:
        """Put back what :meth:`buffers` returned (whichever of the caches were replaced since)."""
        for buffer, (data, n) in zip((self.features, self.components, self.gate), buffers, strict=True):
            buffer.replace(data, n)

    def truncate(self, n: int) -> None:
        """Keep the first ``n`` rows of every cache."""
        for buffer in (self.features, self.components, self.gate):
            buffer.truncate(n)


class StoreSnapshot:
    """Some rows of an :class:`ItemStore` and its length, as they were (see ``snapshot``)."""

    def __init__(self, store: ItemStore, rows: torch.Tensor) -> None:
        self.n, self.rows = len(store), rows
        self.values = [b.data[rows] for b in (store.features, store.components, store.gate)]  # copies

    def restore(self, store: ItemStore) -> None:
        """Drop the rows appended since, and put the copied rows back."""
        store.truncate(self.n)
        for buffer, values in zip((store.features, store.components, store.gate), self.values, strict=True):
            buffer.data[self.rows] = values


def encode_item_states(similarity: MoLSimilarity, feats: torch.Tensor, dtype: torch.dtype) -> MoLItemState:
    """The item towers of ``similarity`` (run in eval mode, ``_ENCODE_BATCH`` rows at a time) over
    ``feats`` ``(N, D_x)``: components ``(N, P_x, d_P)`` in ``dtype``, gate ``(N, P)`` float32."""
    with module_lock(similarity), eval_mode(similarity):  # threads sharing the module: one at a time
        parts = [similarity.encode_items(feats[s : s + _ENCODE_BATCH]) for s in range(0, len(feats), _ENCODE_BATCH)]
    if not parts:
        c = similarity.config
        return MoLItemState(
            torch.empty(0, c.num_item_embeddings, c.component_dim, dtype=dtype, device=feats.device),
            torch.empty(0, c.num_pairs, device=feats.device),
        )
    return MoLItemState(torch.cat([p.components for p in parts]).to(dtype), torch.cat([p.gate for p in parts]))
