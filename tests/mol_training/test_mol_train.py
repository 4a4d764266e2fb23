"""Training loop: config, LR schedule, learning on tiny data, checkpoints and exact resume."""

from __future__ import annotations

import itertools
import json

import pytest
import torch

from rag_relax_plugins.core.mol import MoLConfig, MoLSimilarity
from rag_relax_plugins.training.mol_checkpoint import (
    FORMAT_VERSION,
    latest_checkpoint,
    load_checkpoint,
    save_checkpoint,
)
from rag_relax_plugins.training.mol_eval import next_item_metrics, score_all
from rag_relax_plugins.training.mol_towers import (
    DotProductSimilarity,
    FeatureTower,
    IdEmbeddingTower,
    TwoTowerModel,
)
from rag_relax_plugins.training.mol_train import (
    MoLTrainConfig,
    PairData,
    lr_at,
    plot_loss_curve,
    train_retrieval,
)


def _toy(n_items: int = 12, n_pairs: int = 96, seed: int = 0) -> PairData:
    """Query q likes item (5 q + 1) mod n: a permutation to be learned from ids."""
    g = torch.Generator().manual_seed(seed)
    q = torch.randint(0, n_items, (n_pairs,), generator=g)
    return PairData(q, (5 * q + 1) % n_items, n_items)


def _model(sim: str = "mol", n_items: int = 12, seed: int = 0) -> TwoTowerModel:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        qt = IdEmbeddingTower(n_items, 8, padding_idx=None, init_std=1.0)
        it = IdEmbeddingTower(n_items, 8, padding_idx=None, init_std=1.0)
        if sim == "mol":
            s: torch.nn.Module = MoLSimilarity(
                MoLConfig(query_dim=8, item_dim=8, num_query_embeddings=2, num_item_embeddings=2,
                          component_dim=4, gate_hidden_dim=8, softmax_dropout=0.1, mi_loss_weight=1e-2)
            )
        else:
            s = DotProductSimilarity(normalize=True, tau=0.1)
        return TwoTowerModel(qt, it, s, n_items)


def _cfg(**kw) -> MoLTrainConfig:
    base = {"epochs": 3, "batch_size": 16, "lr": 0.05, "num_negatives": 4, "warmup_steps": 2, "seed": 3,
            "device": "cpu", "show_progress": False}
    base.update(kw)
    return MoLTrainConfig(**base)


def test_config_round_trip_and_validation():
    cfg = _cfg(checkpoint_dir="x", mi_weight=0.5)
    assert MoLTrainConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    with pytest.raises(ValueError, match="unknown training options"):
        MoLTrainConfig.from_dict({"epochs": 1, "learning_rate": 1.0})
    for bad, match in [({"epochs": 0}, "epochs"), ({"lr": -1.0}, "lr"), ({"batch_size": 1.5}, "batch_size"),
                       ({"num_negatives": -1}, "num_negatives"), ({"mi_weight": float("nan")}, "mi_weight"),
                       ({"mixed_precision": "fp8"}, "mixed_precision"), ({"max_steps": 0}, "max_steps")]:
        with pytest.raises(ValueError, match=match):
            MoLTrainConfig(**bad)


def test_lr_schedule_is_pure_warmup_then_cosine():
    assert lr_at(0, total_steps=10, warmup_steps=4) == pytest.approx(0.25)
    assert lr_at(3, total_steps=10, warmup_steps=4) == pytest.approx(1.0)
    assert lr_at(4, total_steps=10, warmup_steps=4) == pytest.approx(1.0)
    assert lr_at(7, total_steps=10, warmup_steps=4) == pytest.approx(0.5)
    assert lr_at(10, total_steps=10, warmup_steps=4, min_ratio=0.1) == pytest.approx(0.1)
    vals = [lr_at(s, total_steps=20) for s in range(20)]
    assert all(a >= b for a, b in itertools.pairwise(vals))


def test_pair_data_validation():
    with pytest.raises(ValueError, match="same number of rows"):
        PairData(torch.zeros(3, dtype=torch.long), torch.zeros(2, dtype=torch.long), 4)
    with pytest.raises(ValueError, match="num_items"):
        PairData(torch.zeros(2, dtype=torch.long), torch.tensor([0, 4]), 4)
    with pytest.raises(ValueError, match="at least 2"):
        PairData(torch.zeros(1, dtype=torch.long), torch.zeros(1, dtype=torch.long), 4)


