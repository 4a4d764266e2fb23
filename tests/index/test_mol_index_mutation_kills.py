"""Documented behaviour of the MoL index that hand mutants changed unnoticed (review 2026-12-05).

Each test fails on one mutant and passes on the code.
"""

from __future__ import annotations

import pytest
import torch

import rag_relax_plugins.index._search as search_mod
from rag_relax_plugins.core.mol import MoLConfig, MoLSimilarity
from rag_relax_plugins.index import BruteForce, ExactTwoPass, MoLIndex, TopKAvg


def _mol_index(n: int, first_stage: str = "torch") -> MoLIndex:
    torch.manual_seed(0)
    sim = MoLSimilarity(MoLConfig(query_dim=12, item_dim=10, num_query_embeddings=2, num_item_embeddings=3,
                                  component_dim=6, gate_hidden_dim=8))
    index = MoLIndex(sim, first_stage=first_stage, device="cpu")
    index.add([f"d{i}" for i in range(n)], torch.randn(n, 10))
    return index


@pytest.mark.parametrize("strategy", [ExactTwoPass(), TopKAvg(n=2000)])
def test_chunked_rerank_and_range_search_equal_brute_force(monkeypatch: pytest.MonkeyPatch, strategy: object) -> None:
    """Several rerank chunks (over queries) and range-search chunks (over items), as a batch of
    queries over a few thousand items gets at full size; 2003 items: the last chunk is partial."""
    index = _mol_index(2003)
    q = torch.randn(8, 12)
    want = index.search(q, 10, strategy=BruteForce())
    monkeypatch.setattr(search_mod, "_RANGE_ELEMENTS", 8 * 6 * 10)  # 10 items a chunk
    monkeypatch.setattr(search_mod, "_RERANK_ELEMENTS", 40 * 3 * 6)  # a few queries a chunk
    got = index.search(q, 10, strategy=strategy)  # type: ignore[arg-type]
    assert got[1] == want[1]
    torch.testing.assert_close(got[0], want[0], rtol=0, atol=1e-5)


def test_get_metadata_returns_copies() -> None:
    index = MoLIndex(MoLSimilarity.cosine(4), device="cpu")
    index.add(["a"], torch.randn(1, 4), metadata=[{"lang": "en", "tags": ["x"]}])
    got = index.get_metadata(["a"])[0]
    got["lang"] = "fr"
    got["tags"].append("y")
    assert index.get_metadata(["a"]) == [{"lang": "en", "tags": ["x"]}]
    assert index.ids_where({"lang": "fr"}) == []


@pytest.mark.parametrize("kind", ["torch", "flat"])
def test_reencode_rebuilds_the_first_stages(kind: str) -> None:
    """After a retrain and reencode(), the approximate strategies search the new components."""
    if kind == "flat":
        pytest.importorskip("faiss")
    from rag_relax_plugins.index import TopKPerEmbd

    index = _mol_index(300, kind)
    feats, ids, q = index.get_features(index.ids), index.ids, torch.randn(10, 12)
    for strategy in (TopKPerEmbd(n=5), TopKAvg(n=5)):
        index.search(q, 5, strategy=strategy)  # builds both first stages
    with torch.no_grad():
        for p in index.similarity.parameters():
            p.add_(torch.randn_like(p))  # "retrained"
    index.reencode()
    fresh = MoLIndex(index.similarity, first_stage=kind, device="cpu")
    fresh.add(ids, feats)
    for strategy in (TopKPerEmbd(n=5), TopKAvg(n=5)):
        assert index.search(q, 5, strategy=strategy)[1] == fresh.search(q, 5, strategy=strategy)[1]


def test_exact_two_pass_finds_a_near_tie_that_the_first_stage_missed() -> None:
    """Any first stage gives a valid threshold: one that misses the best item (score 5e-5 above
    the threshold) still yields the exact answer through the range search."""
    import math

    from rag_relax_plugins.index._search import SearchContext, exact_two_pass

    index = MoLIndex(MoLSimilarity.cosine(3), device="cpu")
    c = 0.5
    index.add(["A", "B", "far"], torch.tensor([[c, math.sqrt(1 - c * c), 0.0],
                                                [c + 5e-5, -math.sqrt(1 - (c + 5e-5) ** 2), 0.0],
                                                [0.0, 0.0, 1.0]]))

    def poor(q: torch.Tensor, n: int, allowed: torch.Tensor | None) -> torch.Tensor:
        return torch.zeros(q.shape[0], n, dtype=torch.long)  # finds only row 0, "A"

    ctx = SearchContext(index.similarity, index.item_state, poor, poor)
    with torch.inference_mode():
        queries = index.similarity.encode_queries(torch.tensor([[1.0, 0.0, 0.0]]))
        scores, rows = exact_two_pass(ctx, queries, 1, 100, None)
    assert index.ids[int(rows[0, 0])] == "B"
    assert float(scores[0, 0]) > c


