"""Numpy scalars (say, from a ``numpy.arange`` sweep) are taken as the Python numbers they hold by
every config and by the core ops' number options; ``bool`` stays refused where a number is due."""

from __future__ import annotations

import dataclasses
import importlib
import json

import numpy as np
import pytest
import torch

CONFIGS = [
    ("rag_relax_plugins.core.mol_config", "MoLConfig", {"query_dim": 8, "item_dim": 6}),
    ("rag_relax_plugins.embedders.gaussian_config", "GaussianConfig", {}),
    ("rag_relax_plugins.index.first_stage", "FirstStageConfig", {"ivf_nlist": 4}),
    ("rag_relax_plugins.rerankers.maxsim_config", "MaxSimConfig", {}),
    ("rag_relax_plugins.training.gaussian_objective", "TrainConfig", {"max_steps": 3}),
    ("rag_relax_plugins.training.grerank_config", "GRerankConfig", {}),
    ("rag_relax_plugins.training.maxsim_train", "MaxSimTrainConfig", {}),
    ("rag_relax_plugins.training.mol_recipes", "RecipeConfig", {}),
    ("rag_relax_plugins.training.mol_train_config", "MoLTrainConfig", {}),
]


def _numpy_version(value: object) -> object:
    if type(value) is int:
        return np.int64(value)
    if type(value) is float:
        return np.float64(value)
    return value


@pytest.mark.parametrize(("module", "name", "required"), CONFIGS, ids=[c[1] for c in CONFIGS])
def test_configs_take_numpy_scalars_as_plain_numbers(module, name, required):
    cls = getattr(importlib.import_module(module), name)
    plain = cls(**required)
    fields = {f.name for f in dataclasses.fields(plain)}  # to_dict may add a format version
    numbers = {k: _numpy_version(getattr(plain, k)) for k in fields}
    assert any(isinstance(v, np.integer) for v in numbers.values()), "the case must hold a numpy int"
    config = cls(**numbers)
    assert config == plain
    for field in dataclasses.fields(config):  # plain Python types, JSON-ready
        assert type(getattr(config, field.name)) is type(getattr(plain, field.name)), field.name
    assert json.loads(json.dumps(config.to_dict())) == plain.to_dict()


def test_numpy_float32_and_bool_in_a_config():
    from rag_relax_plugins.core.mol_config import MoLConfig

    config = MoLConfig(query_dim=np.int32(8), item_dim=8, tau=np.float32(0.5))
    assert type(config.tau) is float and config.tau == 0.5 and type(config.query_dim) is int
    with pytest.raises((TypeError, ValueError), match="query_dim"):
        MoLConfig(query_dim=True, item_dim=8)
    with pytest.raises((TypeError, ValueError), match="query_dim"):
        MoLConfig(query_dim=np.float64(8.0), item_dim=8)  # a real number where an int is due


def test_strategies_take_numpy_ints():
    from rag_relax_plugins.index import Combined, ExactTwoPass, TopKAvg, TopKPerEmbd

    assert TopKAvg(np.int64(5)) == TopKAvg(5) and type(TopKAvg(np.int64(5)).n) is int
    assert TopKPerEmbd(np.int32(3)).n == 3
    assert Combined(np.int64(2), np.int64(7)) == Combined(2, 7)
    assert ExactTwoPass(np.uint16(9)).budget == 9
    with pytest.raises(TypeError, match="n must be an int"):
        TopKAvg(np.float64(5.0))


def test_loss_options_take_numpy_scalars_and_refuse_non_finite():
    from rag_relax_plugins.core.contrastive import triplet_margin
    from rag_relax_plugins.core.ranking_losses import lambda_loss, neural_ndcg_loss

    torch.manual_seed(0)
    s, r = torch.randn(2, 5), torch.rand(2, 5) * 3
    assert torch.equal(lambda_loss(s, r, mu=np.float32(2.0)), lambda_loss(s, r, mu=2.0))
    assert torch.equal(
        neural_ndcg_loss(s, r, sinkhorn_iters=np.int64(4)), neural_ndcg_loss(s, r, sinkhorn_iters=4)
    )
    a, p, n = torch.randn(3, 4), torch.randn(3, 4), torch.randn(3, 4)
    assert torch.equal(triplet_margin(a, p, n, margin=np.float32(0.5)), triplet_margin(a, p, n, margin=0.5))
    for bad in (float("inf"), True, -1.0):
        with pytest.raises(ValueError, match="margin must be"):
            triplet_margin(a, p, n, margin=bad)
        with pytest.raises(ValueError, match="mu must be"):
            lambda_loss(s, r, mu=bad)
    with pytest.raises(ValueError, match="sinkhorn_iters"):
        neural_ndcg_loss(s, r, sinkhorn_iters=np.float64(4.0))