@pytest.mark.parametrize("sim", ["mol", "dot"])
def test_training_learns_the_toy_task(sim):
    data = _toy()
    model = _model(sim)
    queries = torch.arange(12)
    targets = (5 * queries + 1) % 12
    before = next_item_metrics(score_all(model, queries), targets, ks=(1,))["hr@1"]
    result = train_retrieval(model, data, _cfg(epochs=12))
    after = next_item_metrics(score_all(model, queries), targets, ks=(1,))["hr@1"]
    assert after >= 0.9 > before
    losses = result.history["step_loss"]
    assert sum(losses[-5:]) / 5 < 0.5 * sum(losses[:5]) / 5
    if sim == "mol":  # the MoL module's L_MI is reported
        assert "mol_mi" in result.history["step_parts"][0]


def test_mi_loss_is_trained_by_default_and_mi_weight_scales_it():
    """L_MI enters the loss with the default mi_weight=1; mi_weight=0 equals a module without it."""
    assert MoLTrainConfig().mi_weight == 1.0
    data = _toy()
    base = train_retrieval(_model(), data, _cfg(epochs=1, mi_weight=0.0)).history
    with_mi = train_retrieval(_model(), data, _cfg(epochs=1)).history
    # the first step's loss is the softmax loss plus the (weighted) L_MI of the same weights
    parts = with_mi["step_parts"][0]
    assert with_mi["step_loss"][0] == pytest.approx(parts["softmax"] + parts["mol_mi"], rel=1e-5, abs=1e-6)
    assert base["step_loss"][0] == pytest.approx(base["step_parts"][0]["softmax"], rel=1e-6)
    assert with_mi["step_loss"][1:] != base["step_loss"][1:]  # the gradient of L_MI changed the weights
    no_mi_model = _model()
    no_mi_model.similarity.config = MoLConfig.from_dict({**no_mi_model.similarity.config.to_dict(), "mi_loss_weight": 0.0})
    no_mi = train_retrieval(no_mi_model, data, _cfg(epochs=1)).history
    assert no_mi["step_loss"] == pytest.approx(base["step_loss"], rel=1e-6)


def test_sampled_negatives_that_are_relevant_to_the_query_are_masked():
    """A sampled negative holding another positive of the row's query key is not a negative."""
    from rag_relax_plugins.training.mol_loss import sampled_softmax_loss_reference
    from rag_relax_plugins.training.mol_train import training_step_loss

    # query key 0 has positives 1 and 3; key 1 has positive 2
    data = PairData(torch.tensor([0, 0, 1]), torch.tensor([1, 3, 2]), 6, query_keys=torch.tensor([0, 0, 1]))
    assert data.relevant_codes().tolist() == [1, 3, 8]
    model = _model("dot", n_items=6).eval()
    pos, negs = torch.tensor([1, 2]), torch.tensor([3, 4, 1])  # rows: key 0 (pos 1), key 1 (pos 2)
    keys = torch.tensor([0, 1])
    cfg = _cfg(logq_correction=False)
    got, _ = training_step_loss(model, torch.tensor([0, 1]), pos, negs, cfg, query_keys=keys,
                                relevant_codes=data.relevant_codes())
    cand = torch.cat([pos, negs])
    scores, _ = model(torch.tensor([0, 1]), cand)
    exclude = torch.zeros(2, 5, dtype=torch.bool)
    exclude[0, 2] = True  # item 3 is relevant to key 0; item 1 in column 4 is row 0's accidental hit
    want = sampled_softmax_loss_reference(scores.float(), pos, cand, exclude=exclude)
    torch.testing.assert_close(got, want)
    in_batch_only, _ = training_step_loss(model, torch.tensor([0, 1]), pos, negs, cfg, query_keys=keys)
    assert float(in_batch_only.detach()) > float(got.detach())  # item 3 counted as a negative for key 0 there


def test_training_does_not_touch_the_global_rng():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    train_retrieval(_model(), _toy(), _cfg(epochs=1))
    torch.testing.assert_close(torch.rand(3), expected)


def test_seeded_runs_are_identical_and_seeds_differ():
    a = train_retrieval(_model(), _toy(), _cfg()).history["step_loss"]
    b = train_retrieval(_model(), _toy(), _cfg()).history["step_loss"]
    c = train_retrieval(_model(), _toy(), _cfg(seed=4)).history["step_loss"]
    assert a == b
    assert a != c


