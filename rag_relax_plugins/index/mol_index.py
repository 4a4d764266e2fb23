"""The MoL / RAILS index: cached item state, add / upsert / delete by id, filtered batch search.

RAILS: Ding & Zhai, "Retrieval with Learned Similarities" (WWW 2025, arXiv 2407.15462). The index
runs the item towers of a :class:`~rag_relax_plugins.core.mol.MoLSimilarity` once per item and
caches the component embeddings ``(N, P_x, d_P)`` (fp32 by default, bf16/fp16 optional) and the
item gate logits ``(N, P)``; search never re-runs the item towers. The raw item features
``(N, D_x)`` are kept too (for MMR and for re-encoding after retraining, :meth:`MoLIndex.reencode`).

Filters restrict the searchable ids *before* scoring (forms and semantics in
:mod:`rag_relax_plugins.index.filters`). Strategies: :mod:`rag_relax_plugins.index.strategies`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from rag_relax_plugins.core.device import resolve_device
from rag_relax_plugins.core.modes import eval_mode, module_lock
from rag_relax_plugins.core.mol import MoLItemState, MoLSimilarity
from rag_relax_plugins.core.validation import check_k
from rag_relax_plugins.index._guards import check_encoded, check_float32_module, float32_features
from rag_relax_plugins.index._item_table import ItemTable
from rag_relax_plugins.index._search import SearchContext, search_groups
from rag_relax_plugins.index._storage import ItemStore, encode_item_states
from rag_relax_plugins.index.filters import (
    Filter,
    check_ids,
    check_metadata,
    group_filter,
    ids_matching,
    positions_matching,
)
from rag_relax_plugins.index.first_stage import (
    STAGES,
    FirstStageConfig,
    first_stage_config,
)
from rag_relax_plugins.index.stages import FirstStages
from rag_relax_plugins.index.strategies import BruteForce, Strategy, check_strategy

__all__ = ["Filter", "MoLIndex"]

logger = logging.getLogger(__name__)

_CACHE_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


class MoLIndex:
    """A searchable set of items scored by a MoL similarity.

    Not thread-safe: no search while another thread adds, deletes or re-encodes (it can fail on
    shapes caught mid-update). The LangChain and LlamaIndex stores lock around their index; a
    bare index shared between threads needs the caller's lock.

    Args:
        similarity: the :class:`MoLSimilarity` (moved to ``device`` and put in eval mode here:
            a training loop that builds an index calls ``train()`` again), with float32
            parameters. ``add``, ``search`` and ``reencode`` always run it in eval mode (and
            restore its mode afterwards), so a training loop that shares the module and
            alternates with searches cannot make them random. They switch it under the module's
            lock (:func:`~rag_relax_plugins.core.modes.module_lock`), so searches from several
            threads, or from two indexes or stores over one module, run one at a time and leave
            its mode as it was. Training in another thread while one searches is not safe: train
            a copy of the module. For an
            untrained cosine index use ``MoLSimilarity.cosine(dim)``.
        first_stage: :class:`FirstStageConfig` or a kind (``"torch"``, ``"flat"``, ``"hnsw"``,
            ``"ivf"``) for the approximate strategies' candidate generation.
        cache_dtype: ``"fp32"`` (default), ``"bf16"`` or ``"fp16"`` for cached components.
        device: ``None`` resolves CUDA, then MPS, then CPU.
        exact_filter_threshold: filtered subsets up to this size are scored by brute force.

    Example::

        index = MoLIndex(MoLSimilarity.cosine(384), device="cpu")
        index.add(["a", "b"], torch.randn(2, 384), metadata=[{"lang": "en"}, {"lang": "fr"}])
        scores, ids = index.search(torch.randn(1, 384), k=1, filter={"lang": "fr"})
    """

    def __init__(
        self,
        similarity: MoLSimilarity,
        *,
        first_stage: FirstStageConfig | str = "torch",
        cache_dtype: str = "fp32",
        device: str | torch.device | None = None,
        exact_filter_threshold: int = 20_000,
    ) -> None:
        if not isinstance(similarity, MoLSimilarity):
            raise TypeError(f"similarity must be a MoLSimilarity, got {type(similarity).__name__}")
        first_stage, self.device = self.check_options(first_stage, cache_dtype, device)
        check_float32_module("similarity", similarity)
        self.similarity = similarity.to(self.device).eval()
        self._first_stages = FirstStages(first_stage)
        self.cache_dtype = cache_dtype
        self.exact_filter_threshold = exact_filter_threshold  # checked by the setter
        self._table = ItemTable()
        self._store = ItemStore(similarity.config, _CACHE_DTYPES[cache_dtype], self.device)

    @staticmethod
    def check_options(
        first_stage: FirstStageConfig | str, cache_dtype: str, device: str | torch.device | None
    ) -> tuple[FirstStageConfig, torch.device]:
        """The constructor's checks of its options (the stores run them before they build their
        index at the first add): ``(first-stage config, resolved device)``; a bad option raises
        ``TypeError`` / ``ValueError`` naming it."""
        config = first_stage_config(first_stage)
        if cache_dtype not in _CACHE_DTYPES:
            raise ValueError(f"cache_dtype must be one of {sorted(_CACHE_DTYPES)}, got {cache_dtype!r}")
        return config, resolve_device(device)

    @property
    def exact_filter_threshold(self) -> int:
        """Filtered subsets up to this many items are scored by brute force (an int ``>= 1``;
        checked when set, so that ``save`` can write it and ``search`` compare with it)."""
        return self._exact_filter_threshold

    @exact_filter_threshold.setter
    def exact_filter_threshold(self, value: int) -> None:
        self._exact_filter_threshold = check_k("exact_filter_threshold", value)  # a Python int

    @property
    def first_stage(self) -> FirstStageConfig:
        """The first stages' configuration (search-time knobs: :meth:`configure_first_stage`)."""
        return self._first_stages.config

    # ------------------------------------------------------------------ storage views
    @property
    def _features(self) -> torch.Tensor:
        return self._store.features.data  # (N, D_x) fp32 raw features

    @property
    def _items(self) -> MoLItemState:
        return self._store.state

    def empty_like(self, similarity: MoLSimilarity) -> MoLIndex:
        """A new, empty index over ``similarity`` with this one's settings (first stage, cache
        dtype, device, exact-filter threshold)."""
        return MoLIndex(similarity, first_stage=self.first_stage, cache_dtype=self.cache_dtype,
                        device=self.device, exact_filter_threshold=self.exact_filter_threshold)

    # ------------------------------------------------------------------ inspection
    def __len__(self) -> int:
        return len(self._table)

    def __contains__(self, item_id: object) -> bool:
        return item_id in self._table.rows

    @property
    def ids(self) -> list[str]:
        """All ids, in storage order (a copy)."""
        return list(self._table.ids)

    @property
    def item_state(self) -> MoLItemState:
        """Cached state: components ``(N, P_x, d_P)`` in the cache dtype, gate ``(N, P)``.

        The index's own tensors (no copy), computed under ``torch.inference_mode``: treat them as
        read-only, and ``.clone()`` them before an in-place change or use in autograd, or to keep
        them past an ``add``, ``delete`` or ``reencode`` (which may change them in place).
        """
        return self._items

    def _rows_of(self, name: str, ids: Sequence[str]) -> torch.Tensor:
        ids = check_ids(name, ids, unique=False)
        rows = self._table.rows
        missing = [i for i in ids if i not in rows]
        if missing:
            raise ValueError(f"{name} contains {len(missing)} unknown id(s), e.g. {missing[:5]!r}")
        return torch.tensor([rows[i] for i in ids], dtype=torch.long, device=self.device)

    def get_metadata(self, ids: Sequence[str]) -> list[dict[str, Any]]:
        """Metadata dicts (copies) of ``ids``, in order; unknown ids raise ``ValueError``."""
        return [json.loads(json.dumps(self._table.metadata[int(r)])) for r in self._rows_of("ids", ids)]

    def get_features(self, ids: Sequence[str]) -> torch.Tensor:
        """Raw item features ``(len(ids), D_x) x float32`` of ``ids``, in order."""
        return self._features[self._rows_of("ids", ids)].clone()

    def ids_where(
        self, predicate: Callable[[Mapping[str, Any]], bool] | Mapping[str, Any]
    ) -> list[str]:
        """Ids whose metadata satisfies a predicate or matches every ``key: value`` of a dict.

        Dict values match by JSON equality (:func:`~rag_relax_plugins.index.filters.metadata_matches`):
        booleans match only booleans (``{"flag": True}`` does not match ``1``). A predicate gets
        a read-only mapping of each item's metadata (``MappingProxyType``; nested lists and dicts
        are the stored ones: do not modify them).
        """
        return ids_matching(self._table.ids, self._table.metadata, predicate)

    def _rows_where(self, predicate: Callable[[Mapping[str, Any]], bool] | Mapping[str, Any]) -> torch.Tensor:
        """``(m,) x long`` rows (ascending) whose metadata passes ``predicate`` (:meth:`ids_where`)."""
        return torch.tensor(positions_matching(self._table.metadata, predicate), dtype=torch.long, device=self.device)

    # ------------------------------------------------------------------ mutation
    @torch.inference_mode()
    def add(
        self,
        ids: Sequence[str],
        item_features: torch.Tensor,
        metadata: Sequence[dict[str, Any]] | None = None,
    ) -> None:
        """Insert items, replacing existing ids (upsert).

        Args:
            ids: ``N`` unique string ids.
            item_features: ``(N, D_x) x float`` raw item features.
            metadata: ``N`` JSON-serialisable dicts, or ``None`` (empty dicts).

        Raises:
            ValueError: bad shapes, NaN/inf features, features beyond the float32 range, or
                features whose encoded states are not finite; nothing is added then.
            MemoryError: a cache could not grow; like an interrupt, it undoes the whole add
                (replaced rows restored, no new id kept). A first stage it may have edited is
                dropped and rebuilt at its next use: an IVF stage is retrained then, so the
                approximate strategies' results can differ from before the failed add.
        """
        ids = check_ids("ids", ids, unique=True)
        dim = self.similarity.config.item_dim
        feats = float32_features("item_features", item_features, dim, self.device, rows=len(ids))
        metas = check_metadata(metadata, len(ids))
        if not ids:
            return
        state = self._encode(feats)
        check_encoded("item_features", state.components, state.gate)
        table = self._table
        exists = torch.tensor([i in table.rows for i in ids], device=self.device)
        pos, new = exists.nonzero().squeeze(1), (~exists).nonzero().squeeze(1)
        replaced = [table.rows[ids[p]] for p in pos.tolist()]
        rows = torch.tensor(replaced, dtype=torch.long, device=self.device)
        before, n = self._store.snapshot(rows), len(table)  # to undo a failed add
        old_metadata, new_ids = [table.metadata[r] for r in replaced], [ids[p] for p in new.tolist()]
        stages_edited = False
        try:
            if len(pos):
                self._features[rows] = feats[pos]
                self._items.components[rows] = state.components[pos]
                self._items.gate[rows] = state.gate[pos]
                table.set_metadata(replaced, [metas[p] for p in pos.tolist()])
                stages_edited = True
                self._first_stages.replace(rows, state.components[pos], n)
            if len(new):
                self._store.append(feats[new], state.select(new))  # may fail (memory): undone below
                table.append(new_ids, [metas[p] for p in new.tolist()])
                stages_edited = True
                self._first_stages.append(state.components[new], n)
        except BaseException:  # out of memory, an interrupt: the index is put back as it was
            table.undo_append(n, new_ids)
            table.set_metadata(replaced, old_metadata)
            before.restore(self._store)
            if stages_edited:  # they may hold the new vectors: rebuilt at their next use
                self._first_stages.invalidate()
            raise

    @torch.inference_mode()
    def delete(self, ids: Sequence[str], *, missing_ok: bool = False) -> None:
        """Remove ``ids``; unknown ids raise ``ValueError`` unless ``missing_ok=True``."""
        ids = check_ids("ids", ids, unique=False)
        if not missing_ok:
            self._rows_of("ids", ids)
        table = self._table
        gone_rows = sorted({table.rows[i] for i in ids if i in table.rows})
        if not gone_rows:
            return
        # rows before the first deleted one keep their place: only the tail is renumbered and moved
        first = gone_rows[0]
        kept = torch.ones(len(table), dtype=torch.bool)
        kept[gone_rows] = False
        tail = table.tail(first)  # copies, to undo
        before, stages_edited = self._store.buffers(), False  # the buffers themselves: keep builds new ones
        try:
            self._store.keep(kept.nonzero().squeeze(1).to(self.device), first)  # first: it may fail (memory)
            table.remove(gone_rows)
            stages_edited = True
            self._first_stages.delete(kept.to(self.device))
        except BaseException:  # an interrupt: the index is put back as it was
            self._store.restore_buffers(before)
            table.restore_tail(first, tail)
            if stages_edited:
                self._first_stages.invalidate()
            raise

    @torch.inference_mode()
    def reencode(self) -> None:
        """Re-run the item towers on the stored raw features (after the similarity was retrained).

        Raises:
            ValueError: the retrained similarity is not float32 or gives non-finite states (the
                cache is then left as it was).
        """
        state = self._encode(self._features)
        check_encoded("the stored features", state.components, state.gate)
        self._store.set_state(state)
        self._first_stages.invalidate()

    def _encode(self, feats: torch.Tensor) -> MoLItemState:
        check_float32_module("similarity", self.similarity)
        return encode_item_states(self.similarity, feats, _CACHE_DTYPES[self.cache_dtype])

    # ------------------------------------------------------------------ first stages
    def configure_first_stage(self, **changes: Any) -> None:
        """Change search-time knobs (``hnsw_ef_search``, ``ivf_nprobe``) without rebuilding.

        Build-time fields (``kind``, ``hnsw_m``, ``ivf_nlist``, ...) require a new index.
        """
        self._first_stages.configure(**changes)

    def build(self, stages: Sequence[str] = STAGES) -> None:
        """(Re)build first stages now from the cache: both by default, or ``"per_embd"`` /
        ``"avg"`` (the ``TopKPerEmbd`` and ``TopKAvg`` candidates).

        They are otherwise built at the first search that needs them and kept in step with
        ``add``, upserts and deletes (:mod:`~rag_relax_plugins.index.stages`: a FAISS stage keeps
        replaced and deleted vectors as dead labels until they reach a quarter of the live ones,
        then is rebuilt at its next use). Call this after large additions to an IVF stage: its
        cells were trained on the vectors present at its last build.
        """
        unknown = [s for s in stages if s not in STAGES]
        if isinstance(stages, str) or unknown:
            raise ValueError(f"stages must be a sequence of {STAGES}, got {stages!r}")
        self._first_stages.invalidate(stages)  # the other stage, if built, stays as it is
        if len(self):
            for name in stages:
                self._first_stages.get(name, self._items.components)

    # ------------------------------------------------------------------ search
    def search(
        self,
        query_features: torch.Tensor,
        k: int,
        *,
        strategy: Strategy | None = None,
        filter: Filter = None,
    ) -> tuple[torch.Tensor, list[list[str]]]:
        """Top ``k`` items per query, best first.

        Args:
            query_features: ``(B, D_q) x float``.
            k: results per query (``>= 1``); fewer are returned when fewer items exist or pass
                the filter (see :mod:`rag_relax_plugins.index.filters`).
            strategy: :class:`BruteForce` (default), ``TopKPerEmbd``, ``TopKAvg``, ``Combined``
                or ``ExactTwoPass``.
            filter: see :mod:`rag_relax_plugins.index.filters`; applied before scoring.

        Returns:
            ``(scores (B, K) x float32 on the index device, ids)`` with ``ids[b]`` the ids of
            query ``b`` (length ``K`` unless its filter allowed fewer items; see
            :mod:`rag_relax_plugins.index.strategies` for the padding). The scores are ordinary
            tensors (not inference tensors): in-place ops and autograd work on them.

        Raises:
            ValueError: bad shapes or ``k``, an empty index, NaN/inf queries or queries beyond
                the float32 range, unknown ids in ``filter``.
            TypeError: a malformed ``filter`` or ``strategy``.
        """
        strategy = check_strategy(BruteForce() if strategy is None else strategy)
        check_k("k", k)
        if not len(self):
            raise ValueError("cannot search an empty index: add items first")
        feats = float32_features("query_features", query_features, self.similarity.config.query_dim, self.device)
        b = feats.shape[0]
        if b == 0:
            return torch.empty(0, 0, device=self.device), []
        # the filter is resolved before the module's lock: a callable filter is user code, and one
        # taking an application lock that a thread waiting to search holds would deadlock under it
        groups = group_filter(filter, b, self._rows_of, self._rows_where, self.device)
        with module_lock(self.similarity), torch.inference_mode(), eval_mode(self.similarity):
            scores, ids = self._search(feats, k, strategy, groups)
        return scores.clone(), ids  # cloned outside inference mode: an ordinary tensor

    def _search(
        self, feats: torch.Tensor, k: int, strategy: Strategy, groups: list[tuple[torch.Tensor, torch.Tensor | None]]
    ) -> tuple[torch.Tensor, list[list[str]]]:
        """Search ``(B, D_q)`` checked float32 ``feats`` with the filter resolved into ``groups``."""
        check_float32_module("similarity", self.similarity)
        queries = self.similarity.encode_queries(feats)
        check_encoded("query_features", queries.components, queries.gate)
        comps = self._items.components
        stages = self._first_stages
        ctx = SearchContext(
            self.similarity,
            self._items,
            lambda q, n, allowed: stages.search("per_embd", comps, q, n, allowed),
            lambda q, n, allowed: stages.search("avg", comps, q, n, allowed),
        )
        scores, rows = search_groups(
            ctx, queries, k, strategy, groups, exact_filter_threshold=self.exact_filter_threshold
        )
        item_ids = self._table.ids
        return scores, [[item_ids[r] for r in row] for row in rows]

    # ------------------------------------------------------------------ persistence
    def save(self, folder: str | Path) -> None:
        """Write the index to ``folder`` atomically (see :mod:`rag_relax_plugins.index.persistence`)."""
        from rag_relax_plugins.index.persistence import save_index

        save_index(self, Path(folder))

    @classmethod
    def load(cls, folder: str | Path, *, device: str | torch.device | None = None) -> MoLIndex:
        """Load an index written by :meth:`save` (format version checked)."""
        from rag_relax_plugins.index.persistence import load_index

        return load_index(Path(folder), device=device)
