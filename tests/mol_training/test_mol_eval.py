"""Evaluation: the rank-based fast path against ranked-list metrics of core.metrics."""

from __future__ import annotations

import pytest
import torch

from rag_relax_plugins.core.metrics import evaluate, rankings_from_scores
from rag_relax_plugins.training.mol_eval import (
    mean_std,
    next_item_metrics,
    paired_hit_difference,
    query_rank_metric,
    rank_metrics,
    ranked_metrics,
    score_all,
    target_ranks,
)
from rag_relax_plugins.training.mol_towers import DotProductSimilarity, FeatureTower, TwoTowerModel


def _reference(scores, targets, exclude, ks):
    rankings = []
    for row, ex in zip(rankings_from_scores(scores), exclude.tolist()):
        rankings.append([i for i in row if not ex[i]])
    qrels = [{int(t): 1} for t in targets]
    names = [f"hit_rate@{k}" for k in ks] + [f"ndcg@{k}" for k in ks] + ["mrr"]
    got = evaluate(rankings, qrels, names)
    return {**{f"hr@{k}": got[f"hit_rate@{k}"] for k in ks}, **{f"ndcg@{k}": got[f"ndcg@{k}"] for k in ks}, "mrr": got["mrr"]}


@pytest.mark.parametrize("seed", [0, 1])
def test_fast_path_equals_reference_with_exclusions_and_ties(seed):
    g = torch.Generator().manual_seed(seed)
    scores = torch.randint(0, 6, (20, 30), generator=g).float()  # many ties
    targets = torch.randint(0, 30, (20,), generator=g)
    exclude = torch.rand(20, 30, generator=g) < 0.3
    exclude[torch.arange(20), targets] = False
    ks = (1, 5, 10)
    got = next_item_metrics(scores, targets, exclude, ks=ks)
    ref = _reference(scores, targets, exclude, ks)
    assert got == pytest.approx(ref, abs=1e-12)


def test_excluded_items_do_not_count_and_the_target_is_never_excluded():
    scores = torch.tensor([[5.0, 4.0, 3.0]])
    target = torch.tensor([2])
    assert next_item_metrics(scores, target, ks=(1,))["mrr"] == pytest.approx(1 / 3)
    ex = torch.tensor([[True, True, True]])
    assert next_item_metrics(scores, target, ex, ks=(1,))["hr@1"] == 1.0


def test_next_item_metrics_validation():
    with pytest.raises(ValueError, match="targets"):
        next_item_metrics(torch.zeros(2, 3), torch.tensor([0, 3]))
    with pytest.raises(ValueError, match="NaN"):
        next_item_metrics(torch.tensor([[float("nan")]]), torch.tensor([0]))
    with pytest.raises(ValueError, match="exclude"):
        next_item_metrics(torch.zeros(2, 3), torch.tensor([0, 1]), torch.zeros(2, 2, dtype=torch.bool))


def test_score_all_is_deterministic_and_restores_mode():
    feats = torch.randn(7, 4, generator=torch.Generator().manual_seed(0))
    model = TwoTowerModel(FeatureTower(feats), FeatureTower(feats), DotProductSimilarity(True, 0.5), 7)
    model.train()
    a = score_all(model, torch.arange(7), batch_size=3)
    b = score_all(model, torch.arange(7), batch_size=7)
    assert model.training
    torch.testing.assert_close(a, b)
    # a submodule the caller keeps in eval mode (a frozen tower) stays there afterwards
    model.query_tower.eval()
    score_all(model, torch.arange(7))
    assert model.training and model.item_tower.training and not model.query_tower.training
    # cosine is self-maximal: each row's best item is itself
    assert torch.equal(a.argmax(1), torch.arange(7))


def test_ranked_metrics_matches_manual_values():
    scores = torch.tensor([[3.0, 2.0, 1.0], [1.0, 2.0, 3.0], [0.0, 0.0, 0.0]])
    ids = ["a", "b", "c"]
    qrels = [{"a": 1, "c": 1}, {"a": 1}, {}]
    got = ranked_metrics(scores, ids, qrels, ["recall@1", "recall@3"], depth=3)
    # the third query has no relevant document and is skipped
    assert got == pytest.approx({"recall@1": 0.25, "recall@3": 1.0})
    with pytest.raises(ValueError, match="depth"):
        ranked_metrics(scores, ids, qrels, ["ndcg@10"], depth=5)


def test_mean_std():
    assert mean_std([1.0, 3.0]) == pytest.approx((2.0, 2**0.5))
    assert mean_std([4.0]) == (4.0, 0.0)
    with pytest.raises(ValueError):
        mean_std([])