@pytest.mark.parametrize("stop", [4, 6])  # 6 steps per epoch: mid-epoch and epoch boundary
def test_interrupted_then_resumed_equals_uninterrupted(tmp_path, stop):
    data = _toy()
    full_model = _model()
    full = train_retrieval(full_model, data, _cfg(checkpoint_dir=str(tmp_path / "full")))

    part_model = _model()
    cfg = _cfg(checkpoint_dir=str(tmp_path / "run"), save_every_steps=2)
    first = train_retrieval(part_model, data, _cfg(checkpoint_dir=cfg.checkpoint_dir, save_every_steps=2, max_steps=stop))
    assert first.steps == stop
    assert latest_checkpoint(tmp_path / "run").name == f"checkpoint_step_{stop}"
    fresh = _model(seed=99)  # different initial weights: everything must come from the checkpoint
    resumed = train_retrieval(fresh, data, cfg, resume=True)
    assert resumed.steps == full.steps == 18
    assert resumed.history["step_loss"] == full.history["step_loss"]
    assert resumed.history["epoch_loss"] == full.history["epoch_loss"]
    for (name, p), q in zip(full_model.state_dict().items(), fresh.state_dict().values()):
        torch.testing.assert_close(p, q, rtol=0, atol=0, msg=name)


def test_checkpoints_are_pruned_versioned_and_checked(tmp_path):
    ck = tmp_path / "ck"
    train_retrieval(_model(), _toy(), _cfg(checkpoint_dir=str(ck), save_every_steps=1, keep_checkpoints=2))
    names = sorted(p.name for p in ck.iterdir())
    assert names == ["checkpoint_step_17", "checkpoint_step_18"]
    assert not any(p.name.startswith(".") for p in ck.iterdir())  # no temporary folders left
    state = json.loads((ck / "checkpoint_step_18" / "trainer_state.json").read_text())
    assert state["format_version"] == FORMAT_VERSION and state["step"] == 18
    with pytest.raises(ValueError, match="different options"):
        train_retrieval(_model(), _toy(), _cfg(checkpoint_dir=str(ck), lr=0.01), resume=True)
    state["format_version"] = 99
    (ck / "checkpoint_step_18" / "trainer_state.json").write_text(json.dumps(state))
    with pytest.raises(ValueError, match="format_version"):
        load_checkpoint(ck / "checkpoint_step_18", _model())
    with pytest.raises(ValueError, match="does not match"):
        load_checkpoint(ck / "checkpoint_step_17", _model("dot"))
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        load_checkpoint(tmp_path / "nope", _model())


def test_a_refused_checkpoint_leaves_the_model_and_optimiser_as_they_were(tmp_path):
    """A checkpoint missing one weight, or whose optimiser state does not fit, is refused before
    anything is loaded: load_state_dict(strict=False) had copied every matching weight first."""
    from safetensors.torch import load_file, save_file

    ck = tmp_path / "ck"
    train_retrieval(_model(), _toy(), _cfg(epochs=1, checkpoint_dir=str(ck)))
    folder = latest_checkpoint(ck)
    weights = load_file(str(folder / "model.safetensors"))
    dropped = sorted(weights)[0]
    save_file({k: v for k, v in weights.items() if k != dropped}, str(folder / "model.safetensors"))
    model = _model(seed=7)
    opt = torch.optim.AdamW(model.parameters(), lr=0.1)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError, match=rf"does not match the model: missing \['{dropped}'\]"):
        load_checkpoint(folder, model, opt)
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
    save_file(weights, str(folder / "model.safetensors"))  # the weights fit again; the optimiser not:
    two_groups = torch.optim.AdamW([{"params": [p]} for p in model.parameters()], lr=0.1)
    with pytest.raises(ValueError, match="optimiser parameter groups"):
        load_checkpoint(folder, model, two_groups)
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
    params = list(model.parameters())  # as many groups as saved (1), split otherwise: torch refused
    other_split = torch.optim.AdamW([{"params": params[:2]}, {"params": params[2:]}], lr=0.1)  # it late
    saved_split = torch.optim.AdamW([{"params": params[:1]}, {"params": params[1:]}], lr=0.1)
    two = tmp_path / "two_groups"
    save_checkpoint(two, _model(), saved_split, json.loads((folder / "trainer_state.json").read_text()))
    with pytest.raises(ValueError, match=r"optimizer.json: its parameter groups hold \[1, \d+\] parameters"):
        load_checkpoint(two, model, other_split)
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
    load_checkpoint(folder, model, opt)  # the intact checkpoint loads both
    assert torch.equal(model.state_dict()[dropped], weights[dropped]) and opt.state


