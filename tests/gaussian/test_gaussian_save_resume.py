"""Self-contained saves, the evaluation baseline, best model and loss scaler across a resume."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pytest
import torch

from rag_relax_plugins.cli import main
from rag_relax_plugins.embedders.gaussian import GaussianEmbedder
from rag_relax_plugins.embedders.gaussian_config import GaussianConfig
from rag_relax_plugins.training.gaussian_checkpoint import load_checkpoint_state, save_checkpoint
from rag_relax_plugins.training.gaussian_data import synthesize_pairs
from rag_relax_plugins.training.gaussian_train import TrainConfig, train

TEXTS = ["cats purr softly", "the stock market fell", "rain is expected tomorrow", "bees make honey"]
WORDS = ("cats", "dogs", "stocks", "rain", "python", "paris", "bees", "lava", "chess", "coffee", "tea", "golf")
DOCS = [f"Topic {w} is discussed here. It has facts about {w} and more {w}." for w in WORDS]


def _fine_tuned_minilm() -> GaussianEmbedder:
    """MiniLM with its last layer changed, as after training with the first 4 layers frozen."""
    model = GaussianEmbedder(GaussianConfig(output_dim=8, freeze="first_n", freeze_layers=4, dropout=0.0), device="cpu")
    with torch.no_grad():
        for p in model.backbone[0].auto_model.encoder.layer[5].parameters():
            p.add_(0.05)
    return model


def test_frozen_resave_is_self_contained_and_can_replace_its_source(minilm_path, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    tuned = _fine_tuned_minilm()
    ref = tuned.encode(TEXTS)
    tuned.save("A")  # relative path, as `--output runs/g` gives
    frozen = GaussianEmbedder.load("A", device="cpu", freeze="all")  # train --init-model A --freeze-early-layers -1
    assert frozen.config.backbone == str((tmp_path / "A" / "backbone").resolve())  # not relative to the cwd
    assert frozen.backbone_fine_tuned and frozen.base_backbone is None
    frozen.save("B")
    saved = json.loads((tmp_path / "B" / "config.json").read_text())
    assert (tmp_path / "B" / "backbone").is_dir() and saved["backbone_subfolder"] == "backbone"
    assert saved["base_backbone"] is None and saved["backbone_fine_tuned"] is True
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    assert torch.allclose(GaussianEmbedder.load("../B", device="cpu").encode(TEXTS), ref, atol=1e-5)
    monkeypatch.chdir(tmp_path)
    frozen.save("A")  # over the folder its backbone was loaded from (same --output)
    again = GaussianEmbedder.load("A", device="cpu")
    assert again.config.freeze == "all" and torch.allclose(again.encode(TEXTS), ref, atol=1e-5)


def test_local_folder_backbone_is_copied_and_package_one_referenced(minilm_path, tmp_path) -> None:
    local = GaussianEmbedder(GaussianConfig(backbone=minilm_path, output_dim=8, freeze="all"), device="cpu")
    local.save(tmp_path / "local")
    saved = json.loads((tmp_path / "local" / "config.json").read_text())
    assert (tmp_path / "local" / "backbone").is_dir() and saved["backbone_fine_tuned"] is False
    assert saved["base_backbone"] == str(Path(minilm_path).resolve())
    package = GaussianEmbedder(GaussianConfig(output_dim=8, freeze="all"), device="cpu")
    package.save(tmp_path / "package")
    assert not (tmp_path / "package" / "backbone").exists()
    assert json.loads((tmp_path / "package" / "config.json").read_text())["backbone"] is None


def test_evaluate_baseline_uses_the_untrained_backbone(minilm_path, tmp_path) -> None:
    from rag_relax_plugins.embedders.sentence_transformer import SentenceTransformerEncoder
    from rag_relax_plugins.training.gaussian_eval import evaluate_model

    tuned = _fine_tuned_minilm()
    tuned.save(tmp_path / "A")
    GaussianEmbedder.load(tmp_path / "A", device="cpu", freeze="all").save(tmp_path / "B")
    data = {"corpus": {f"d{i}": t for i, t in enumerate(TEXTS)}, "queries": {"q": "honey bees"}, "qrels": {"q": {"d3": 1}}}
    (tmp_path / "eval.json").write_text(json.dumps(data))
    report = tmp_path / "r.json"
    assert main(["evaluate", "--model", str(tmp_path / "B"), "--eval-file", str(tmp_path / "eval.json"),
                 "--output", str(report), "--device", "cpu", "--baseline"]) == 0
    baseline = json.loads(report.read_text())["baseline"]
    untrained = evaluate_model(SentenceTransformerEncoder(None, device="cpu"), data, geometry="cosine")
    trained = evaluate_model(SentenceTransformerEncoder(str(tmp_path / "B" / "backbone"), device="cpu"), data, geometry="cosine")
    std = "per_dim_std"
    assert trained["diagnostics"][std] != pytest.approx(untrained["diagnostics"][std], abs=1e-3)  # distinguishable
    assert baseline["diagnostics"][std] == pytest.approx(untrained["diagnostics"][std], abs=1e-4)


@pytest.fixture
def wrong_pairs(tmp_path):
    """Training on mismatched positives makes every later epoch's validation loss worse."""
    pairs = synthesize_pairs(DOCS, negatives=True)
    train_file, val_file = tmp_path / "t.jsonl", tmp_path / "v.jsonl"
    bad = [{"query": p.query, "positive": pairs[(i + 1) % len(pairs)].positive} for i, p in enumerate(pairs)]
    train_file.write_text("\n".join(json.dumps(b) for b in bad))
    val_file.write_text("\n".join(json.dumps(p.to_dict()) for p in pairs))
    return dict(train_file=str(train_file), val_file=str(val_file), backbone="hashing:32", output_dim=8, batch_size=4,
                num_slices=8, learning_rate=1e-3, head_learning_rate=1e-2, show_progress=False, device="cpu", epochs=3)


