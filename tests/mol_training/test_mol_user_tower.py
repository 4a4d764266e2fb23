"""Per-user query component (UserQueryTower), user ids in the MovieLens data, recipes with it."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from rag_relax_plugins.training.mol_data import movielens_next_item
from rag_relax_plugins.training.mol_eval import score_all
from rag_relax_plugins.training.mol_recipes import (
    RecipeConfig,
    build_movielens_model,
    load_recipe_model,
)
from rag_relax_plugins.training.mol_runs import run_movielens
from rag_relax_plugins.training.mol_towers import HistoryQueryTower, IdEmbeddingTower
from rag_relax_plugins.training.mol_train import MoLTrainConfig
from rag_relax_plugins.training.mol_user_tower import UserQueryTower


def test_next_item_data_records_users_and_prefixes_queries_with_them(toy_movielens):
    data = movielens_next_item(toy_movielens, max_len=2)
    # pairs: user 1 trains on 1,2,3,4 (3 pairs), user 2 on 2,5 (1 pair); user 3 has one rating
    assert data.train_users.tolist() == [1, 1, 1, 2]
    assert data.test_users.tolist() == [2, 1]  # rows ordered by the target's time
    assert data.num_users == 4 and not data.user_column
    with_users = data.with_user_ids()
    assert with_users.user_column and with_users.with_user_ids() is with_users
    assert with_users.train.queries.tolist() == [[1, 0, 1], [1, 1, 2], [1, 2, 3], [2, 0, 2]]
    assert with_users.test_histories.tolist() == [[2, 2, 5], [1, 3, 4]]
    assert torch.equal(with_users.train.items, data.train.items)
    assert torch.equal(with_users.test_targets, data.test_targets)
    bare = type(data)(data.train, data.test_histories, data.test_targets, data.test_seen, data.num_items, 2)
    with pytest.raises(ValueError, match="no user ids"):
        bare.with_user_ids()


def test_user_tower_concat_and_sum_unknown_user_and_dropout():
    torch.manual_seed(0)
    items = IdEmbeddingTower(10, 8)
    hist = HistoryQueryTower(items, 3, dropout=0.0)
    tower = UserQueryTower(hist, 5, dropout=0.5).eval()
    q = torch.tensor([[2, 0, 1, 2], [0, 3, 4, 5]])
    out = tower(q).detach()
    assert out.shape == (2, 16) and tower.out_dim == 16
    torch.testing.assert_close(out[:, :8], hist(q[:, 1:]))
    torch.testing.assert_close(out[0, 8:], tower.users.weight[2])
    assert float(out[1, 8:].abs().sum()) == 0.0  # id 0: unknown user, zero vector
    summed = UserQueryTower(hist, 5, combine="sum").eval()
    summed.users.load_state_dict(tower.users.state_dict())
    torch.testing.assert_close(summed(q), out[:, :8] + out[:, 8:])
    assert summed.out_dim == 8
    # dropout acts on the user vector in training only
    tower.train()
    torch.manual_seed(1)
    dropped = tower(q.repeat(50, 1))[:, 8:]
    assert bool((dropped == 0).any()) and bool((dropped != 0).any())
    tower.eval()
    torch.testing.assert_close(tower(q), out)
    # gradients reach the user table
    tower(q).sum().backward()
    assert float(tower.users.weight.grad[2].abs().sum()) > 0
    assert float(tower.users.weight.grad[0].abs().sum()) == 0.0  # the unknown row stays zero


def test_user_tower_rejects_bad_input():
    items = IdEmbeddingTower(10, 8)
    hist = HistoryQueryTower(items, 3)
    tower = UserQueryTower(hist, 5)
    with pytest.raises(ValueError, match="1 \\+ max_len"):
        tower(torch.tensor([[1, 2, 3]]))
    with pytest.raises(ValueError, match="user ids"):
        tower(torch.tensor([[5, 1, 2, 3]]))
    with pytest.raises(TypeError, match="long"):
        tower(torch.tensor([[1.0, 1.0, 2.0, 3.0]]))
    with pytest.raises(ValueError, match="num_users"):
        UserQueryTower(hist, 1)
    with pytest.raises(ValueError, match="dropout"):
        UserQueryTower(hist, 5, dropout=1.0)
    with pytest.raises(ValueError, match="combine"):
        UserQueryTower(hist, 5, combine="max")
    multi = HistoryQueryTower(items, 3, num_interests=2)
    with pytest.raises(ValueError, match="interest_combine='linear'"):
        UserQueryTower(multi, 5, combine="sum")


def test_mol_warm_start_gives_the_user_vector_its_own_query_component():
    torch.manual_seed(0)
    recipe = RecipeConfig(similarity="mol", embedding_dim=8, max_len=3, num_query_embeddings=3,
                          num_item_embeddings=2, component_dim=8, num_interests=2, user_embedding=True,
                          warm_start_noise=0.0)
    model = build_movielens_model(10, recipe, num_users=6).eval()
    assert model.similarity.config.query_dim == 24  # 2 interests + the user vector
    q = torch.tensor([[4, 1, 2, 3]])
    feats = model.query_tower(q)
    comps = model.similarity.encode_queries(feats).components  # (1, 3, 8)
    user = model.query_tower.users.weight[4]
    torch.testing.assert_close(comps[0, 2], F.normalize(user, dim=-1))  # component H = 2 reads it
    torch.testing.assert_close(comps[0, 0], F.normalize(feats[0, :8], dim=-1))
    with pytest.raises(ValueError, match="num_users"):
        build_movielens_model(10, recipe)


@pytest.mark.parametrize("similarity", ["mol", "dot"])
def test_user_recipes_train_save_and_load(tmp_path, similarity, toy_movielens):
    recipe = RecipeConfig(similarity=similarity, embedding_dim=8, max_len=2, num_query_embeddings=2,
                          num_item_embeddings=2, component_dim=8, user_embedding=True, user_dropout=0.2,
                          warm_start_noise=0.1 if similarity == "mol" else None)
    cfg = MoLTrainConfig(epochs=2, batch_size=2, lr=1e-2, num_negatives=2, seed=0, device="cpu", show_progress=False)
    data = movielens_next_item(toy_movielens, max_len=2)
    report = run_movielens(cfg, recipe, data=data, save_to=tmp_path / "m")
    assert report["steps"] == 4 and set(report["metrics"]) >= {"hr@10", "mrr"}
    model, meta = load_recipe_model(tmp_path / "m")
    assert meta["num_users"] == 4 and RecipeConfig.from_dict(meta["recipe"]) == recipe
    q = data.with_user_ids().test_histories
    assert score_all(model, q).shape == (2, data.num_items)
    # the same training run again gives the same metrics (deterministic given the seed)
    again = run_movielens(cfg, recipe, data=data.with_user_ids())
    assert again["metrics"] == report["metrics"]
    plain = RecipeConfig(similarity=similarity, embedding_dim=8, max_len=2, num_query_embeddings=2,
                         num_item_embeddings=2, component_dim=8,
                         warm_start_noise=0.1 if similarity == "mol" else None)
    with pytest.raises(ValueError, match="user ids"):
        run_movielens(cfg, plain, data=data.with_user_ids())


def test_recipe_validates_user_options():
    with pytest.raises(TypeError, match="user_embedding"):
        RecipeConfig(user_embedding=1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="user_dropout"):
        RecipeConfig(user_dropout=1.0)
    assert RecipeConfig.from_dict(RecipeConfig(user_embedding=True).to_dict()).user_embedding is True