def test_feature_towers_keep_features_out_of_checkpoints(tmp_path):
    feats = torch.randn(12, 8, generator=torch.Generator().manual_seed(0))
    model = TwoTowerModel(FeatureTower(feats), FeatureTower(feats, adapter="linear"), DotProductSimilarity(True, 0.1), 12)
    train_retrieval(model, _toy(), _cfg(epochs=1, checkpoint_dir=str(tmp_path)))
    from safetensors.torch import load_file

    keys = set(load_file(str(latest_checkpoint(tmp_path) / "model.safetensors")))
    assert keys == {"item_tower.adapter.weight", "item_tower.adapter.bias"}


def test_errors_name_the_problem():
    with pytest.raises(TypeError, match="TwoTowerModel"):
        train_retrieval(torch.nn.Linear(2, 2), _toy(), _cfg())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="num_items"):
        train_retrieval(_model(n_items=13), _toy(), _cfg())
    frozen = TwoTowerModel(FeatureTower(torch.randn(12, 4)), FeatureTower(torch.randn(12, 4)), DotProductSimilarity(), 12)
    with pytest.raises(ValueError, match="no trainable parameters"):
        train_retrieval(frozen, _toy(), _cfg())


def test_loss_curve_png(tmp_path):
    result = train_retrieval(_model(), _toy(), _cfg(epochs=2))
    result.history["eval"] = [{"epoch": 1, "hr@10": 0.1}, {"epoch": 2, "hr@10": 0.2}]
    path = plot_loss_curve(result.history, tmp_path / "curve.png")
    assert path is not None and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_resume_rejects_a_changed_model_or_data_and_takes_a_path(tmp_path):
    ck = tmp_path / "ck"
    data = _toy()
    train_retrieval(_model(), data, _cfg(checkpoint_dir=str(ck), max_steps=4))
    state = json.loads((ck / "checkpoint_step_4" / "trainer_state.json").read_text())
    assert set(state["signature"]) == {"model", "data", "features", "model_settings"}
    other_tau = _model()
    other_tau.similarity.config = MoLConfig.from_dict({**other_tau.similarity.config.to_dict(), "tau": 0.5})
    with pytest.raises(ValueError, match="different model configuration") as err:
        train_retrieval(other_tau, data, _cfg(checkpoint_dir=str(ck)), resume=True)
    # the message names the checkpoint and what changed (it said only "e.g. tau, dropout, ...")
    assert str(ck / "checkpoint_step_4") in str(err.value)
    assert "(changed: similarity.config.tau (checkpoint 0.05, now 0.5))" in str(err.value)
    with pytest.raises(ValueError, match="different training data"):
        train_retrieval(_model(), _toy(seed=1), _cfg(checkpoint_dir=str(ck)), resume=True)
    dot = TwoTowerModel(IdEmbeddingTower(12, 8, padding_idx=None), IdEmbeddingTower(12, 8, padding_idx=None),
                        DotProductSimilarity(normalize=True, tau=0.1), 12)
    train_retrieval(dot, data, _cfg(checkpoint_dir=str(tmp_path / "dot"), max_steps=2))
    dot.similarity.tau = 0.2
    with pytest.raises(ValueError, match=r"changed: similarity.tau \(checkpoint 0.1, now 0.2\)"):
        train_retrieval(dot, data, _cfg(checkpoint_dir=str(tmp_path / "dot")), resume=True)
    # a pathlib.Path resumes from that folder, with no checkpoint_dir in the new options
    by_path = train_retrieval(_model(seed=7), data, _cfg(max_steps=6), resume=ck / "checkpoint_step_4")
    by_str = train_retrieval(_model(seed=8), data, _cfg(max_steps=6), resume=str(ck / "checkpoint_step_4"))
    fresh = train_retrieval(_model(seed=7), data, _cfg(max_steps=6))
    assert by_path.history["step_loss"] == by_str.history["step_loss"] != fresh.history["step_loss"]
    # a checkpoint without a signature (written before signatures existed) still resumes
    del state["signature"]
    (ck / "checkpoint_step_4" / "trainer_state.json").write_text(json.dumps(state))
    assert train_retrieval(_model(), data, _cfg(max_steps=5), resume=ck / "checkpoint_step_4").steps == 5