def test_numpy_bools_become_bools() -> None:
    """A numpy bool passed the flag fields and stayed one: the run failed at its first JSON save."""
    from rag_relax_plugins.training.gaussian_objective import TrainConfig
    from rag_relax_plugins.training.mol_train_config import MoLTrainConfig

    cfg = TrainConfig(predictor=np.True_, show_progress=np.False_)
    assert cfg.predictor is True and cfg.show_progress is False
    assert json.loads(json.dumps(cfg.to_dict()))["predictor"] is True
    assert MoLTrainConfig(logq_correction=np.False_).logq_correction is False
    with pytest.raises((TypeError, ValueError), match="epochs"):
        TrainConfig(epochs=np.True_)  # a flag where a count is due: refused, as True is


def test_fusion_options_take_numpy_integers_and_refuse_bools():
    from rag_relax_plugins.core.fusion import (
        comb_mnz,
        comb_sum,
        distribution_based_fusion,
        reciprocal_rank_fusion,
    )

    runs = [["a", "b", "c"], ["c", "a"]]
    lists = [{"a": 1.0, "b": 2.0, "c": 0.5}, {"c": 3.0, "a": 1.0}]
    assert reciprocal_rank_fusion(runs, k=np.int64(60)) == reciprocal_rank_fusion(runs, k=60)
    assert reciprocal_rank_fusion(runs, k=np.uint8(0)) == reciprocal_rank_fusion(runs, k=0)
    assert reciprocal_rank_fusion(runs, top_n=np.int64(2)) == reciprocal_rank_fusion(runs, top_n=2)
    assert len(reciprocal_rank_fusion(runs, top_n=np.int32(1))) == 1
    for fuse in (comb_sum, comb_mnz, distribution_based_fusion):
        assert fuse(lists, top_n=np.int64(2)) == fuse(lists, top_n=2)
    for bad in (True, np.float64(60.0), -1):
        with pytest.raises(ValueError, match="k must be an int >= 0"):
            reciprocal_rank_fusion(runs, k=bad)
    for bad in (True, np.float32(1.0), 0):
        with pytest.raises(ValueError, match="top_n must be an int >= 1 or None"):
            reciprocal_rank_fusion(runs, top_n=bad)
        with pytest.raises(ValueError, match="top_n must be an int >= 1 or None"):
            comb_sum(lists, top_n=bad)


def test_mmr_gumbel_and_mol_options_take_numpy_scalars():
    from rag_relax_plugins.core.gumbel import attention_log_mask
    from rag_relax_plugins.core.mmr import check_lambda_mult, mmr_select
    from rag_relax_plugins.core.mol import MoLSimilarity

    torch.manual_seed(0)
    rel, emb = torch.rand(6), torch.randn(6, 3)
    sim = torch.nn.functional.normalize(emb, dim=1) @ torch.nn.functional.normalize(emb, dim=1).T
    assert torch.equal(mmr_select(rel, sim, 4, np.float32(0.25)), mmr_select(rel, sim, 4, 0.25))
    assert torch.equal(mmr_select(rel, sim, 4, np.float64(0.7)), mmr_select(rel, sim, 4, 0.7))
    assert type(check_lambda_mult(np.float32(0.5))) is float
    for bad in (True, np.True_, "0.5"):
        with pytest.raises(TypeError, match="lambda_mult must be a number"):
            mmr_select(rel, sim, 2, bad)
    with pytest.raises(ValueError, match="lambda_mult must lie in"):
        mmr_select(rel, sim, 2, np.float32(1.5))

    mask = torch.tensor([1.0, 0.5, 0.0])
    assert torch.equal(attention_log_mask(mask, floor=np.float32(-1e4)), attention_log_mask(mask, floor=-1e4))
    assert torch.equal(attention_log_mask(mask, floor=np.int64(-50)), attention_log_mask(mask, floor=-50))
    with pytest.raises(TypeError, match="floor must be a number"):
        attention_log_mask(mask, floor=True)
    with pytest.raises(ValueError, match="floor must lie in"):
        attention_log_mask(mask, floor=np.float32(5.0))

    mol = MoLSimilarity.cosine(4)
    q, x = mol.encode_queries(torch.randn(2, 4)), mol.encode_items(torch.randn(5, 4))
    torch.testing.assert_close(mol.score_all(q, x, chunk_size=np.int64(2)), mol.score_all(q, x, chunk_size=2))
    for bad in (True, np.float64(2.0)):
        with pytest.raises(ValueError, match="chunk_size must be an int >= 1 or None"):
            mol.score_all(q, x, chunk_size=bad)


