"""Evaluation: the rank-based fast path against ranked-list metrics of core.metrics."""

from __future__ import annotations

import pytest
import torch

from rag_relax_plugins.core.metrics import evaluate, rankings_from_scores
from rag_relax_plugins.training.mol_eval import (
    mean_std,
    next_item_metrics,
    ranked_metrics,
    score_all,
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