def test_resuming_an_older_checkpoint_keeps_the_one_it_writes(tmp_path):
    ck = tmp_path / "ck"
    data = _toy()
    train_retrieval(_model(), data, _cfg(checkpoint_dir=str(ck), save_every_steps=2, keep_checkpoints=20, max_steps=8))
    result = train_retrieval(_model(), data, _cfg(checkpoint_dir=str(ck), save_every_steps=2, keep_checkpoints=1,
                                                  max_steps=6), resume=ck / "checkpoint_step_4")
    assert result.checkpoint is not None and result.checkpoint.name == "checkpoint_step_6"
    assert result.checkpoint.is_dir()
    assert sorted(p.name for p in ck.iterdir()) == ["checkpoint_step_6", "checkpoint_step_8"]


def test_a_refused_resume_leaves_the_callers_model_untouched(tmp_path):
    ck = tmp_path / "ck"
    train_retrieval(_model(), _toy(), _cfg(checkpoint_dir=str(ck), max_steps=2))
    fresh = _model(seed=5)
    before = {k: v.clone() for k, v in fresh.state_dict().items()}
    with pytest.raises(ValueError, match="lr"):
        train_retrieval(fresh, _toy(), _cfg(checkpoint_dir=str(ck), lr=0.5), resume=True)
    assert all(torch.equal(before[k], v) for k, v in fresh.state_dict().items())  # was overwritten


def test_resume_refuses_other_frozen_features(tmp_path):
    g = torch.Generator().manual_seed(0)
    fq, fd = torch.randn(10, 8, generator=g), torch.randn(20, 8, generator=g)

    def model(q: torch.Tensor, d: torch.Tensor) -> TwoTowerModel:
        torch.manual_seed(0)
        return TwoTowerModel(FeatureTower(q), FeatureTower(d), MoLSimilarity(MoLConfig(
            query_dim=8, item_dim=8, num_query_embeddings=2, num_item_embeddings=2, component_dim=4,
            gate_hidden_dim=4)), 20)

    data = PairData(torch.arange(10), torch.randint(0, 20, (10,), generator=g), 20, query_keys=torch.arange(10))
    cfg = _cfg(batch_size=5, num_negatives=3, checkpoint_dir=str(tmp_path / "ck"))
    train_retrieval(model(fq, fd), data, MoLTrainConfig.from_dict({**cfg.to_dict(), "max_steps": 2}))
    with pytest.raises(ValueError, match="different frozen features"):
        train_retrieval(model(fq, fd + 0.01), data, cfg, resume=True)  # was: resumed silently
    assert train_retrieval(model(fq, fd), data, cfg, resume=True).steps == cfg.epochs * 2


def test_batch_size_one_without_negatives_is_refused():
    with pytest.raises(ValueError, match="batch_size 1"):
        _cfg(batch_size=1, num_negatives=0)
    _cfg(batch_size=1, num_negatives=3)


def test_cpu_training_and_model_building_leave_the_cuda_rngs_alone(monkeypatch):
    from rag_relax_plugins.training.mol_runs import _init_model

    model, data = _model(), _toy()  # (the test helper seeds with torch.manual_seed itself)
    calls: list[object] = []
    monkeypatch.setattr(torch.cuda, "manual_seed_all", lambda seed: calls.append(("all", seed)))
    monkeypatch.setattr(torch.cuda, "manual_seed", lambda seed: calls.append(("one", seed)))
    before = torch.get_rng_state()
    train_retrieval(model, data, _cfg(max_steps=3))
    built = _init_model(lambda: torch.nn.Linear(3, 3), 4)
    assert torch.equal(built.weight, _init_model(lambda: torch.nn.Linear(3, 3), 4).weight)  # seeded
    assert calls == []  # torch.manual_seed reseeded every CUDA device, unrestored by fork_rng
    assert torch.equal(torch.get_rng_state(), before)  # and the CPU generator is restored


def test_resume_finds_the_checkpoint_a_crash_left_between_the_two_renames(tmp_path):
    """A crash while a checkpoint folder was being replaced leaves only ``.<name>.old-*``;
    a resume from the folder's path reads that backup (as the model loaders do)."""
    import os

    data = _toy()
    train_retrieval(_model(), data, _cfg(checkpoint_dir=str(tmp_path / "ck"), max_steps=4))
    ck = tmp_path / "ck" / "checkpoint_step_4"
    expected = train_retrieval(_model(seed=7), data, _cfg(max_steps=6), resume=ck)
    os.replace(ck, tmp_path / "ck" / ".checkpoint_step_4.old-abc123")
    resumed = train_retrieval(_model(seed=7), data, _cfg(max_steps=6), resume=ck)
    assert resumed.history["step_loss"] == expected.history["step_loss"]
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        train_retrieval(_model(), data, _cfg(max_steps=6), resume=tmp_path / "ck" / "nothing_here")