def test_exact_two_pass_over_a_large_filtered_subset_stays_inside_it() -> None:
    """A subset above exact_filter_threshold goes through the strategy with the subset as a mask."""
    torch.manual_seed(0)
    sim = MoLSimilarity(MoLConfig(query_dim=12, item_dim=10, num_query_embeddings=2, num_item_embeddings=3,
                                  component_dim=6, gate_hidden_dim=8))
    index = MoLIndex(sim, device="cpu", exact_filter_threshold=10)
    index.add([f"d{i}" for i in range(200)], torch.randn(200, 10), metadata=[{"even": i % 2 == 0} for i in range(200)])
    q = torch.randn(5, 12)
    want = index.search(q, 5, filter={"even": True})
    got = index.search(q, 5, filter={"even": True}, strategy=ExactTwoPass())
    assert got[1] == want[1]
    assert all(int(i[1:]) % 2 == 0 for row in got[1] for i in row)


def test_hnsw_ef_search_is_raised_to_n() -> None:
    """FirstStageConfig: hnsw_ef_search is "raised to n when a search asks for more"."""
    pytest.importorskip("faiss")
    from rag_relax_plugins.index import FirstStageConfig
    from rag_relax_plugins.index.first_stage import build_searcher

    g = torch.Generator().manual_seed(0)
    x, q = torch.randn(2000, 16, generator=g), torch.randn(20, 16, generator=g)
    hnsw = build_searcher(FirstStageConfig(kind="hnsw", hnsw_ef_search=1), x)
    exact = build_searcher(FirstStageConfig(kind="torch"), x)
    got, want = hnsw.search(q, 50), exact.search(q, 50)
    assert bool((got >= 0).all())
    recall = sum(len(set(a.tolist()) & set(b.tolist())) for a, b in zip(got, want)) / want.numel()
    assert recall > 0.9


def test_a_subset_of_exactly_exact_filter_threshold_items_is_scored_exactly() -> None:
    """"Filtered subsets up to this size are scored by brute force" (the boundary included)."""
    index = _mol_index(300)
    subset = index.ids[:40]
    index.exact_filter_threshold = 40
    q = torch.randn(10, 12)
    want = index.search(q, 5, filter=subset)
    assert index.search(q, 5, filter=subset, strategy=TopKAvg(n=1))[1] == want[1]


def test_a_shared_filter_repeating_an_id_never_repeats_a_result() -> None:
    index = MoLIndex(MoLSimilarity.cosine(4), device="cpu")
    index.add(["a", "b", "c"], torch.eye(4)[:3])
    assert index.search(torch.ones(1, 4), 3, filter=["a", "a", "b"])[1] == [["a", "b"]]


def test_a_nested_dict_filter_value_needs_the_same_keys() -> None:
    index = MoLIndex(MoLSimilarity.cosine(4), device="cpu")
    index.add(["a", "b"], torch.eye(4)[:2], metadata=[{"m": {"x": 1}}, {"m": {"x": 1, "y": 2}}])
    assert index.ids_where({"m": {"x": 1, "y": 2}}) == ["b"]
    assert index.ids_where({"m": {"x": 1}}) == ["a"]


@pytest.mark.parametrize("cache_dtype", ["bf16", "fp16"])
def test_reencode_keeps_the_cache_dtype_and_the_save_reloads(tmp_path, cache_dtype: str) -> None:  # type: ignore[no-untyped-def]
    index = MoLIndex(MoLSimilarity.cosine(8), device="cpu", cache_dtype=cache_dtype)
    index.add(["a", "b"], torch.randn(2, 8))
    index.reencode()
    want = {"bf16": torch.bfloat16, "fp16": torch.float16}[cache_dtype]
    assert index.item_state.components.dtype == want
    index.save(tmp_path / "ix")
    assert MoLIndex.load(tmp_path / "ix", device="cpu").item_state.components.dtype == want