@pytest.mark.parametrize("from_epoch", [1, 2])
def test_resume_into_new_folder_keeps_the_best_model(tmp_path, wrong_pairs, from_epoch) -> None:
    full = train(TrainConfig(output_dir=str(tmp_path / "a"), **wrong_pairs))
    val = full["history"]["val_loss"]
    assert val[0] < min(val[1:])  # epoch 1 is the best
    ck = tmp_path / "a" / f"checkpoint_epoch_{from_epoch}"
    assert (ck / "best_model").is_dir() == (from_epoch == 2)  # a later checkpoint carries the earlier best
    resumed = train(TrainConfig(output_dir=str(tmp_path / "b"), resume_from=str(ck), **wrong_pairs))
    assert resumed["best_val_loss"] == full["best_val_loss"] == val[0]
    assert resumed["best_epoch"] == full["best_epoch"] == 1  # the epoch best_model/ holds, carried through the resume

    def enc(path):
        return GaussianEmbedder.load(path, device="cpu").encode(["Topic cats"])

    epoch1 = enc(tmp_path / "a" / "checkpoint_epoch_1" / "model")
    assert torch.allclose(enc(tmp_path / "b" / "best_model"), epoch1)
    assert not torch.allclose(enc(tmp_path / "b" / "final_model"), epoch1)


def _scaled_step(scaler: torch.amp.GradScaler) -> tuple[torch.nn.Parameter, torch.optim.Optimizer]:
    w = torch.nn.Parameter(torch.ones(3))
    opt = torch.optim.SGD([w], lr=0.1)
    scaler.scale((w**2).sum()).backward()
    scaler.step(opt)
    scaler.update()
    return w, opt


def test_grad_scaler_state_round_trip(tmp_path, caplog) -> None:
    scaler = torch.amp.GradScaler("cpu", init_scale=512.0, growth_interval=5, enabled=True)
    _, opt = _scaled_step(scaler)
    _scaled_step(scaler)
    want = scaler.state_dict()
    assert want["_growth_tracker"] == 2  # not the initial state
    model = GaussianEmbedder(GaussianConfig(backbone="hashing:16", output_dim=4), device="cpu")
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    state = {"epoch": 1, "step": 0, "best": 1.0, "best_epoch": 1, "history": {"step_loss": [], "train_loss": [], "val_loss": []}}
    save_checkpoint(tmp_path / "ck", model=model, optimizer=opt, scheduler=sched, predictor=None, state=state, scaler=scaler)
    assert json.loads((tmp_path / "ck" / "trainer_state.json").read_text())["grad_scaler"] == want
    fresh = torch.amp.GradScaler("cpu", init_scale=512.0, growth_interval=5, enabled=True)
    load_checkpoint_state(tmp_path / "ck", optimizer=opt, scheduler=sched, predictor=None, scaler=fresh)
    assert fresh.state_dict() == want
    save_checkpoint(tmp_path / "ck0", model=model, optimizer=opt, scheduler=sched, predictor=None, state=state)
    other = torch.amp.GradScaler("cpu", init_scale=64.0, enabled=True)
    with caplog.at_level(logging.WARNING):
        load_checkpoint_state(tmp_path / "ck0", optimizer=opt, scheduler=sched, predictor=None, scaler=other)
    assert other.get_scale() == 64.0 and "loss-scaler" in caplog.text


def test_resume_from_a_checkpoint_missing_its_best_model_does_not_crash(tmp_path, wrong_pairs, caplog) -> None:
    """best_epoch stayed set when the checkpoint's best_model/ was missing: the next worse epoch's
    checkpoint then tried to copy a best_model/ that did not exist (as the MaxSim trainer knew)."""
    full = train(TrainConfig(output_dir=str(tmp_path / "a"), **wrong_pairs))
    ck = tmp_path / "a" / "checkpoint_epoch_2"
    shutil.rmtree(ck / "best_model")  # epoch 1 was the best: e.g. a copy of the checkpoint without it
    with caplog.at_level(logging.WARNING):
        resumed = train(TrainConfig(output_dir=str(tmp_path / "b"), resume_from=str(ck), **wrong_pairs))
    assert "holds no best model" in caplog.text
    assert (tmp_path / "b" / "checkpoint_epoch_3" / "model").is_dir()
    assert not (tmp_path / "b" / "checkpoint_epoch_3" / "best_model").exists()  # no earlier best model to store
    # best_model/ is then the final model, and what train reports describes it
    assert resumed["best_epoch"] == 3 and resumed["best_val_loss"] == resumed["history"]["val_loss"][-1]
    assert resumed["best_val_loss"] > full["best_val_loss"]
    # resumed into its own folder, whose best_model/ (epoch 1) is still there: it stays the best,
    # and the next checkpoint carries it
    same = train(TrainConfig(output_dir=str(tmp_path / "a"), resume_from=str(ck), **wrong_pairs))
    assert same["best_epoch"] == 1 and same["best_val_loss"] == full["best_val_loss"]
    assert (tmp_path / "a" / "checkpoint_epoch_3" / "best_model").is_dir()