def test_resume_without_a_checkpoint_warns(tmp_path, caplog):
    """A --resume into a folder with no checkpoint (a typo in --output) started fresh with only an INFO line."""
    with caplog.at_level("WARNING", logger="rag_relax_plugins.training.mol_train"):
        train_retrieval(_model(), _toy(), _cfg(epochs=1, checkpoint_dir=str(tmp_path / "ck")), resume=True)
    assert "resume requested but no checkpoint found" in caplog.text


def test_the_models_excluded_items_are_never_negatives():
    """TwoTowerModel(excluded_items=(0,)) was stored but never read: with PairData lacking it, the
    padding id 0 was drawn as a training negative."""
    seen: list[torch.Tensor] = []

    class Recording(IdEmbeddingTower):
        def forward(self, ids: torch.Tensor) -> torch.Tensor:
            seen.append(ids.detach().clone())
            return super().forward(ids)

    n = 6
    model = TwoTowerModel(IdEmbeddingTower(n, 4, padding_idx=None), Recording(n, 4, padding_idx=0),
                          DotProductSimilarity(), n, excluded_items=(0,))
    q, items = torch.tensor([1, 2, 3, 4, 5, 1, 2, 3]), torch.tensor([2, 3, 4, 5, 1, 3, 4, 5])
    train_retrieval(model, PairData(q, items, n), MoLTrainConfig(epochs=2, batch_size=4, num_negatives=8,
                                                                  device="cpu", show_progress=False))
    ids = torch.cat(seen)
    assert ids.numel() > 16 and not bool((ids == 0).any())  # negatives drawn, never the padding id


def test_a_fresh_run_replaces_the_checkpoints_an_earlier_run_left(tmp_path, caplog):
    """A fresh run into a used checkpoint_dir kept the earlier run's later checkpoints, and
    resume=True (train-mol --resume) then picked those: the interrupted new run could not resume."""
    ck = tmp_path / "ck"
    train_retrieval(_model(), _toy(), _cfg(checkpoint_dir=str(ck)))  # run A: 18 steps
    (ck / "checkpoint_step_99").mkdir()  # not a save of this package: left alone
    with caplog.at_level("WARNING"):
        train_retrieval(_model(), _toy(), _cfg(checkpoint_dir=str(ck), lr=0.01, max_steps=7))  # run B, stopped
    assert "checkpoint_step_18" in caplog.text  # named as it is removed
    assert sorted(p.name for p in ck.iterdir()) == ["checkpoint_step_6", "checkpoint_step_7", "checkpoint_step_99"]
    resumed = train_retrieval(_model(), _toy(), _cfg(checkpoint_dir=str(ck), lr=0.01), resume=True)
    full = train_retrieval(_model(), _toy(), _cfg(checkpoint_dir=str(tmp_path / "c"), lr=0.01))
    assert resumed.history["step_loss"] == full.history["step_loss"]  # run B resumed from its own step 7


def test_a_fresh_run_that_fails_before_its_first_checkpoint_keeps_the_earlier_ones(tmp_path, monkeypatch):
    """The earlier run's checkpoints were deleted before the first step: a run failing then lost them."""
    import rag_relax_plugins.training.mol_train as mt

    ck = tmp_path / "ck"
    train_retrieval(_model(), _toy(), _cfg(checkpoint_dir=str(ck)))
    before = sorted(p.name for p in ck.iterdir())

    def fail(*args, **kwargs):
        raise RuntimeError("out of memory")

    monkeypatch.setattr(mt, "training_step_loss", fail)
    with pytest.raises(RuntimeError, match="out of memory"):
        train_retrieval(_model(), _toy(), _cfg(checkpoint_dir=str(ck), lr=0.01))
    assert sorted(p.name for p in ck.iterdir()) == before


def test_checkpoints_from_before_saves_recorded_their_kind_are_replaced_too(tmp_path):
    from rag_relax_plugins._io import SAVE_MARKER

    ck = tmp_path / "ck"
    train_retrieval(_model(), _toy(), _cfg(checkpoint_dir=str(ck)))
    for folder in ck.iterdir():  # as an older version wrote them: a marker without a kind
        (folder / SAVE_MARKER).write_text("{}", encoding="utf-8")
    train_retrieval(_model(), _toy(), _cfg(checkpoint_dir=str(ck), lr=0.01, max_steps=7))
    assert sorted(p.name for p in ck.iterdir()) == ["checkpoint_step_6", "checkpoint_step_7"]