def test_target_ranks_match_the_position_in_the_explicit_ranking():
    g = torch.Generator().manual_seed(3)
    scores = torch.randint(0, 4, (10, 12), generator=g).float()  # ties broken by the lower id
    targets = torch.randint(0, 12, (10,), generator=g)
    exclude = torch.rand(10, 12, generator=g) < 0.3
    ranks = target_ranks(scores, targets, exclude)
    for row, (ranking, ex) in enumerate(zip(rankings_from_scores(scores), exclude.tolist())):
        kept = [i for i in ranking if not ex[i] or i == int(targets[row])]
        assert int(ranks[row]) == kept.index(int(targets[row])) + 1
    assert ranks.dtype == torch.long


def test_paired_hit_difference_by_hand():
    # 4 queries; model A: two seeds, model B: one seed
    a = [[1, 20, 3, 50], [1, 2, 30, 50]]  # hits@10 per query averaged: 1, 0.5, 0.5, 0
    b = [[5, 40, 40, 2]]  # 1, 0, 0, 1
    got = paired_hit_difference(a, b, k=10)
    d = torch.tensor([0.0, 0.5, 0.5, -1.0], dtype=torch.float64)
    assert got["hr_a"] == pytest.approx(0.5) and got["hr_b"] == pytest.approx(0.5)
    assert got["diff"] == pytest.approx(0.0)
    assert got["diff_se"] == pytest.approx(float(d.std() / 2))
    assert got["relative"] == pytest.approx(0.0) and got["queries"] == 4
    with pytest.raises(ValueError, match="same"):
        paired_hit_difference([[1, 2, 3]], [[1, 2]])
    with pytest.raises(ValueError, match="at least one seed"):
        paired_hit_difference([], [[1, 2]])
    with pytest.raises(ValueError, match="every seed of ranks_a"):
        paired_hit_difference([[1, 2], [1, 2, 3]], [[1, 2]])
    with pytest.raises(ValueError, match="k must be >= 1"):
        paired_hit_difference(a, b, k=0)


def test_rank_metrics_equal_next_item_metrics_and_reject_bad_ranks():
    g = torch.Generator().manual_seed(5)
    scores = torch.randn(8, 30, generator=g)
    targets = torch.randint(0, 30, (8,), generator=g)
    ranks = target_ranks(scores, targets)
    assert rank_metrics(ranks, ks=(5, 10)) == next_item_metrics(scores, targets, ks=(5, 10))
    assert rank_metrics(torch.tensor([1, 2]), ks=(1,)) == pytest.approx(
        {"hr@1": 0.5, "ndcg@1": 0.5, "mrr": 0.75})
    with pytest.raises(ValueError, match="1-based"):
        rank_metrics(torch.tensor([0, 2]))
    with pytest.raises(ValueError, match="ks must be >= 1"):
        rank_metrics(ranks, ks=(0,))


def test_query_rank_metric_per_query_values_and_errors():
    ranks = torch.tensor([[1, 3, 12], [2, 10, 11]])  # (seeds, queries)
    assert query_rank_metric(ranks, "hr@10").tolist() == [[1.0, 1.0, 0.0], [1.0, 1.0, 0.0]]
    assert query_rank_metric(ranks[0], "ndcg@10").tolist() == pytest.approx([1.0, 0.5, 0.0])
    assert query_rank_metric(ranks[1], "mrr").tolist() == pytest.approx([0.5, 0.1, 1 / 11])
    for metric in ("hr@10", "ndcg@10", "mrr"):  # rank_metrics averages exactly these values
        assert float(query_rank_metric(ranks[0], metric).mean()) == pytest.approx(rank_metrics(ranks[0], ks=(10,))[metric])
    for bad in ("recall@10", "hr@", "hr@x", "mrr@10"):
        with pytest.raises(ValueError, match="metric must be"):
            query_rank_metric(ranks, bad)
    with pytest.raises(ValueError, match="k must be >= 1"):
        query_rank_metric(ranks, "hr@0")
    with pytest.raises(ValueError, match="1-based"):
        query_rank_metric(torch.tensor([0, 1]), "mrr")


def test_ranked_metrics_mrr_is_not_cut_at_the_depth():
    from rag_relax_plugins.training.mol_eval import ranked_metrics

    scores = -torch.arange(200, dtype=torch.float32).unsqueeze(0)  # doc j at rank j + 1
    ids, qrels = list(range(200)), [{149: 1}]
    got = ranked_metrics(scores, ids, qrels, ("mrr", "recall@10"))
    want = evaluate(rankings_from_scores(scores, ids, k=200), qrels, ["mrr", "recall@10"])
    assert got["mrr"] == pytest.approx(1 / 150) == pytest.approx(want["mrr"])  # was 0.0 (cut at 100)