def test_check_int_and_check_count_ranges_hints_and_types():
    from rag_relax_plugins.core.scalars import check_count, check_int

    assert check_int("n", np.int64(3), 1, 5) == 3 and type(check_int("n", np.uint8(3))) is int
    assert check_int("n", -7) == -7  # no bound given: any integer
    with pytest.raises(ValueError, match=r"^n must be in \[1, 5\] \(why\), got 6$"):
        check_int("n", 6, 1, 5, hint="why")
    with pytest.raises(ValueError, match=r"^n must be <= 5, got 6$"):
        check_int("n", 6, high=5)
    for bad in (True, np.True_, 2.0, np.float32(2.0), "2", None):
        with pytest.raises(TypeError, match=r"^n must be an int, got"):
            check_int("n", bad, 1, hint="not in a type error")
    assert check_count("c", np.int32(0)) == 0
    with pytest.raises(ValueError, match=r"^c must be an int in \[0, 9\] \(T = 10\), got 10$"):
        check_count("c", 10, 0, 9, hint="T = 10")
    for bad in (True, 1.5, "1"):  # check_count raises ValueError for a wrong type, as it always did
        with pytest.raises(ValueError, match="c must be an int >= 0"):
            check_count("c", bad)


def test_counts_from_numpy_are_taken_outside_configs():
    """A count read off a numpy array or a pandas ``nunique()`` is a ``numpy.int64``: these were
    refused with 'must be an int >= 1, got 1682', a message that names a valid value."""
    from rag_relax_plugins.embedders.hashing import HashingEncoder
    from rag_relax_plugins.training.mol_loss import mixed_log_q
    from rag_relax_plugins.training.mol_towers import IdEmbeddingTower

    plain, numpy_made = HashingEncoder(dim=32, seed=5), HashingEncoder(dim=np.int64(32), seed=np.uint64(5))
    assert numpy_made.dim == 32 and type(numpy_made.dim) is int
    torch.testing.assert_close(numpy_made.encode(["a b", "c"]), plain.encode(["a b", "c"]))
    ids, probs = torch.tensor([0, 2]), torch.tensor([0.5, 0.25, 0.25])
    torch.testing.assert_close(
        mixed_log_q(ids, probs, batch_size=np.int64(4), num_uniform=np.int64(2), num_sampleable=np.int64(3)),
        mixed_log_q(ids, probs, batch_size=4, num_uniform=2, num_sampleable=3),
    )
    assert IdEmbeddingTower(np.int64(10), 4, mlp_hidden=np.int64(3)) is not None
    with pytest.raises(ValueError, match="num_sampleable must be an int in \\[1, 3\\]"):
        mixed_log_q(ids, probs, batch_size=4, num_uniform=2, num_sampleable=4)


def test_pair_data_takes_a_numpy_catalogue_size_as_an_int(tmp_path):
    """PairData kept num_items=np.int64(12) as it was: a checkpointed train_retrieval then failed
    in json.dumps of its run signature."""
    from rag_relax_plugins.core.mol import MoLSimilarity
    from rag_relax_plugins.training.mol_towers import IdEmbeddingTower, TwoTowerModel
    from rag_relax_plugins.training.mol_train import MoLTrainConfig, PairData, train_retrieval

    q = torch.arange(24) % 12
    data = PairData(q, (5 * q + 1) % 12, np.int64(12))
    assert type(data.num_items) is int and data.num_items == 12
    for bad in (12.0, True, 0):
        with pytest.raises(ValueError, match="num_items must be an int >= 1"):
            PairData(q, (5 * q + 1) % 12, bad)
    model = TwoTowerModel(IdEmbeddingTower(12, 8, padding_idx=None), IdEmbeddingTower(12, 8, padding_idx=None),
                          MoLSimilarity.cosine(8), np.int64(12))
    cfg = MoLTrainConfig(epochs=1, batch_size=8, checkpoint_dir=str(tmp_path), show_progress=False, device="cpu")
    train_retrieval(model, data, cfg)
    assert (tmp_path / "checkpoint_step_3" / "trainer_state.json").is_file()