def test_mixed_precision_the_device_cannot_run_is_said(caplog):
    """train-mol trained fp16 on MPS without loss scaling, and bf16 / fp16 on CPU in float32,
    saying nothing; the Gaussian trainer's precision notes are logged now (shared in core.device)."""
    import logging

    from rag_relax_plugins.core.device import precision_notes

    with caplog.at_level(logging.WARNING, logger="rag_relax_plugins.training.mol_train"):
        train_retrieval(_model(), _toy(), _cfg(epochs=1, mixed_precision="bf16"))
    assert "mixed_precision=bf16 is not supported on cpu; training in float32" in caplog.text
    assert "without loss scaling" in precision_notes(torch.device("mps"), "fp16")[0]
    assert precision_notes(torch.device("cpu"), "no") == []


def test_a_diverged_run_is_a_value_error_naming_the_step():
    """A non-finite loss raised FloatingPointError, which the CLI showed as a traceback (review)."""
    with pytest.raises(ValueError, match=r"training diverged at step 1 \(loss is -?(inf|nan)\): lower"):
        train_retrieval(_model(), _toy(), _cfg(epochs=1, mi_weight=1e300))


def test_resume_true_needs_a_checkpoint_dir():
    """``resume=True`` without ``checkpoint_dir`` logged "no checkpoint found in None" and started fresh."""
    with pytest.raises(ValueError, match=r"resume=True looks for the latest checkpoint in cfg\.checkpoint_dir"):
        train_retrieval(_model(), _toy(), _cfg(epochs=1), resume=True)


def test_resume_none_starts_fresh_and_other_values_are_refused(tmp_path):
    """``resume=None`` (an absent option), ``0`` or ``[]`` resumed from the latest checkpoint: the
    new model got the earlier run's weights and trained no step (review 2026-12-05)."""
    import numpy as np

    d = str(tmp_path / "ck")
    train_retrieval(_model(seed=1), _toy(), _cfg(epochs=1, checkpoint_dir=d))  # an earlier run's checkpoints
    fresh_model, ref_model = _model(), _model()
    fresh = train_retrieval(fresh_model, _toy(), _cfg(epochs=1, checkpoint_dir=d), resume=None)
    ref = train_retrieval(ref_model, _toy(), _cfg(epochs=1))
    assert fresh.history["step_loss"] == ref.history["step_loss"]  # a fresh run, not the earlier one
    assert all(torch.equal(v, ref_model.state_dict()[k]) for k, v in fresh_model.state_dict().items())
    model = _model()
    again = train_retrieval(model, _toy(), _cfg(epochs=1, checkpoint_dir=d), resume=np.bool_(True))
    assert again.history["step_loss"] == fresh.history["step_loss"]  # resumed at the end: no new step
    got, want = model.state_dict(), fresh_model.state_dict()
    assert all(torch.equal(got[k], want[k]) for k in want)  # the checkpoint's weights, loaded
    for bad in (0, [], 1.0):
        with pytest.raises(TypeError, match="resume must be True, False, None or a checkpoint folder"):
            train_retrieval(_model(), _toy(), _cfg(epochs=1, checkpoint_dir=d), resume=bad)


def test_a_path_checkpoint_dir_is_kept_as_a_string(tmp_path):
    """A ``Path`` was accepted, then failed at the first checkpoint, after an epoch (JSON)."""
    cfg = _cfg(epochs=1, checkpoint_dir=tmp_path / "ck")
    assert cfg.checkpoint_dir == str(tmp_path / "ck")
    assert MoLTrainConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    result = train_retrieval(_model(), _toy(), cfg)
    assert result.checkpoint is not None and result.checkpoint.parent == tmp_path / "ck"
    with pytest.raises(TypeError, match="checkpoint_dir must be a str, a PathLike or None, got int"):
        _cfg(checkpoint_dir=3)


def test_bfloat16_query_inputs_checkpoint_and_resume(tmp_path):
    """The run signature hashed queries through numpy, which has no bfloat16 (review 2026-12-05)."""
    from rag_relax_plugins.training.mol_train import run_signature

    data = _toy()
    feats = PairData(torch.randn(len(data.items), 8).to(torch.bfloat16), data.items, data.num_items)
    sig = run_signature(_model(), feats)
    assert sig and sig == run_signature(_model(), feats)
    other = PairData(feats.queries.clone(), data.items, data.num_items)
    other.queries[0, 0] += 1
    assert run_signature(_model(), other) != sig


