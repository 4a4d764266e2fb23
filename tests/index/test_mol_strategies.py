"""Retrieval strategies against the brute-force reference (RAILS algorithms)."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from rag_relax_plugins.core.mol import MoLConfig, MoLSimilarity
from rag_relax_plugins.index import (
    BruteForce,
    Combined,
    ExactTwoPass,
    FirstStageConfig,
    MoLIndex,
    TopKAvg,
    TopKPerEmbd,
)

HAS_FAISS = importlib.util.find_spec("faiss") is not None


def _index(
    n: int = 400,
    seed: int = 0,
    first_stage: FirstStageConfig | str = "torch",
    adversarial: bool = False,
    p_q: int = 2,
    p_x: int = 3,
) -> MoLIndex:
    torch.manual_seed(seed)
    sim = MoLSimilarity(
        MoLConfig(
            query_dim=12,
            item_dim=10,
            num_query_embeddings=p_q,
            num_item_embeddings=p_x,
            component_dim=6,
            gate_hidden_dim=8,
        )
    )
    if adversarial:
        # push the gate onto the *smallest* component logit: the MoL score then sits near
        # min_p s_p, far from the max_p s_p that per-component retrieval ranks by
        with torch.no_grad():
            p = sim.config.num_pairs
            sim.dot_gate.weight.copy_(-25.0 * torch.eye(p) + 0.5 * torch.randn(p, p))
            sim.dot_gate.bias.zero_()
            sim.query_gate.outer.bias.fill_(3.0)
            sim.item_gate.outer.bias.fill_(3.0)
    index = MoLIndex(sim, first_stage=first_stage, device="cpu")
    index.add([f"d{i}" for i in range(n)], torch.randn(n, 10))
    return index


def _same(a: tuple[torch.Tensor, list[list[str]]], b: tuple[torch.Tensor, list[list[str]]]) -> None:
    (sa, ia), (sb, ib) = a, b
    assert ia == ib
    torch.testing.assert_close(sa, sb, rtol=0, atol=1e-5)


KINDS = ["torch"] + (["flat"] if HAS_FAISS else [])


@pytest.mark.parametrize("kind", KINDS)
def test_approximate_strategies_equal_brute_force_when_budget_covers_corpus(kind: str) -> None:
    index = _index(first_stage=kind)
    q = torch.randn(6, 12)
    ref = index.search(q, 15)
    n = len(index)
    for strategy in (TopKPerEmbd(n * 3), TopKAvg(n), Combined(n * 3, n), ExactTwoPass(n)):
        _same(index.search(q, 15, strategy=strategy), ref)


def test_small_budgets_are_approximate_but_sane() -> None:
    index = _index(adversarial=True)
    q = torch.randn(8, 12)
    ref_s, ref_ids = index.search(q, 10)
    s, ids = index.search(q, 10, strategy=TopKAvg(20))
    assert s.shape == (8, 10)
    assert bool((s[:, :-1] >= s[:, 1:]).all())  # best first
    assert bool((s <= ref_s[:, :1] + 1e-5).all())  # never better than the true best
    assert any(a != b for a, b in zip(ids, ref_ids, strict=True))  # the adversarial gate defeats it


@pytest.mark.parametrize("adversarial", [False, True])
def test_exact_two_pass_equals_brute_force_many_trials(adversarial: bool) -> None:
    first_pass_misses = 0
    for trial in range(12):
        index = _index(n=300, seed=trial, adversarial=adversarial)
        q = torch.randn(5, 12)
        k = 1 + trial % 7
        ref = index.search(q, k)
        _same(index.search(q, k, strategy=ExactTwoPass(budget=10_000)), ref)
        # a tiny budget forces the documented brute-force fallback: still exact
        _same(index.search(q, k, strategy=ExactTwoPass(budget=k)), ref)
        # the first pass alone (same candidates) is not always right: the range search matters
        first_pass_misses += index.search(q, k, strategy=Combined(k, k))[1] != ref[1]
    if adversarial:
        assert first_pass_misses > 0


def test_exact_two_pass_with_mask_filter_equals_filtered_brute_force() -> None:
    index = _index(n=300, adversarial=True)
    index.exact_filter_threshold = 1  # force the masked first-stage path
    allowed = [f"d{i}" for i in range(0, 300, 2)]
    q = torch.randn(4, 12)
    ref = index.search(q, 7, filter=allowed)
    assert all(int(i[1:]) % 2 == 0 for row in ref[1] for i in row)
    for strategy in (ExactTwoPass(100), TopKPerEmbd(600), TopKAvg(300), Combined(600, 300)):
        _same(index.search(q, 7, strategy=strategy, filter=allowed), ref)


@pytest.mark.skipif(not HAS_FAISS, reason="faiss not installed")
@pytest.mark.parametrize("kind", ["hnsw", "ivf"])
def test_ann_first_stages_have_high_recall(kind: str) -> None:
    cfg = FirstStageConfig(kind=kind, hnsw_ef_search=256, ivf_nprobe=8)  # type: ignore[arg-type]
    index = _index(n=1200, first_stage=cfg)
    q = torch.randn(8, 12)
    _, ref = index.search(q, 10)
    _, got = index.search(q, 10, strategy=Combined(200, 200))
    hits = sum(len(set(a) & set(b)) for a, b in zip(ref, got, strict=True))
    assert hits / 80 >= 0.9


def test_strategy_validation() -> None:
    with pytest.raises(ValueError, match="n must be >= 1"):
        TopKAvg(0)
    with pytest.raises(TypeError, match="n_avg"):
        Combined(10, 2.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="budget"):
        ExactTwoPass(0)
    index = _index(n=20)
    with pytest.raises(TypeError, match="strategy"):
        index.search(torch.randn(1, 12), 3, strategy="TopKAvg")  # type: ignore[arg-type]
    assert index.search(torch.randn(1, 12), 3, strategy=BruteForce())[0].shape == (1, 3)


def test_candidate_budget_is_at_least_k() -> None:
    index = _index(n=200)
    q = torch.randn(3, 12)
    for strategy in (TopKPerEmbd(1), TopKAvg(5), Combined(3, 3)):
        s, ids = index.search(q, 10, strategy=strategy)
        assert s.shape == (3, 10) and bool(torch.isfinite(s).all()), strategy
        assert all(len(row) == len(set(row)) == 10 for row in ids), strategy


def test_per_embd_tops_up_when_component_hits_repeat_items() -> None:
    # every item's P_x = 3 components are identical, so the top n component vectors name only
    # about n / 3 distinct items: the strategy must still return k distinct items
    index = _index(n=100, p_q=1, p_x=3)
    sim = index.similarity
    with torch.no_grad():
        sim.item_proj.weight.copy_(sim.item_proj.weight[:6].repeat(3, 1))
        sim.item_proj.bias.copy_(sim.item_proj.bias[:6].repeat(3))
    index.reencode()
    _, ids = index.search(torch.randn(4, 12), 9, strategy=TopKPerEmbd(9))
    assert all(len(row) == len(set(row)) == 9 for row in ids)


def test_results_never_repeat_ids_and_are_complete() -> None:
    for seed in range(10):
        index = _index(n=40 + 7 * seed, seed=seed, adversarial=seed % 3 == 0, p_x=1 + seed % 4)
        index.exact_filter_threshold = 1 + seed % 2 * 1000  # both filter paths
        q = torch.randn(4, 12)
        allowed = [f"d{i}" for i in range(0, len(index), 1 + seed % 3)]
        for flt in (None, allowed):
            pool = len(index) if flt is None else len(allowed)
            for k in (1, 5, 17, pool + 3):
                strategies = (
                    BruteForce(),
                    TopKPerEmbd(1 + seed % 4),
                    TopKAvg(2 + seed % 5),
                    Combined(1 + seed % 3, 1 + seed % 2),
                    ExactTwoPass(1 + seed * 5),
                )
                for strategy in strategies:
                    s, ids = index.search(q, k, strategy=strategy, filter=flt)
                    want = min(k, pool)
                    assert s.shape == (4, want), (seed, k, strategy)
                    assert all(len(row) == len(set(row)) == want for row in ids), (seed, k, strategy)
                    assert bool(torch.isfinite(s).all()) and bool((s[:, :-1] >= s[:, 1:]).all())
