"""Stateful regression test: random sequences of add_texts / add_documents (given, generated and
empty ids, batch sizes), delete (sync and async, by id or all), get_by_ids, similarity search (sync,
async, by vector; dict, nested-list and callable filters), relevance scores, MMR and save / load on
the LangChain :class:`MoLVectorStore` (cosine and MoL heads, fp32 and bf16 caches) checked against
a reference model: a plain dict of ``id -> (text, metadata)`` scored by brute force (cosine, or the
same MoL head over the components rounded to the cache dtype).

Checked after every step: the store holds exactly the reference's documents (ids, texts,
metadata), and its index exactly the reference's ids. Checked on every search: ``min(k, allowed)``
unique allowed hits with the stored text and metadata, sorted scores equal to the reference's, no
allowed document better than the last hit; the same hits by vector and async; relevance scores
``clamp((1 + tau * s) / 2)`` in ``[0, 1]``. MMR picks are the reference's greedy MMR picks among
the ``fetch_k`` best (the first is the best hit; ``lambda_mult=1`` is plain relevance). A loaded
store answers exactly like the saved one.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from _lc_helpers import DIM, HashingEmbeddings
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)
from langchain_core.documents import Document

from rag_relax_plugins.core.mol import MoLConfig, MoLItemState, MoLSimilarity
from rag_relax_plugins.index import ExactTwoPass, Strategy, TopKAvg, TopKPerEmbd
from rag_relax_plugins.langchain import MoLVectorStore

pytestmark = pytest.mark.usefixtures("one_torch_thread")

WORDS = ["cat", "dog", "fish", "bird", "sun", "rain"]
IDS = [f"d{j}" for j in range(10)]
MOL_TAU = 0.1
TOL = 1e-3  # absolute score tolerance, relative above 1

Meta = dict[str, Any]
DocFilter = Meta | Callable[[Document], bool] | None
texts = st.lists(st.sampled_from(WORDS), min_size=1, max_size=3).map(" ".join)
metadata = st.fixed_dictionaries(
    {"c": st.integers(0, 2)}, optional={"tags": st.lists(st.integers(0, 2), max_size=2)}
)
maybe_id = st.one_of(st.sampled_from(IDS), st.sampled_from(IDS), st.none(), st.just(""))  # ids twice as often


def close(a: float, b: float) -> bool:
    return abs(a - b) <= TOL * max(1, abs(b))


class StoreMachine(RuleBasedStateMachine):
    store: MoLVectorStore
    sim: MoLSimilarity | None  # None: the cosine head
    cache_dtype: str
    strategy: Strategy | None
    model: dict[str, tuple[str, Meta]]

    def __init__(self) -> None:
        super().__init__()
        self.folder = Path(tempfile.mkdtemp(prefix="mol-lc-stateful-"))
        self.saves = 0
        self.emb = HashingEmbeddings()

    def teardown(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)

    @initialize(head=st.sampled_from(["cos", "mol"]), seed=st.integers(0, 3),
                cache_dtype=st.sampled_from(["fp32", "bf16"]),
                strategy=st.sampled_from([None, "avg", "exact", "per"]),
                first_stage=st.sampled_from(["torch", "flat"]))
    def setup(self, head: str, seed: int, cache_dtype: str, strategy: str | None, first_stage: str) -> None:
        self.strategy = {None: None, "avg": TopKAvg(100), "exact": ExactTwoPass(3),
                         "per": TopKPerEmbd(100)}[strategy]
        self.sim = None
        if head == "mol":
            torch.manual_seed(seed)
            self.sim = MoLSimilarity(MoLConfig(query_dim=DIM, item_dim=DIM, num_query_embeddings=2,
                                               num_item_embeddings=2, component_dim=4, tau=MOL_TAU,
                                               gate_hidden_dim=8)).eval()
        self.store = MoLVectorStore(self.emb, similarity=self.sim, device="cpu", cache_dtype=cache_dtype,
                                    strategy=self.strategy, first_stage=first_stage)
        self.cache_dtype = cache_dtype
        self.model = {}

    # ------------------------------------------------------------- reference
    @property
    def tau(self) -> float:
        return 1.0 if self.sim is None else MOL_TAU

    def ref_scores(self, query: str, keys: list[str]) -> dict[str, float]:
        q = torch.tensor([self.emb.embed_query(query)])
        x = torch.tensor(self.emb.embed_documents([self.model[i][0] for i in keys]))
        cached = torch.bfloat16 if self.cache_dtype == "bf16" else torch.float32
        if self.sim is None:
            xs = torch.nn.functional.normalize(x, dim=-1).to(cached).float()
            scores = (torch.nn.functional.normalize(q, dim=-1) @ xs.T)[0]
        else:
            with torch.no_grad():
                state = self.sim.encode_items(x)
                items = MoLItemState(state.components.to(cached), state.gate)
                scores = self.sim.score_all(self.sim.encode_queries(q), items)[0]
        return dict(zip(keys, scores.tolist(), strict=True))

    def allowed(self, flt: DocFilter) -> list[str]:
        if flt is None:
            return list(self.model)
        if callable(flt):
            return [i for i, (t, m) in self.model.items() if flt(Document(page_content=t, metadata=m, id=i))]
        return [i for i, (_, m) in self.model.items() if all(key in m and m[key] == v for key, v in flt.items())]

    def check_hits(self, hits: list[tuple[Document, float]], k: int, flt: DocFilter, query: str,
                   label: object) -> None:
        allowed = self.allowed(flt)
        found = [d.id for d, _ in hits]
        assert len(found) == len(set(found)), (label, found)
        assert set(found) <= set(allowed), (label, found, allowed)
        assert len(found) == min(k, len(allowed)), (label, len(found), k, len(allowed))
        for d, _ in hits:
            assert d.id is not None and (d.page_content, d.metadata) == self.model[d.id], label
        scores = [s for _, s in hits]
        assert all(scores[j] >= scores[j + 1] for j in range(len(scores) - 1)), (label, scores)
        if allowed:
            ref = self.ref_scores(query, allowed)
            for i, s in zip(found, scores, strict=True):
                assert i is not None
                assert close(ref[i], s), (label, i, s, ref[i])
            rest = [ref[i] for i in allowed if i not in found]
            if rest and scores:
                assert scores[-1] >= max(rest) - TOL * max(1, abs(scores[-1])), (label, scores, rest)

    # ------------------------------------------------------------- rules
    @rule(items=st.lists(st.tuples(texts, st.one_of(st.none(), metadata), maybe_id), min_size=1, max_size=4),
          ids_mode=st.sampled_from(["given", "none", "empty"]),
          metas_mode=st.sampled_from(["given", "none", "empty"]), batch_size=st.sampled_from([None, 1, 2]))
    def add_texts(self, items: list[tuple[str, Meta | None, str | None]], ids_mode: str, metas_mode: str,
                  batch_size: int | None) -> None:
        txts = [t for t, _, _ in items]
        metas = [m or {} for _, m, _ in items]
        ids = [i for _, _, i in items]
        kwargs: dict[str, Any] = {} if batch_size is None else {"batch_size": batch_size}
        out = self.store.add_texts(txts, {"given": metas, "none": None, "empty": []}[metas_mode],
                                   ids={"given": ids, "none": None, "empty": []}[ids_mode], **kwargs)
        assert len(out) == len(txts)
        for j, o in enumerate(out):
            if ids_mode == "given" and ids[j]:
                assert o == ids[j]
            else:
                assert isinstance(o, str) and o
            self.model[o] = (txts[j], metas[j] if metas_mode == "given" else {})

    @rule(items=st.lists(st.tuples(texts, metadata, maybe_id), min_size=1, max_size=4), use_arg=st.booleans(),
          arg_ids=st.lists(st.sampled_from(IDS), min_size=4, max_size=4))
    def add_documents(self, items: list[tuple[str, Meta, str | None]], use_arg: bool, arg_ids: list[str]) -> None:
        docs = [Document(page_content=t, metadata=m, id=i) for t, m, i in items]
        ids = arg_ids[: len(docs)] if use_arg else None
        out = self.store.add_documents(docs, ids=ids)
        assert len(out) == len(docs)
        for j, o in enumerate(out):
            want = ids[j] if ids is not None else items[j][2]
            if want:
                assert o == want, (o, want)
            self.model[o] = (items[j][0], items[j][1])
        for d, (t, m, i) in zip(docs, items, strict=True):  # the caller's documents are not mutated
            assert (d.page_content, d.metadata, d.id) == (t, m, i)

    @rule(ids=st.one_of(st.none(), st.lists(st.sampled_from(IDS), max_size=4)), use_async=st.booleans())
    def delete(self, ids: list[str] | None, use_async: bool) -> None:
        if ids is None and len(self.model) > 3:
            return  # whole-store deletes only on small stores, so that the store fills up
        if use_async:
            asyncio.run(self.store.adelete(ids))
        else:
            self.store.delete(ids)
        if ids is None:
            self.model.clear()
        for i in ids or []:
            self.model.pop(i, None)

    @rule(ids=st.lists(st.sampled_from(IDS), max_size=5))
    def get_by_ids(self, ids: list[str]) -> None:
        want = [i for i in ids if i in self.model]
        docs = self.store.get_by_ids(ids)
        assert [d.id for d in docs] == want
        for d in docs:
            assert d.id is not None and (d.page_content, d.metadata) == self.model[d.id]
        assert [d.id for d in asyncio.run(self.store.aget_by_ids(ids))] == want

    @rule(query=texts, k=st.integers(1, 12), fkind=st.sampled_from(["none", "dict", "dict2", "call", "tags"]),
          c=st.integers(0, 2), mode=st.sampled_from(["sync", "async", "vec", "avec"]))
    def search(self, query: str, k: int, fkind: str, c: int, mode: str) -> None:
        flt: DocFilter = {
            "none": None, "dict": {"c": c}, "dict2": {"c": c, "tags": [c]},
            "call": (lambda d, c=c: d.metadata.get("c") != c), "tags": {"tags": (c,)},  # JSON equality
        }[fkind]
        kw: dict[str, Any] = {} if flt is None else {"filter": flt}
        if mode == "async":
            hits = asyncio.run(self.store.asimilarity_search_with_score(query, k, **kw))
        else:
            hits = self.store.similarity_search_with_score(query, k, **kw)
        if mode == "vec":
            docs = self.store.similarity_search_by_vector(self.emb.embed_query(query), k, **kw)
            assert [d.id for d in docs] == [d.id for d, _ in hits]
        elif mode == "avec":
            docs = asyncio.run(self.store.asimilarity_search_by_vector(self.emb.embed_query(query), k, **kw))
            assert [d.id for d in docs] == [d.id for d, _ in hits]
        self.check_hits(hits, k, {"tags": [c]} if fkind == "tags" else flt, query, (fkind, mode, k))
        relevance = self.store.similarity_search_with_relevance_scores(query, k, **kw)
        assert [d.id for d, _ in relevance] == [d.id for d, _ in hits]
        for (_, r), (_, s) in zip(relevance, hits, strict=True):
            assert 0 <= r <= 1
            assert abs(r - min(1, max(0, (1 + self.tau * s) / 2))) < 1e-6

    @rule(query=texts, k=st.integers(1, 6), fetch_k=st.integers(1, 12), lam=st.sampled_from([0.0, 0.5, 1.0]),
          fkind=st.sampled_from(["none", "dict", "call"]), c=st.integers(0, 2), use_async=st.booleans())
    def mmr(self, query: str, k: int, fetch_k: int, lam: float, fkind: str, c: int, use_async: bool) -> None:
        flt: DocFilter = {"none": None, "dict": {"c": c}, "call": (lambda d, c=c: d.metadata.get("c") != c)}[fkind]
        kw: dict[str, Any] = {} if flt is None else {"filter": flt}
        if use_async:
            docs = asyncio.run(self.store.amax_marginal_relevance_search(
                query, k=k, fetch_k=fetch_k, lambda_mult=lam, **kw))
        else:
            docs = self.store.max_marginal_relevance_search(query, k=k, fetch_k=fetch_k, lambda_mult=lam, **kw)
        allowed = self.allowed(flt)
        picks = [d.id for d in docs]
        assert len(picks) == len(set(picks))
        assert set(picks) <= set(allowed)
        assert len(picks) == min(k, fetch_k, len(allowed)), (len(picks), k, fetch_k, len(allowed))
        if not picks:
            return
        ref = self.ref_scores(query, allowed)
        top = self.store.similarity_search_with_score(query, 1, **kw)
        assert picks[0] is not None and abs(ref[picks[0]] - top[0][1]) < TOL, (picks, top)  # the best first
        ranked = sorted(allowed, key=lambda i: -ref[i])
        cut = ref[ranked[min(fetch_k, len(ranked)) - 1]]
        # the fetch_k best, and what ties the last of them (two documents of one text: either is fetched)
        candidates = [i for i in ranked if ref[i] >= cut - TOL]
        unit = {i: torch.nn.functional.normalize(torch.tensor(self.emb.embed_query(self.model[i][0])), dim=0)
                for i in candidates}
        chosen: list[str] = []

        def gain(i: str) -> float:
            if not chosen:
                return self.tau * ref[i]
            redundancy = max(float(unit[i] @ unit[j]) for j in chosen)
            return lam * self.tau * ref[i] - (1 - lam) * redundancy

        for step, pick in enumerate(picks):
            assert pick in unit, ("pick outside fetch_k", pick, candidates)
            best = max(gain(i) for i in candidates if i not in chosen)
            assert gain(pick) >= best - TOL, ("mmr pick not the best", step, pick, gain(pick), best)
            chosen.append(pick)
        if lam == 1.0:  # pure relevance: the similarity search's top min(k, fetch_k)
            hits = self.store.similarity_search_with_score(query, min(k, fetch_k), **kw)
            got, want = sorted(ref[i] for i in chosen), sorted(s for _, s in hits)
            assert all(abs(a - b) < TOL for a, b in zip(got, want, strict=True)), (got, want)

    @rule()
    def save_load(self) -> None:
        path = self.folder / f"save{self.saves % 2}"
        self.saves += 1
        queries = ["cat", "dog rain", "sun"]
        before = [self.store.similarity_search_with_score(q, 5) for q in queries]
        self.store.save_local(path)
        loaded = MoLVectorStore.load_local(path, self.emb, device="cpu", strategy=self.strategy)
        after = [loaded.similarity_search_with_score(q, 5) for q in queries]
        for b, a in zip(before, after, strict=True):
            assert [(d.id, d.page_content, d.metadata, s) for d, s in b] == [
                (d.id, d.page_content, d.metadata, s) for d, s in a], (b, a)
        self.store = loaded
        if self.sim is not None:
            assert loaded.index is not None
            self.sim = loaded.index.similarity

    @invariant()
    def same_documents(self) -> None:
        if not hasattr(self, "store"):
            return
        assert len(self.store) == len(self.model)
        docs = self.store.get_by_ids(sorted(self.model))
        assert [(d.id, d.page_content, d.metadata) for d in docs] == [(i, *self.model[i]) for i in sorted(self.model)]
        if self.store.index is not None:
            assert sorted(self.store.index.ids) == sorted(self.model)


def budget(examples: int, steps: int, *, derandomize: bool) -> settings:
    return settings(max_examples=examples, stateful_step_count=steps, deadline=None, database=None,
                    derandomize=derandomize, suppress_health_check=[HealthCheck.too_slow])


def test_store_matches_reference() -> None:
    run_state_machine_as_test(StoreMachine, settings=budget(10, 20, derandomize=True))


@pytest.mark.slow
def test_store_matches_reference_long() -> None:
    run_state_machine_as_test(StoreMachine, settings=budget(100, 30, derandomize=False))