def test_no_loss_curve_without_steps(tmp_path):
    """A run with no step (HotpotQA with the dot product) wrote an empty loss_curve.png."""
    assert plot_loss_curve({"step_loss": []}, tmp_path / "curve.png") is None
    assert not (tmp_path / "curve.png").exists()


def test_pruning_leaves_folders_named_like_checkpoints_that_are_not(tmp_path):
    """Rotation deleted any ``checkpoint_step_N`` folder by its name, a user's folder too (review)."""
    ck = tmp_path / "ck"
    mine = ck / "checkpoint_step_1"
    mine.mkdir(parents=True)
    (mine / "notes.txt").write_text("keep", encoding="utf-8")
    train_retrieval(_model(), _toy(), _cfg(checkpoint_dir=str(ck), save_every_steps=2, keep_checkpoints=2, max_steps=6))
    assert (mine / "notes.txt").read_text(encoding="utf-8") == "keep"
    assert sorted(p.name for p in ck.iterdir()) == ["checkpoint_step_1", "checkpoint_step_4", "checkpoint_step_6"]


def test_the_model_hash_leaves_the_warm_start_out_and_the_settings_carry_it():
    from rag_relax_plugins.training.mol_train import run_signature

    model, data = _model(), _toy()
    before = run_signature(model, data)
    model.warm_start_noise = 0.3
    after = run_signature(model, data)
    assert before["model"] == after["model"]  # what checkpoints before 2026-12-04 recorded
    assert json.loads(after["model_settings"])["model.warm_start_noise"] == 0.3
    assert "model.warm_start_noise" not in json.loads(before["model_settings"])


def test_trains_on_a_torch_without_torch_amp_grad_scaler(monkeypatch):
    """torch 2.2 has no torch.amp.GradScaler (review 2026-12-05): the trainer built one on every device."""
    import warnings

    ref = train_retrieval(_model(), _toy(), _cfg(epochs=1))
    monkeypatch.delattr(torch.amp, "GradScaler")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        got = train_retrieval(_model(), _toy(), _cfg(epochs=1))
    assert got.history["step_loss"] == ref.history["step_loss"]


def test_a_history_missing_a_list_is_refused_before_the_model_changes(tmp_path):
    # read_trainer_state checked no history list: {} loaded the weights, then the loop raised
    # KeyError 'step_loss' (corrupt-file review)
    train_retrieval(_model(), _toy(), _cfg(checkpoint_dir=str(tmp_path), save_every_steps=2, max_steps=4))
    ck = latest_checkpoint(tmp_path)
    state = json.loads((ck / "trainer_state.json").read_text())
    state["history"] = {"step_loss": [], "step_parts": [], "epoch_loss": []}
    (ck / "trainer_state.json").write_text(json.dumps(state))
    model = _model(seed=99)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError, match=r"'history' must hold the lists .*'eval'"):
        train_retrieval(model, _toy(), _cfg(), resume=ck)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


@pytest.mark.parametrize("dtype", [torch.int64, torch.float16])
def test_weights_of_another_dtype_are_refused_before_the_model_changes(tmp_path, dtype):
    # load_state_dict cast them silently and the resumed run differed (corrupt-file review)
    from safetensors.torch import load_file, save_file

    train_retrieval(_model(), _toy(), _cfg(checkpoint_dir=str(tmp_path), save_every_steps=2, max_steps=4))
    ck = latest_checkpoint(tmp_path)
    weights = load_file(str(ck / "model.safetensors"))
    first = sorted(weights)[0]
    weights[first] = weights[first].to(dtype)
    save_file(weights, str(ck / "model.safetensors"))
    model = _model(seed=99)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError, match=rf"weight\(s\) of another dtype, e.g. {first} {dtype} saved vs torch.float32"):
        train_retrieval(model, _toy(), _cfg(), resume=ck)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_a_step_that_disagrees_with_the_history_is_refused(tmp_path):
    # step 10**6 "resumed" past the schedule and returned without training (corrupt-file review)
    train_retrieval(_model(), _toy(), _cfg(checkpoint_dir=str(tmp_path), save_every_steps=2, max_steps=4))
    ck = latest_checkpoint(tmp_path)
    state = json.loads((ck / "trainer_state.json").read_text())
    state["step"] = 10**6
    (ck / "trainer_state.json").write_text(json.dumps(state))
    with pytest.raises(ValueError, match=r"'step' is 1000000, but 'history' holds 4 'step_loss' entries"):
        train_retrieval(_model(seed=99), _toy(), _cfg(), resume=ck)
