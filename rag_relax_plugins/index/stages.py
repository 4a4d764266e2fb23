"""The MoL index's two first stages, kept in step with its cache through adds, upserts and deletes.

A FAISS index numbers its vectors ``0, 1, ...`` in insertion order (its *labels*) and cannot
change or drop a vector cheaply: an HNSW graph cannot drop one at all, and rebuilding an IVF
stage trains k-means again (10.5 s at 100,000 items: benchmarks/bench_mol_updates.py,
2026-12-04, 2-core AMD EPYC). So edits do not rebuild it:

- a stage built over the cache holds, for item row ``r``, the labels ``r * per_item + j`` (its
  ``per_item`` vectors: ``P_x`` components for ``"per_embd"``, one mean for ``"avg"``), the
  identity map, kept implicit (:class:`StageLabels` then holds no tensor);
- ``add`` of new ids appends their vectors (new labels, rows after the last);
- an upsert appends the rows' new vectors and marks their old labels dead (tombstones);
- a delete marks its rows' labels dead and renumbers the rows after them in the map;
- a search passes FAISS the live labels (``IDSelectorBitmap``, intersected with a filter's
  rows) and maps the labels it returns back to item rows.

Dead labels still cost search time (IVF scans them; HNSW walks through them), so a stage whose
dead labels exceed :data:`MAX_DEAD_FRACTION` of its live ones is rebuilt at its next use. A
torch stage is a view of the cache (``"per_embd"``) or a cheap mean (``"avg"``): it is dropped on
any edit and rebuilt for free.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import torch

from rag_relax_plugins.index._storage import RowBuffer
from rag_relax_plugins.index.first_stage import (
    STAGES,
    FaissSearcher,
    FirstStageConfig,
    TorchSearcher,
    VectorSearcher,
    build_searcher,
    ivf_cells,
    stage_vectors,
    vectors_per_item,
)

__all__ = ["MAX_DEAD_FRACTION", "FirstStages", "StageLabels"]

logger = logging.getLogger(__name__)

MAX_DEAD_FRACTION = 0.25
"""A FAISS stage with more dead labels than this fraction of its live ones is rebuilt at its
next use (amortised over the edits that made them: a quarter of the corpus)."""


def _first_labels(rows: torch.Tensor, n_items: int) -> torch.Tensor:
    """``(N,) x long``: the lowest live label of each item row in a label map ``rows`` ``(L,)``
    (``L`` for a row that has none)."""
    live = rows >= 0
    first = torch.full((n_items,), rows.shape[0], dtype=torch.long, device=rows.device)
    return first.scatter_reduce(0, rows[live], live.nonzero().squeeze(1), "amin")


class StageLabels:
    """The item row of each label of a first stage, with tombstones (see the module docstring).

    A row's live labels are always one block of ``per_item`` consecutive labels (its vectors are
    added together), so the map keeps, besides the row of each label, the first label of each
    row: an upsert of ``m`` rows costs O(m), not O(labels). Both are growable buffers
    (:class:`~rag_relax_plugins.index._storage.RowBuffer`): appends are amortised O(1). A delete
    renumbers rows, O(labels), as the cache's own delete is O(N).

    Args:
        per_item: vectors per item row (``P_x`` for ``"per_embd"``, 1 for ``"avg"``).
        total: labels the stage holds, all live, label ``v`` of row ``v // per_item``.
        rows: ``(total,) x long`` item row per label, ``-1`` for a dead one, instead of the
            identity (a saved map, checked by :meth:`check_rows`).
    """

    def __init__(self, per_item: int, total: int, rows: torch.Tensor | None = None) -> None:
        self.per_item = per_item
        self.total = total
        self._rows: RowBuffer | None = None  # None: the identity map
        self._first: RowBuffer | None = None  # (N,) first label of each row's block
        self._live: torch.Tensor | None = None  # cached (L,) live mask
        self.dead = 0
        if rows is not None:
            live = rows >= 0
            self.dead = int((~live).sum())
            n_items = (total - self.dead) // per_item
            self._rows = RowBuffer.with_room(rows)
            self._first = RowBuffer.with_room(_first_labels(rows, n_items))

    @property
    def rows(self) -> torch.Tensor | None:
        """``(L,) x long`` item row of each label (``-1``: dead), or ``None`` for the identity."""
        return None if self._rows is None else self._rows.data

    @property
    def live(self) -> int:
        """Labels that belong to an item (``N * per_item`` when the stage matches the cache)."""
        return self.total - self.dead

    @property
    def stale(self) -> bool:
        """Whether the dead labels make a rebuild worth it (:data:`MAX_DEAD_FRACTION`)."""
        return self.dead > MAX_DEAD_FRACTION * self.live

    def _mapped(self, device: torch.device) -> tuple[RowBuffer, RowBuffer]:
        if self._rows is None or self._first is None:
            n_items = self.total // self.per_item
            self._rows = RowBuffer.with_room(torch.arange(self.total, device=device) // self.per_item)  # (L,)
            self._first = RowBuffer.with_room(torch.arange(n_items, device=device) * self.per_item)  # (N,)
        return self._rows, self._first

    def append(self, start: int, m: int) -> None:
        """Labels for ``m`` new item rows ``start .. start + m - 1`` (vectors appended in row order;
        ``start`` is the number of rows before)."""
        if self._rows is not None and self._first is not None:
            device = self._rows.data.device
            new = torch.arange(start, start + m, device=device)
            self._rows.append(new.repeat_interleave(self.per_item))
            self._first.append(self.total + torch.arange(m, device=device) * self.per_item)
            self._live = None
        self.total += m * self.per_item

    def replace(self, rows: torch.Tensor) -> None:
        """Rows ``(m,) x long`` (distinct) got new vectors, appended in this order: their old
        labels die. O(m)."""
        mapped, first = self._mapped(rows.device)
        offsets = torch.arange(self.per_item, device=rows.device)
        old = (first.data[rows].unsqueeze(1) + offsets).reshape(-1)  # (m * per_item,) their live labels
        mapped.data[old] = -1
        m = int(rows.shape[0])
        first.data[rows] = self.total + torch.arange(m, device=rows.device) * self.per_item
        mapped.append(rows.repeat_interleave(self.per_item))
        self.dead += m * self.per_item
        self.total += m * self.per_item
        self._live = None

    def delete(self, kept: torch.Tensor) -> None:
        """Drop the rows where ``kept`` ``(N,) x bool`` is false; the rest are renumbered in order."""
        mapped, first = self._mapped(kept.device)
        rows = mapped.data
        live = rows >= 0
        safe = rows.clamp_min(0)
        shift = torch.cumsum(~kept, dim=0) - (~kept).long()  # deleted rows before each row
        keep = live & kept[safe]
        rows.copy_(torch.where(keep, safe - shift[safe], torch.full_like(rows, -1)))  # the same labels, renumbered
        kept_rows = kept.nonzero().squeeze(1)
        first.replace(first.kept(kept_rows), int(kept_rows.shape[0]))
        self.dead += int((live & ~keep).sum())
        self._live = None

    def allowed(self, allowed_rows: torch.Tensor | None) -> torch.Tensor | None:
        """The ``(L,) x bool`` labels a search may return, for ``(N,) x bool`` allowed rows or
        ``None`` (all rows); ``None`` when every label may be returned. Without a filter the
        live mask is one tensor until the next edit (a searcher may reuse what it derived from
        it: :meth:`~.first_stage.FaissSearcher.search`)."""
        rows = self.rows
        if rows is None:
            return None if allowed_rows is None else allowed_rows.repeat_interleave(self.per_item)
        if allowed_rows is None:
            if self.dead == 0:
                return None
            if self._live is None:
                self._live = rows >= 0
            return self._live
        return (rows >= 0) & allowed_rows.to(rows.device)[rows.clamp_min(0)]

    def to_rows(self, labels: torch.Tensor) -> torch.Tensor:
        """Item rows of ``labels`` ``(Q, n) x long`` (``-1`` stays ``-1``)."""
        rows = self.rows
        if rows is None:
            return torch.where(labels >= 0, torch.div(labels, self.per_item, rounding_mode="floor"), labels)
        return torch.where(labels >= 0, rows.to(labels.device)[labels.clamp_min(0)], labels)

    @staticmethod
    def check_rows(rows: torch.Tensor, total: int, n_items: int, per_item: int) -> str | None:
        """Why a saved label map cannot belong to a stage of ``total`` labels over ``n_items``
        rows of ``per_item`` vectors, or ``None`` when it can."""
        if rows.dtype != torch.int64 or rows.dim() != 1 or rows.shape[0] != total:
            return f"expected a ({total},) int64 tensor, got {tuple(rows.shape)} {rows.dtype}"
        if bool(((rows < -1) | (rows >= n_items)).any()):
            return f"rows must lie in [-1, {n_items})"
        live = rows >= 0
        counts = torch.bincount(rows[live], minlength=n_items)
        if counts.shape[0] != n_items or bool((counts != per_item).any()):
            return f"every item row must have {per_item} live label(s)"
        first = _first_labels(rows, n_items)
        block = (first.unsqueeze(1) + torch.arange(per_item)).clamp_max(total - 1)  # (N, per_item)
        if n_items and bool((rows[block] != torch.arange(n_items).unsqueeze(1)).any()):
            return "every item row's live labels must be consecutive"
        return None


class FirstStages:
    """The MoL index's two first stages (:data:`~.first_stage.STAGES`) over its cached item
    components, each a searcher and its :class:`StageLabels`.

    Each is built at its first use (:meth:`get`), kept in step on :meth:`append`,
    :meth:`replace` (upsert) and :meth:`delete` (see the module docstring), and dropped by
    :meth:`invalidate` (re-encode, a forced build). A stage whose live labels no longer match
    the cache is rebuilt, never searched; so is one with too many dead labels.

    Args:
        config: the :class:`FirstStageConfig` both stages use.
    """

    def __init__(self, config: FirstStageConfig) -> None:
        self.config = config
        self._stages: dict[str, tuple[VectorSearcher, StageLabels] | None] = dict.fromkeys(STAGES)
        self._outgrown_warned: set[str] = set()

    def invalidate(self, names: Sequence[str] = STAGES) -> None:
        """Drop the stages ``names`` (default both; the next search rebuilds what it needs)."""
        for name in names:
            self._stages[name] = None

    @staticmethod
    def _per_item(name: str, components: torch.Tensor) -> int:
        return vectors_per_item(name, int(components.shape[1]))

    def current(self, name: str, components: torch.Tensor) -> VectorSearcher | None:
        """The stage ``name`` if it is built, matches ``components`` ``(N, P_x, d_P)`` and has
        not too many dead labels, else ``None``."""
        stage = self._stages[name]
        if stage is None:
            return None
        searcher, labels = stage
        expected = int(components.shape[0]) * self._per_item(name, components)
        if labels.live != expected or len(searcher) != labels.total or labels.stale:
            return None
        return searcher

    def get(self, name: str, components: torch.Tensor) -> VectorSearcher:
        """The stage ``name`` over ``components`` ``(N, P_x, d_P)``, built now if needed."""
        searcher = self.current(name, components)
        if searcher is None:
            stale = self._stages[name]
            if stale is not None and stale[1].dead:
                logger.info("rebuilding the %s first stage: %d of its %d vectors are dead (upserts, deletes)",
                            name, stale[1].dead, stale[1].total)
            searcher = build_searcher(self.config, stage_vectors(name, components))
            self._stages[name] = (searcher, StageLabels(self._per_item(name, components), len(searcher)))
            self._outgrown_warned.discard(name)  # a new build: new cells
        return searcher

    def search(
        self,
        name: str,
        components: torch.Tensor,
        queries: torch.Tensor,
        n: int,
        allowed: torch.Tensor | None,
    ) -> torch.Tensor:
        """Item rows of the best ``n`` vectors of stage ``name`` per query.

        Args:
            components: the cached components ``(N, P_x, d_P)`` (the stage is built if needed).
            queries: ``(Q, d_P) x float``.
            n: vectors per query.
            allowed: ``(N,) x bool`` searchable item rows, or ``None`` for all.

        Returns:
            ``(Q, n') x long`` item rows, best vector first, ``-1`` where fewer were found; a row
            can repeat (several of its components hit).
        """
        searcher = self.get(name, components)
        stage = self._stages[name]
        assert stage is not None  # set by get
        labels = stage[1]
        return labels.to_rows(searcher.search(queries, n, labels.allowed(allowed)))

    def _edit(self, what: str, n_before: int, edit: Any) -> None:
        """Apply ``edit(name, searcher, labels)`` to every built FAISS stage that matches the
        ``n_before`` item rows the cache held before the change; a torch, stale or mismatched
        stage is dropped (an edit could make a mismatched one look current). Each stage is out
        of the set from before the first edit until its own succeeded, so a failure or an
        interrupt (``KeyboardInterrupt`` inside a long FAISS add) leaves it and every stage not
        yet edited dropped, to be rebuilt at its next use, never half-edited; the cache, already
        changed, stays consistent."""
        built = {name: stage for name, stage in self._stages.items() if stage is not None}
        self.invalidate()  # all out before any edit: an interrupt inside one leaves none half-edited
        for name, stage in built.items():
            searcher, labels = stage
            if (
                isinstance(searcher, TorchSearcher)  # a view of the cache or a mean of it: rebuilt for free
                or labels.stale  # rebuilt at its next use anyway: editing it would only cost time
                or labels.live != n_before * labels.per_item
                or len(searcher) != labels.total
            ):
                continue
            try:
                edit(name, searcher, labels)
            except Exception as exc:  # e.g. out of memory inside FAISS: rebuild later
                logger.warning("dropped the %s first stage after a failed %s (%s); it is rebuilt at its next use",
                               name, what, exc)
                continue
            self._stages[name] = stage

    def append(self, components: torch.Tensor, start: int) -> None:
        """Extend the built stages with the components ``(m, P_x, d_P)`` of items appended at
        rows ``start .. start + m - 1`` (``start``: the rows before)."""
        def edit(name: str, searcher: VectorSearcher, labels: StageLabels) -> None:
            searcher.add(stage_vectors(name, components))
            labels.append(start, int(components.shape[0]))
            if isinstance(searcher, FaissSearcher):
                self._warn_if_outgrown(name, searcher, labels)

        self._edit("add", start, edit)

    def replace(self, rows: torch.Tensor, components: torch.Tensor, n_items: int) -> None:
        """Item ``rows`` ``(m,) x long`` (distinct) of the ``n_items`` now hold ``components``
        ``(m, P_x, d_P)``."""
        def edit(name: str, searcher: VectorSearcher, labels: StageLabels) -> None:
            searcher.add(stage_vectors(name, components))
            labels.replace(rows)

        self._edit("upsert", n_items, edit)

    def delete(self, kept: torch.Tensor) -> None:
        """Item rows where ``kept`` ``(N,) x bool`` is false were deleted; the rest moved up."""
        self._edit("delete", int(kept.shape[0]), lambda name, searcher, labels: labels.delete(kept))

    def _warn_if_outgrown(self, name: str, searcher: FaissSearcher, labels: StageLabels) -> None:
        """Warn once when an IVF stage holds 4x the vectors its cells were trained for: adds go to
        the trained cells, which fill up (searches slow down; ``build()`` retrains)."""
        if self.config.kind != "ivf" or name in self._outgrown_warned:
            return
        if labels.live >= 4 * max(searcher.built_on, 1):
            self._outgrown_warned.add(name)
            logger.warning(
                "the IVF first stage %r was trained with %d cells on %d vectors and now holds %d: each "
                "searched cell holds more and more vectors (a build would use %d cells). MoLIndex.build() "
                "retrains it", name, int(searcher.index.nlist), searcher.built_on, labels.live,
                ivf_cells(self.config, labels.live),
            )

    def configure(self, **changes: Any) -> FirstStageConfig:
        """Change search-time knobs (``hnsw_ef_search``, ``ivf_nprobe``) of both stages in place.

        Raises:
            ValueError: any other field (those shape a build: make a new index).
        """
        allowed = {"hnsw_ef_search", "ivf_nprobe"}
        unknown = sorted(set(changes) - allowed)
        if unknown:
            raise ValueError(f"only {sorted(allowed)} can change after construction, got {unknown}")
        self.config = replace(self.config, **changes)
        for stage in self._stages.values():
            if stage is not None and isinstance(stage[0], FaissSearcher):
                stage[0].config = self.config
        return self.config

    def faiss_files(self, components: torch.Tensor) -> dict[str, tuple[FaissSearcher, torch.Tensor | None]]:
        """The built FAISS stages that match ``components`` (what a save writes), by name, each
        with its label map ``(L,) x long`` or ``None`` for the identity."""
        out = {}
        for name in STAGES:
            searcher = self.current(name, components)
            stage = self._stages[name]
            if isinstance(searcher, FaissSearcher) and stage is not None:
                out[name] = (searcher, stage[1].rows)
        return out

    def restore(self, name: str, searcher: FaissSearcher, p_x: int, rows: torch.Tensor | None = None) -> None:
        """Install a stage read from a save, with its checked label map (``None``: the identity);
        it is checked against the cache again at its first use (an unknown ``name`` raises
        ``ValueError``)."""
        self._stages[name] = (searcher, StageLabels(vectors_per_item(name, p_x), len(searcher), rows))
        self._outgrown_warned.discard(name)
