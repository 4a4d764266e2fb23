"""Stateful regression test: random sequences of add (upserts and refused duplicate batches),
delete (refused unknown ids, ``missing_ok``), search (every strategy, every filter form, batched
and one query at a time), save / load, build, reencode and ``empty_like`` on a :class:`MoLIndex`
checked against a reference model: a plain dict of ``id -> (features, metadata)`` scored by brute
force through the same MoL head (components rounded to the cache dtype).

Checked after every step: the index holds exactly the reference's ids, metadata and raw features.
Checked on every search: ids unique, live and allowed by the filter; scores finite, sorted, equal
to the reference scores, ``-inf`` padding after the hits; with an exact strategy (or a first stage
that is exact) ``min(k, allowed)`` hits and no allowed item better than the last hit; a batch equals
its queries searched one by one; a loaded index (and the index it was saved from, kept as a twin
and edited alongside it) answers identically.

Two machines: a small one (14 ids, all first stages) and a large one (80 ids, faiss first stages,
up to 60 items), each with a fast default budget and a long ``slow`` budget.
"""

from __future__ import annotations

import math
import shutil
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pytest
import torch
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from rag_relax_plugins.core.mol import MoLConfig, MoLItemState, MoLSimilarity
from rag_relax_plugins.index import (
    BruteForce,
    Combined,
    ExactTwoPass,
    Filter,
    FirstStageConfig,
    MoLIndex,
    Strategy,
    TopKAvg,
    TopKPerEmbd,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")

DQ, DX = 6, 5
TOL = 2e-3  # absolute score tolerance, relative above 1 (a small tau magnifies rounding)
CACHE_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
EXACT_STRATEGIES = ("bf", "exact", "exact_s")  # exact whatever the first stage
EXACT_WITH_EXACT_STAGE = ("avg", "per", "comb")  # candidate pools that cover every item

Item = tuple[str, list[float], dict[str, Any]]
Kind = Literal["torch", "flat", "hnsw", "ivf"]
features = (
    st.lists(st.integers(-8, 8), min_size=DX, max_size=DX)
    .map(lambda v: [x / 4 for x in v])
    .filter(any)
)
queries = st.lists(st.integers(-8, 8), min_size=DQ, max_size=DQ).map(lambda v: [x / 4 for x in v])
metadata = st.fixed_dictionaries({"c": st.integers(0, 2), "flag": st.booleans()})


@dataclass(frozen=True)
class Shape:
    """Sizes of one machine: id pool, first stages, item embeddings and batch sizes."""

    n_ids: int
    kinds: tuple[Kind, ...]
    px: tuple[int, int]  # item embeddings P_x, min and max
    first_batch: tuple[int, int]  # items added by the setup, min and max
    add_max: int
    delete_max: int


SMALL = Shape(n_ids=14, kinds=("torch", "flat", "hnsw", "ivf"), px=(1, 3), first_batch=(3, 12),
              add_max=5, delete_max=4)
LARGE = Shape(n_ids=80, kinds=("flat", "hnsw", "ivf"), px=(2, 4), first_batch=(20, 60),
              add_max=25, delete_max=15)


def head(pq: int, px: int, seed: int) -> MoLSimilarity:
    torch.manual_seed(seed)
    config = MoLConfig(query_dim=DQ, item_dim=DX, num_query_embeddings=pq, num_item_embeddings=px,
                       component_dim=4, tau=0.2, gate_hidden_dim=8)
    return MoLSimilarity(config).eval()


def strategy_named(name: str, n: int, px: int, small: int) -> Strategy:
    """``name`` sized to cover all ``n`` items (``avg``, ``per``, ``comb``), or ``small``
    (the ``_s`` variants); ``bf`` and ``exact`` are exact at any size."""
    pool = max(n * px, 1) + 5
    named: dict[str, Strategy] = {
        "bf": BruteForce(), "avg": TopKAvg(n + 5), "per": TopKPerEmbd(pool),
        "comb": Combined(pool, n + 5), "exact": ExactTwoPass(100_000),
        "avg_s": TopKAvg(small), "per_s": TopKPerEmbd(small), "comb_s": Combined(small, small),
        "exact_s": ExactTwoPass(small),
    }
    return named[name]


def index_machine(shape: Shape) -> type[RuleBasedStateMachine]:
    """A state machine over ids ``i0 .. i{n_ids - 1}`` with the sizes of ``shape``."""
    ids = [f"i{j}" for j in range(shape.n_ids)]
    items = st.tuples(st.sampled_from(ids), features, metadata)

    class IndexMachine(RuleBasedStateMachine):
        index: MoLIndex
        twin: MoLIndex | None  # the index the current one was loaded from, edited alongside
        cache_dtype: str
        kind: str
        px: int
        model: dict[str, tuple[list[float], dict[str, Any]]]

        def __init__(self) -> None:
            super().__init__()
            self.folder = Path(tempfile.mkdtemp(prefix="mol-index-stateful-"))
            self.saves = 0

        def teardown(self) -> None:
            shutil.rmtree(self.folder, ignore_errors=True)

        @initialize(kind=st.sampled_from(shape.kinds), cache_dtype=st.sampled_from(sorted(CACHE_DTYPES)),
                    pq=st.integers(1, 3), px=st.integers(*shape.px), seed=st.integers(0, 3),
                    threshold=st.sampled_from([1, 3, 20_000]),
                    batch=st.lists(items, min_size=shape.first_batch[0], max_size=shape.first_batch[1],
                                   unique_by=lambda t: t[0]))
        def setup(self, kind: Kind, cache_dtype: str, pq: int, px: int, seed: int, threshold: int,
                  batch: list[Item]) -> None:
            self.kind, self.cache_dtype, self.px = kind, cache_dtype, px
            self.index = MoLIndex(head(pq, px, seed), first_stage=FirstStageConfig(kind=kind),
                                  cache_dtype=cache_dtype, device="cpu", exact_filter_threshold=threshold)
            self.twin = None
            self.model = {}
            self.add(batch)

        # ------------------------------------------------------------ reference
        def ref_scores(self, q: torch.Tensor, keys: list[str]) -> torch.Tensor:
            """``(1, len(keys))`` brute-force scores of the reference's items ``keys``."""
            sim = self.index.similarity
            feats = torch.tensor([self.model[i][0] for i in keys], dtype=torch.float32)
            with torch.no_grad():
                state = sim.encode_items(feats)
                cached = MoLItemState(state.components.to(CACHE_DTYPES[self.cache_dtype]), state.gate)
                return sim.score_all(sim.encode_queries(q), cached)

        def allowed_of(self, flt: Filter, b: int) -> list[list[str]]:
            """Live ids each of the ``b`` queries may return under ``flt``."""
            live = list(self.model)
            if flt is None:
                return [live] * b
            if isinstance(flt, Mapping):  # JSON equality: a bool matches only a bool
                return [[i for i in live if all(
                    self.model[i][1].get(key) == v and type(self.model[i][1].get(key)) is type(v)
                    for key, v in flt.items())]] * b
            if callable(flt):
                return [[i for i in live if flt(self.model[i][1])]] * b
            if flt and isinstance(flt[0], list):
                return [[i for i in live if i in f] for f in flt]
            return [[i for i in live if i in flt]] * b

        def check_result(self, q: torch.Tensor, k: int, scores: torch.Tensor, found: list[list[str]],
                         allowed: list[list[str]], exact: bool, label: object) -> None:
            b = q.shape[0]
            assert len(found) == b and scores.shape[0] == b, label
            for r in range(b):
                al, row = allowed[r], found[r]
                assert len(row) == len(set(row)), (label, "duplicate", row)
                assert set(row) <= set(al), (label, "not allowed or not live", row, al)
                sc = scores[r, : len(row)].tolist()
                assert all(math.isfinite(s) for s in sc), (label, sc)
                assert all(sc[j] >= sc[j + 1] for j in range(len(sc) - 1)), (label, "unsorted", sc)
                assert all(p == float("-inf") for p in scores[r, len(row):].tolist()), (label, "padding")
                if not al:
                    assert row == [], label
                    continue
                ref = dict(zip(al, self.ref_scores(q[r : r + 1], al)[0].tolist(), strict=True))
                for i, s in zip(row, sc, strict=True):
                    assert abs(ref[i] - s) <= TOL * max(1, abs(s)), (label, "score", i, s, ref[i])
                if exact:
                    assert len(row) == min(k, len(al)), (label, "count", len(row), k, len(al))
                    rest = [ref[i] for i in al if i not in row]
                    if rest and row:
                        assert sc[-1] >= max(rest) - TOL * max(1, abs(sc[-1])), (label, "missed", sc, rest)

        def both(self, edit: Callable[[MoLIndex], None]) -> None:
            edit(self.index)
            if self.twin is not None:
                edit(self.twin)

        # ------------------------------------------------------------ rules
        @rule(batch=st.lists(items, min_size=1, max_size=shape.add_max))
        def add(self, batch: list[Item]) -> None:
            new_ids = [b[0] for b in batch]
            feats = torch.tensor([b[1] for b in batch], dtype=torch.float32)
            metas = [b[2] for b in batch]
            if len(set(new_ids)) != len(new_ids):
                before = (self.index.ids, len(self.index))
                with pytest.raises(ValueError):
                    self.index.add(new_ids, feats, metas)
                assert (self.index.ids, len(self.index)) == before
                return
            self.both(lambda index: index.add(new_ids, feats, metas))
            for i, f, m in batch:
                self.model[i] = (f, m)

        @rule(gone=st.lists(st.sampled_from(ids), max_size=shape.delete_max), missing_ok=st.booleans())
        def delete(self, gone: list[str], missing_ok: bool) -> None:
            if not missing_ok and any(i not in self.model for i in gone):
                before = self.index.ids
                with pytest.raises(ValueError):
                    self.index.delete(gone)
                assert self.index.ids == before
                return
            self.both(lambda index: index.delete(gone, missing_ok=missing_ok))
            for i in gone:
                self.model.pop(i, None)

        @precondition(lambda self: len(self.model) > 0)
        @rule(qs=st.lists(queries, min_size=1, max_size=3), k=st.integers(1, 20),
              name=st.sampled_from(["bf", "avg", "per", "comb", "exact", "avg_s", "per_s", "comb_s", "exact_s"]),
              fkind=st.sampled_from(["none", "ids", "perq", "dict", "call"]),
              fids=st.lists(st.sampled_from(ids), min_size=1, max_size=6), c=st.integers(0, 2),
              small=st.integers(1, 3))
        def search(self, qs: list[list[float]], k: int, name: str, fkind: str, fids: list[str], c: int,
                   small: int) -> None:
            strategy = strategy_named(name, len(self.model), self.px, small)
            q = torch.tensor(qs, dtype=torch.float32)
            b = q.shape[0]
            live = [i for i in fids if i in self.model] or [next(iter(self.model))]
            per_query = [live[: (j % len(live)) + 1] for j in range(b)]
            flt: Filter = {
                "none": None, "ids": live, "dict": {"c": c}, "call": (lambda m, c=c: m["c"] != c),
                "perq": per_query,
            }[fkind]
            allowed = self.allowed_of(flt, b)
            scores, found = self.index.search(q, k, strategy=strategy, filter=flt)
            if self.twin is not None:
                twin_scores, twin_found = self.twin.search(q, k, strategy=strategy, filter=flt)
                assert twin_found == found, ("twin ids differ", name, fkind, twin_found, found)
                assert torch.equal(twin_scores, scores), ("twin scores differ", name, twin_scores, scores)
            exact_stage = self.kind in ("torch", "flat")
            exact = name in EXACT_STRATEGIES or (name in EXACT_WITH_EXACT_STAGE and exact_stage)
            self.check_result(q, k, scores, found, allowed, exact, (name, fkind, k))
            if exact_stage:  # every strategy returns min(k, allowed), padded to the widest row
                assert scores.shape[1] == min(k, max(len(a) for a in allowed)), (scores.shape, k, allowed)
                for r in range(b):
                    assert len(found[r]) == min(k, len(allowed[r])), (name, fkind, k, found[r], allowed[r])
            if b > 1:  # a batch equals its queries one by one
                for r in range(b):
                    one_filter = [per_query[r]] if fkind == "perq" else flt
                    s1, i1 = self.index.search(q[r : r + 1], k, strategy=strategy, filter=one_filter)
                    if exact:
                        assert len(i1[0]) == len(found[r])
                        assert torch.allclose(s1[0, : len(i1[0])], scores[r, : len(found[r])], atol=1e-3), (
                            s1, scores[r])

        search_again = search  # searches are drawn three times as often as the other rules
        search_once_more = search

        @precondition(lambda self: len(self.model) > 0)
        @rule(q=queries, k=st.integers(1, 20))
        def save_load(self, q: list[float], k: int) -> None:
            qt = torch.tensor([q], dtype=torch.float32)
            strategies: list[Strategy] = [BruteForce(), TopKAvg(3), TopKPerEmbd(3), ExactTwoPass(4)]
            before = [self.index.search(qt, k, strategy=s) for s in strategies]
            path = self.folder / f"save{self.saves % 2}"
            self.saves += 1
            self.index.save(path)
            loaded = MoLIndex.load(path, device="cpu")
            after = [loaded.search(qt, k, strategy=s) for s in strategies]
            for (s0, i0), (s1, i1), s in zip(before, after, strategies, strict=True):
                assert i0 == i1, (s, i0, i1)
                assert torch.equal(s0, s1), (s, s0, s1)
            assert loaded.ids == self.index.ids
            assert loaded.get_metadata(loaded.ids) == self.index.get_metadata(self.index.ids)
            assert loaded.cache_dtype == self.index.cache_dtype
            assert loaded.exact_filter_threshold == self.index.exact_filter_threshold
            assert loaded.first_stage == self.index.first_stage
            self.twin, self.index = self.index, loaded

        @rule(stages=st.sampled_from([("avg",), ("per_embd",), ("avg", "per_embd")]))
        def build(self, stages: tuple[str, ...]) -> None:
            self.index.build(list(stages))

        @rule(scale=st.sampled_from([0.5, 1.5]))
        def reencode(self, scale: float) -> None:
            heads = {id(ix.similarity): ix.similarity for ix in (self.index, self.twin) if ix is not None}
            with torch.no_grad():
                for sim in heads.values():
                    for p in sim.parameters():
                        p.mul_(scale)
            self.both(lambda index: index.reencode())

        @rule()
        def empty_like(self) -> None:
            empty = self.index.empty_like(self.index.similarity)
            assert len(empty) == 0 and empty.ids == []
            assert empty.cache_dtype == self.index.cache_dtype
            assert empty.first_stage == self.index.first_stage
            assert empty.exact_filter_threshold == self.index.exact_filter_threshold

        @invariant()
        def same_content(self) -> None:
            if not hasattr(self, "index"):
                return
            assert sorted(self.index.ids) == sorted(self.model), (self.index.ids, list(self.model))
            assert len(self.index) == len(self.model)
            if self.model:
                keys = sorted(self.model)
                assert self.index.get_metadata(keys) == [self.model[i][1] for i in keys]
                want = torch.tensor([self.model[i][0] for i in keys], dtype=torch.float32)
                assert torch.equal(self.index.get_features(keys), want)
            for i in ids:
                assert (i in self.index) == (i in self.model)

    return IndexMachine


SmallIndexMachine = index_machine(SMALL)
LargeIndexMachine = index_machine(LARGE)


def budget(examples: int, steps: int, *, derandomize: bool) -> settings:
    return settings(max_examples=examples, stateful_step_count=steps, deadline=None, database=None,
                    derandomize=derandomize, suppress_health_check=[HealthCheck.too_slow])


def test_small_index_matches_reference() -> None:
    run_state_machine_as_test(SmallIndexMachine, settings=budget(15, 20, derandomize=True))


def test_large_index_matches_reference() -> None:
    run_state_machine_as_test(LargeIndexMachine, settings=budget(10, 20, derandomize=True))


@pytest.mark.slow
def test_small_index_matches_reference_long() -> None:
    run_state_machine_as_test(SmallIndexMachine, settings=budget(150, 30, derandomize=False))


@pytest.mark.slow
def test_large_index_matches_reference_long() -> None:
    run_state_machine_as_test(LargeIndexMachine, settings=budget(150, 30, derandomize=False))
