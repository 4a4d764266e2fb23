"""A resume takes the model settings the run really trained with; what a resume may change."""

from __future__ import annotations

import json

import pytest
import torch

from rag_relax_plugins.embedders.gaussian import GaussianConfig, GaussianEmbedder
from rag_relax_plugins.training import gaussian_checkpoint as ckpt
from rag_relax_plugins.training.gaussian_train import TrainConfig, train

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture
def base(tmp_path):
    rows = [{"query": f"query number {i}", "positive": f"passage {i} about subject {i}"} for i in range(8)]
    (tmp_path / "t.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    return dict(train_file=str(tmp_path / "t.jsonl"), batch_size=4, epochs=2, num_slices=8, show_progress=False, device="cpu")


def test_resume_of_a_run_with_a_model_passed_in(tmp_path, base) -> None:
    m = GaussianEmbedder(GaussianConfig(backbone="hashing:64", output_dim=16, freeze="all", dropout=0.5), device="cpu")
    full = train(TrainConfig(output_dir=str(tmp_path / "full"), **base), model=m)["history"]
    ck = tmp_path / "full" / "checkpoint_epoch_1"
    stored = json.loads((ck / "trainer_state.json").read_text())["config"]
    assert (stored["dropout"], stored["freeze_early_layers"]) == (0.5, -1)  # the settings trained with
    res = train(TrainConfig(output_dir=str(tmp_path / "res"), resume_from=str(ck), **base))["history"]
    assert res == full
    saved = json.loads((tmp_path / "res" / "final_model" / "config.json").read_text())
    assert (saved["dropout"], saved["freeze"]) == (0.5, "all")
    with pytest.raises(ValueError, match=r"different options: dropout \(checkpoint 0.5, now 0.3\)"):
        train(TrainConfig(output_dir=str(tmp_path / "x"), resume_from=str(ck), dropout=0.3, **base))


def test_cache_frozen_prefix_must_match_on_resume(tmp_path) -> None:
    assert "cache_frozen_prefix" not in ckpt.RESUME_RUNTIME_ONLY
    opts = TrainConfig(train_file="t.jsonl", freeze_early_layers=4).to_dict()
    (tmp_path / "trainer_state.json").write_text(json.dumps({"config": ckpt.checkpoint_options(opts)}))
    ckpt.check_resume(tmp_path, ckpt.checkpoint_options(opts))
    with pytest.raises(ValueError, match=r"cache_frozen_prefix \(checkpoint False, now True\)"):
        ckpt.check_resume(tmp_path, ckpt.checkpoint_options({**opts, "cache_frozen_prefix": True}))


def test_mps_generator_state_is_checkpointed(tmp_path, monkeypatch) -> None:
    state = torch.arange(16, dtype=torch.uint8)
    restored: list[torch.Tensor] = []
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    monkeypatch.setattr(torch.mps, "get_rng_state", lambda *a, **k: state.clone())
    monkeypatch.setattr(torch.mps, "set_rng_state", lambda s, *a, **k: restored.append(s))
    model = GaussianEmbedder(GaussianConfig(backbone="hashing:16", output_dim=4, freeze="all"), device="cpu")
    opt = torch.optim.AdamW(model.head.parameters())
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    ckpt.save_checkpoint(tmp_path / "ck", model=model, optimizer=opt, scheduler=sched, predictor=None,
                         state={"epoch": 1, "step": 0, "best": 1.0, "best_epoch": 1, "history": {"step_loss": [], "train_loss": [], "val_loss": []}})
    ckpt.load_checkpoint_state(tmp_path / "ck", optimizer=opt, scheduler=sched, predictor=None,
                               device=torch.device("mps"))
    assert len(restored) == 1 and torch.equal(restored[0], state)
    ckpt.load_checkpoint_state(tmp_path / "ck", optimizer=opt, scheduler=sched, predictor=None,
                               device=torch.device("cpu"))
    assert len(restored) == 1  # a CPU run leaves the caller's MPS generator alone


def test_resume_from_a_checkpoint_with_the_older_history(tmp_path, base) -> None:
    cfg = dict(base, backbone="hashing:64", output_dim=16)
    full = train(TrainConfig(output_dir=str(tmp_path / "full"), **cfg))["history"]
    ck = tmp_path / "full" / "checkpoint_epoch_1"
    state = json.loads((ck / "trainer_state.json").read_text())
    old = dict(state["history"])
    old["val_loss"] = old.pop("selection_loss")  # before: the selection loss was stored as val_loss
    (ck / "trainer_state.json").write_text(json.dumps({**state, "history": old}))
    res = train(TrainConfig(output_dir=str(tmp_path / "res"), resume_from=str(ck), **cfg))["history"]
    assert res == full and res["val_loss"] == [] and res["selection_loss"] == res["train_loss"]


def test_resume_of_a_model_run_checkpoint_written_before_the_settings_were_stored(tmp_path, base, caplog) -> None:
    """Before the fix, ``train(cfg, model=m)`` stored the TrainConfig defaults, not ``m``'s settings:
    such a checkpoint resumes with its model's settings (a warning), and an error never names a
    value the user did not give."""
    m = GaussianEmbedder(GaussianConfig(backbone="hashing:64", output_dim=16, freeze="all", dropout=0.5), device="cpu")
    full = train(TrainConfig(output_dir=str(tmp_path / "full"), **base), model=m)["history"]
    ck = tmp_path / "full" / "checkpoint_epoch_1"
    state = json.loads((ck / "trainer_state.json").read_text())
    state["config"].update(dropout=0.1, freeze_early_layers=0)  # what the older trainer stored
    (ck / "trainer_state.json").write_text(json.dumps(state))
    with caplog.at_level("WARNING"):
        res = train(TrainConfig(output_dir=str(tmp_path / "res"), resume_from=str(ck), **base))["history"]
    assert res == full
    assert "model/config.json" in caplog.text and "dropout" in caplog.text and "freeze_early_layers" in caplog.text
    saved = json.loads((tmp_path / "res" / "final_model" / "config.json").read_text())
    assert (saved["dropout"], saved["freeze"]) == (0.5, "all")
    explicit = train(TrainConfig(output_dir=str(tmp_path / "res2"), resume_from=str(ck), dropout=0.5, **base))["history"]
    assert explicit == full  # the model's own value, given explicitly
    with pytest.raises(ValueError, match=r"different options: dropout \(checkpoint 0.5, now 0.3\)$"):
        train(TrainConfig(output_dir=str(tmp_path / "x"), resume_from=str(ck), dropout=0.3, **base))


def test_an_option_neither_run_uses_may_differ_on_resume(tmp_path) -> None:
    """A margin with InfoNCE only warns "is ignored", but a resume without it was refused over it
    (review). An option one of the two runs uses is still compared."""
    opts = TrainConfig(train_file="t.jsonl", loss="infonce", margin=2.0, isotropy="none", num_slices=8).to_dict()
    (tmp_path / "trainer_state.json").write_text(json.dumps({"config": ckpt.checkpoint_options(opts)}))
    ckpt.check_resume(tmp_path, ckpt.checkpoint_options({**opts, "margin": 1.0, "num_slices": 256}))
    with pytest.raises(ValueError, match=r"different options: loss \(checkpoint 'infonce', now 'triplet'\), "
                                         r"margin \(checkpoint 2.0, now 1.0\)$"):
        ckpt.check_resume(tmp_path, ckpt.checkpoint_options({**opts, "loss": "triplet", "margin": 1.0}))
    with pytest.raises(ValueError, match=r"temperature \(checkpoint None, now 0.1\)"):  # InfoNCE uses it
        ckpt.check_resume(tmp_path, ckpt.checkpoint_options({**opts, "temperature": 0.1}))


def test_the_isotropy_options_are_unused_when_its_weight_is_zero(tmp_path) -> None:
    """With lambda_isotropy=0 the term is skipped: num_slices and isotropy were neither warned
    about nor allowed to differ on resume (review)."""
    from rag_relax_plugins.training.gaussian_setup import ignored_options

    cfg = TrainConfig(train_file="t.jsonl", lambda_isotropy=0.0, num_slices=8, isotropy="covariance")
    assert any(n.startswith("num_slices=8 is ignored") for n in ignored_options(cfg))
    assert any(n.startswith("isotropy='covariance' is ignored") for n in ignored_options(cfg))
    opts = cfg.to_dict()
    (tmp_path / "trainer_state.json").write_text(json.dumps({"config": ckpt.checkpoint_options(opts)}))
    ckpt.check_resume(tmp_path, ckpt.checkpoint_options({**opts, "num_slices": 16, "isotropy": "sigreg"}))


def test_a_run_with_the_isotropy_term_off_resumes_with_it_off_another_way(tmp_path) -> None:
    """isotropy='none' (lambda 0.05) and isotropy='sigreg' with lambda 0 both train without the
    term; the resume compared isotropy and lambda_isotropy and refused (review). Turning the term
    on is still refused."""
    opts = TrainConfig(train_file="t.jsonl", isotropy="none").to_dict()
    (tmp_path / "trainer_state.json").write_text(json.dumps({"config": ckpt.checkpoint_options(opts)}))
    ckpt.check_resume(tmp_path, ckpt.checkpoint_options({**opts, "isotropy": "sigreg", "lambda_isotropy": 0.0}))
    ckpt.check_resume(tmp_path, ckpt.checkpoint_options({**opts, "lambda_isotropy": 0.5}))
    with pytest.raises(ValueError, match=r"isotropy \(checkpoint 'none', now 'sigreg'\)"):
        ckpt.check_resume(tmp_path, ckpt.checkpoint_options({**opts, "isotropy": "sigreg"}))


@pytest.mark.parametrize(("option", "value", "message"), [
    ("seed", 10**14, "seed must be below 2\\*\\*32"),
    ("learning_rate", 1e39, r"learning_rate must be at most 1e\+30"),
    ("head_learning_rate", 1e38, r"head_learning_rate must be at most 1e\+30"),
])
def test_values_that_overflow_in_training_are_refused_up_front(option, value, message) -> None:
    """A seed of 1e14 failed at the first step with "Overflow when unpacking long long" and a
    learning rate of 1e39 inside AdamW, both with a traceback (review)."""
    with pytest.raises(ValueError, match=message):
        TrainConfig(train_file="t.jsonl", **{option: value})
