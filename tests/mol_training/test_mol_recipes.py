"""Towers, recipes (MoL vs cosine with one embedding budget), identity warm start, save/load."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from rag_relax_plugins.core.mol import MoLConfig, MoLSimilarity
from rag_relax_plugins.training.mol_eval import score_all
from rag_relax_plugins.training.mol_recipes import (
    RecipeConfig,
    build_hotpot_model,
    build_movielens_model,
    identity_warm_start,
    load_recipe_model,
    load_similarity,
    save_recipe_model,
)
from rag_relax_plugins.training.mol_towers import (
    DotProductSimilarity,
    HistoryQueryTower,
    IdEmbeddingTower,
)


@pytest.mark.parametrize("encoder", ["pool", "transformer"])
def test_history_tower_shapes_padding_and_validation(encoder):
    torch.manual_seed(0)
    items = IdEmbeddingTower(10, 8)
    tower = HistoryQueryTower(items, 4, encoder=encoder, dropout=0.0).eval()
    h = torch.tensor([[0, 0, 3, 4], [1, 2, 3, 4]])
    out = tower(h)
    assert out.shape == (2, 8) and bool(torch.isfinite(out).all())
    # padding is ignored: changing the padded id's embedding does not change the output
    with torch.no_grad():
        items.embedding.weight[0].fill_(100.0)
    torch.testing.assert_close(tower(h), out)
    with pytest.raises(ValueError, match="history must have 4 columns"):
        tower(torch.ones(2, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="right-aligned"):
        tower(torch.tensor([[1, 2, 3, 0]]))
    with pytest.raises(ValueError, match="ids in"):
        tower(torch.tensor([[1, 2, 3, 10]]))
    with pytest.raises(ValueError, match="encoder"):
        HistoryQueryTower(items, 4, encoder="gru")


def test_dot_similarity_validation_and_scale():
    q, x = torch.randn(3, 4), torch.randn(5, 4)
    s, aux = DotProductSimilarity(normalize=True, tau=0.5)(q, x)
    torch.testing.assert_close(s, F.normalize(q, dim=-1) @ F.normalize(x, dim=-1).T / 0.5)
    assert aux == {}
    with pytest.raises(ValueError, match="same dimension"):
        DotProductSimilarity()(q, torch.randn(5, 3))


def test_movielens_models_share_the_embedding_budget():
    mol = build_movielens_model(20, RecipeConfig(similarity="mol", embedding_dim=16, max_len=5))
    dot = build_movielens_model(20, RecipeConfig(similarity="dot", embedding_dim=16, max_len=5))
    assert mol.item_tower.embedding.weight.shape == dot.item_tower.embedding.weight.shape == (20, 16)
    c = mol.similarity.config
    assert c.num_item_embeddings * c.component_dim == 16  # cached item = 16 floats under both
    assert mol.query_tower.items is mol.item_tower  # the history encoder shares the item table
    with pytest.raises(ValueError, match="divisible"):
        build_movielens_model(20, RecipeConfig(embedding_dim=10, num_item_embeddings=4))


@pytest.mark.parametrize("component_dim", [8, 6])
def test_identity_warm_start_makes_mol_equal_cosine(component_dim):
    sim = MoLSimilarity(MoLConfig(query_dim=8, item_dim=8, num_query_embeddings=3, num_item_embeddings=2,
                                  component_dim=component_dim, tau=0.1)).eval()
    identity_warm_start(sim, 0.0)
    q, x = torch.randn(4, 8), torch.randn(6, 8)
    scores, _ = sim(q, x)
    if component_dim == 8:  # exactly cos / tau
        want = F.normalize(q, dim=-1) @ F.normalize(x, dim=-1).T / 0.1
    else:  # a shared semi-orthogonal projection: every component gives the same logit
        w = sim.query_proj.weight[:component_dim]
        want = F.normalize(q @ w.T, dim=-1) @ F.normalize(x @ w.T, dim=-1).T / 0.1
    torch.testing.assert_close(scores, want, atol=1e-5, rtol=1e-5)


def test_save_and_load_round_trip(tmp_path):
    torch.manual_seed(0)
    recipe = RecipeConfig(embedding_dim=8, max_len=3, num_query_embeddings=2, num_item_embeddings=2)
    model = build_movielens_model(9, recipe)
    save_recipe_model(model, tmp_path / "m", dataset="movielens", recipe=recipe)
    loaded, meta = load_recipe_model(tmp_path / "m")
    h = torch.tensor([[0, 1, 2], [3, 4, 5]])
    torch.testing.assert_close(score_all(loaded, h), score_all(model, h))
    assert meta["recipe"] == recipe.to_dict()

    feats = F.normalize(torch.randn(5, 8), dim=-1)
    hot = build_hotpot_model(feats[:2], feats, RecipeConfig(num_query_embeddings=2, num_item_embeddings=2))
    save_recipe_model(hot, tmp_path / "h", dataset="hotpotqa", recipe=RecipeConfig(num_query_embeddings=2, num_item_embeddings=2))
    with pytest.raises(ValueError, match="features are required"):
        load_recipe_model(tmp_path / "h")
    again, _ = load_recipe_model(tmp_path / "h", query_features=feats[:2], doc_features=feats)
    torch.testing.assert_close(score_all(again, torch.arange(2)), score_all(hot, torch.arange(2)))

    # loading leaves the caller's global RNG as it was (the rebuilt model's initial weights drew
    # from it; review 2026-12-05)
    for folder, kw in ((tmp_path / "m", {}), (tmp_path / "h", {"query_features": feats[:2], "doc_features": feats})):
        torch.manual_seed(0)
        want = torch.rand(3)
        torch.manual_seed(0)
        load_recipe_model(folder, **kw)
        assert torch.equal(torch.rand(3), want), folder
    head = load_similarity(tmp_path / "h")  # the MoL head alone, no features needed
    torch.testing.assert_close(head(feats[:2], feats)[0], score_all(hot, torch.arange(2)))
    dot_recipe = RecipeConfig(similarity="dot", embedding_dim=8, max_len=3)
    save_recipe_model(build_movielens_model(9, dot_recipe), tmp_path / "d", dataset="movielens", recipe=dot_recipe)
    with pytest.raises(FileNotFoundError, match="no MoL head"):
        load_similarity(tmp_path / "d")

    cfg = json.loads((tmp_path / "m" / "config.json").read_text())
    cfg["format_version"] = 7
    (tmp_path / "m" / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="v1"):
        load_recipe_model(tmp_path / "m")
    with pytest.raises(FileNotFoundError, match=r"config\.json"):
        load_recipe_model(tmp_path / "absent")


def test_recipe_config_validation():
    assert RecipeConfig.from_dict(RecipeConfig().to_dict()) == RecipeConfig()
    with pytest.raises(ValueError, match="similarity"):
        RecipeConfig(similarity="l2")
    with pytest.raises(ValueError, match="unknown recipe options"):
        RecipeConfig.from_dict({"dims": 3})


def test_warm_start_warns_when_a_feature_block_starts_on_no_component(caplog):
    import logging

    base = dict(similarity="mol", embedding_dim=8, max_len=3, num_interests=4, user_embedding=True,
                component_dim=8, warm_start_noise=0.1)
    with caplog.at_level(logging.WARNING, logger="rag_relax_plugins.training.mol_recipes"):
        build_movielens_model(20, RecipeConfig(num_query_embeddings=4, **base), num_users=5)
    assert "blocks 4..4 (the user vector among them) start on no component" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="rag_relax_plugins.training.mol_recipes"):
        build_movielens_model(20, RecipeConfig(num_query_embeddings=8, **base), num_users=5)
    assert "start on no component" not in caplog.text


def test_loaders_find_the_model_a_crash_left_between_the_two_renames(tmp_path):
    """A crash while a saved model was being replaced leaves only ``.<name>.old-*``: both loaders read it."""
    import os

    torch.manual_seed(0)
    recipe = RecipeConfig(embedding_dim=8, max_len=3, num_query_embeddings=2, num_item_embeddings=2)
    model = build_movielens_model(9, recipe)
    save_recipe_model(model, tmp_path / "m", dataset="movielens", recipe=recipe)
    os.replace(tmp_path / "m", tmp_path / ".m.old-abc123")
    loaded, _ = load_recipe_model(tmp_path / "m")
    h = torch.tensor([[0, 1, 2]])
    torch.testing.assert_close(score_all(loaded, h), score_all(model, h), rtol=0, atol=0)
    assert load_similarity(tmp_path / "m").config == model.similarity.config


def test_damaged_recipe_saves_are_refused_naming_the_file(tmp_path):
    """A missing recipe / dataset / num_items was a KeyError, num_items 9.7 loaded, and a head
    whose tensors do not fit its config a raw RuntimeError."""
    from safetensors.torch import load_file, save_file

    recipe = RecipeConfig(embedding_dim=8, max_len=3, num_query_embeddings=2, num_item_embeddings=2)
    save_recipe_model(build_movielens_model(9, recipe), tmp_path / "m", dataset="movielens", recipe=recipe)
    file = tmp_path / "m" / "config.json"
    good = json.loads(file.read_text())
    cases = [({k: v for k, v in good.items() if k != "recipe"}, "no valid 'recipe'"),
             ({k: v for k, v in good.items() if k != "num_items"}, r"num_items must be an int >= 0, got None"),
             ({**good, "num_items": 9.7}, r"num_items must be an int >= 0, got 9\.7"),
             ({k: v for k, v in good.items() if k != "dataset"}, "unknown dataset None")]
    for bad, match in cases:
        file.write_text(json.dumps(bad))
        with pytest.raises(ValueError, match=match):
            load_recipe_model(tmp_path / "m")
    file.write_text(json.dumps(good))
    feats = F.normalize(torch.randn(5, 8), dim=-1)
    hot_recipe = RecipeConfig(num_query_embeddings=2, num_item_embeddings=2)
    save_recipe_model(build_hotpot_model(feats[:2], feats, hot_recipe), tmp_path / "h", dataset="hotpotqa",
                      recipe=hot_recipe)
    weights = tmp_path / "h" / "similarity.safetensors"
    tensors = load_file(str(weights))
    name = next(k for k, t in tensors.items() if t.dim() == 2)
    save_file({**tensors, name: tensors[name][:, :-1].contiguous()}, str(weights))
    with pytest.raises(ValueError, match=r"similarity\.safetensors does not match similarity_config\.json"):
        load_similarity(tmp_path / "h")
