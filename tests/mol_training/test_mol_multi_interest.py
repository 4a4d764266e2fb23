"""Validation split of MovieLens next item, multi-interest history pooling, item-tower MLP."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from rag_relax_plugins.core.mol import MoLConfig, MoLSimilarity
from rag_relax_plugins.training.mol_data import movielens_next_item
from rag_relax_plugins.training.mol_eval import score_all
from rag_relax_plugins.training.mol_recipes import (
    RecipeConfig,
    build_movielens_model,
    identity_warm_start,
    load_recipe_model,
    save_recipe_model,
)
from rag_relax_plugins.training.mol_towers import HistoryQueryTower, IdEmbeddingTower


def test_valid_split_targets_the_second_to_last_item_and_never_sees_the_last(toy_movielens):
    test = movielens_next_item(toy_movielens, max_len=2)
    valid = movielens_next_item(toy_movielens, max_len=2, split="valid")
    assert (test.split, valid.split) == ("test", "valid")
    assert test.test_targets.tolist() == [3, 6]  # last items (rows ordered by the target's time)
    # validation: user 2 trains on 2 only and predicts 5; user 1 trains on 1,2,3 and predicts 4
    assert valid.test_targets.tolist() == [5, 4]
    assert valid.test_histories.tolist() == [[0, 2], [2, 3]]
    assert valid.train.queries.tolist() == [[0, 1], [1, 2]]
    assert valid.train.items.tolist() == [2, 3]
    # the test targets (6 for user 1, 3 for user 2) are in no training pair or history of the
    # validation data; 3 is a training item of user 1 only
    assert 6 not in valid.train.items.tolist() and 6 not in valid.test_histories.flatten().tolist()
    assert valid.test_seen[0].nonzero().flatten().tolist() == [0, 2]
    with pytest.raises(ValueError, match="split"):
        movielens_next_item(toy_movielens, max_len=2, split="train")


def test_multi_interest_tower_shapes_padding_and_combine():
    torch.manual_seed(0)
    items = IdEmbeddingTower(10, 8)
    h = torch.tensor([[0, 0, 3, 4], [1, 2, 3, 4]])
    tower = HistoryQueryTower(items, 4, num_interests=3, dropout=0.0).eval()
    assert tower.out_dim == 24 and tower.recency.shape == (3, 4)
    out = tower(h)
    assert out.shape == (2, 24) and bool(torch.isfinite(out).all())
    # the interests differ (different recency slopes and content weights)
    blocks = out.view(2, 3, 8)
    assert not torch.allclose(blocks[:, 0], blocks[:, 1])
    with torch.no_grad():  # padding is ignored
        items.embedding.weight[0].fill_(100.0)
    torch.testing.assert_close(tower(h), out)
    # "linear" combine starts as the mean of the interests; same weights otherwise
    lin = HistoryQueryTower(items, 4, num_interests=3, interest_combine="linear", dropout=0.0).eval()
    lin.load_state_dict(tower.state_dict(), strict=False)
    assert lin.out_dim == 8
    torch.testing.assert_close(lin(h), blocks.mean(dim=1))
    # one interest keeps the (L,) recency parameter of earlier versions
    assert HistoryQueryTower(items, 4).recency.shape == (4,)
    with pytest.raises(ValueError, match="num_interests"):
        HistoryQueryTower(items, 4, num_interests=0)
    with pytest.raises(ValueError, match="encoder='pool'"):
        HistoryQueryTower(items, 4, encoder="transformer", num_interests=2)
    with pytest.raises(ValueError, match="interest_combine"):
        HistoryQueryTower(items, 4, interest_combine="max")


def test_item_mlp_starts_as_the_table_and_learns():
    torch.manual_seed(0)
    tower = IdEmbeddingTower(6, 4, mlp_hidden=8)
    ids = torch.tensor([1, 2, 5])
    torch.testing.assert_close(tower(ids), tower.embedding(ids))
    tower(ids).pow(2).sum().backward()
    assert tower.mlp is not None and float(tower.mlp[2].weight.grad.abs().sum()) > 0
    with pytest.raises(ValueError, match="mlp_hidden"):
        IdEmbeddingTower(6, 4, mlp_hidden=-1)


def test_identity_warm_start_reads_one_interest_per_query_component():
    sim = MoLSimilarity(MoLConfig(query_dim=16, item_dim=8, num_query_embeddings=4, num_item_embeddings=2,
                                  component_dim=8, tau=0.1)).eval()
    identity_warm_start(sim, 0.0)
    q, x = torch.randn(3, 16), torch.randn(5, 8)
    comps = sim.encode_queries(q).components  # (3, 4, 8)
    for i in range(4):  # component i reads interest block i mod 2
        b = i % 2
        torch.testing.assert_close(comps[:, i], F.normalize(q[:, 8 * b : 8 * b + 8], dim=-1))
    torch.testing.assert_close(sim.encode_items(x).components[:, 1], F.normalize(x, dim=-1))
    bad = MoLSimilarity(MoLConfig(query_dim=12, item_dim=8, component_dim=8))
    with pytest.raises(ValueError, match="multiple of item_dim"):
        identity_warm_start(bad, 0.0)


@pytest.mark.parametrize("similarity", ["mol", "dot"])
def test_multi_interest_recipes_build_train_shapes_and_round_trip(tmp_path, similarity):
    torch.manual_seed(0)
    recipe = RecipeConfig(similarity=similarity, embedding_dim=8, max_len=3, num_query_embeddings=2,
                          num_item_embeddings=2, component_dim=8, num_interests=2, item_mlp_hidden=4,
                          warm_start_noise=0.1 if similarity == "mol" else None)
    model = build_movielens_model(9, recipe)
    assert model.item_tower.embedding.weight.shape == (9, 8)  # same per-item budget
    if similarity == "mol":
        assert model.similarity.config.query_dim == 16
    else:
        assert model.query_tower.out_dim == 8
    h = torch.tensor([[0, 1, 2], [3, 4, 5]])
    assert score_all(model, h).shape == (2, 9)
    save_recipe_model(model, tmp_path / "m", dataset="movielens", recipe=recipe)
    loaded, meta = load_recipe_model(tmp_path / "m")
    torch.testing.assert_close(score_all(loaded, h), score_all(model, h))
    assert RecipeConfig.from_dict(meta["recipe"]) == recipe
    with pytest.raises(ValueError, match="num_interests"):
        RecipeConfig(num_interests=0)
    with pytest.raises(ValueError, match="item_mlp_hidden"):
        RecipeConfig(item_mlp_hidden=-2)
