"""Mixed-precision advice per device, and the warning for a projecting identity head."""

from __future__ import annotations

import json
import logging

import pytest
import torch

from rag_relax_plugins.training.gaussian_train import TrainConfig, precision_notes, train


def test_precision_notes_per_device() -> None:
    mps, cuda, cpu = torch.device("mps"), torch.device("cuda"), torch.device("cpu")
    assert precision_notes(cpu, None) == [] and precision_notes(mps, None) == []
    assert precision_notes(mps, "bf16") == ["mixed_precision=bf16 is not supported on mps; training in float32"]
    (fp16,) = precision_notes(mps, "fp16")
    assert "without loss scaling" in fp16 and "float32" in fp16 and "prefer bf16" not in fp16
    assert precision_notes(cpu, "fp16") == ["mixed_precision=fp16 is not supported on cpu; training in float32"]
    if not torch.cuda.is_available():
        assert precision_notes(cuda, "fp16") == []  # supported: scaled fp16, no warning


@pytest.mark.parametrize(("output_dim", "warned"), [(8, True), (32, False), (64, False)])
def test_identity_head_below_backbone_dim_warns(tmp_path, caplog, output_dim, warned) -> None:
    rows = [{"query": f"query {i}", "positive": f"passage {i}"} for i in range(4)]
    (tmp_path / "t.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    cfg = TrainConfig(train_file=str(tmp_path / "t.jsonl"), output_dir=str(tmp_path / "run"), backbone="hashing:32",
                      output_dim=output_dim, batch_size=4, num_slices=8, show_progress=False, device="cpu", save_checkpoints=False)
    with caplog.at_level(logging.WARNING, logger="rag_relax_plugins.training.gaussian_train"):
        train(cfg)
    assert any("below the backbone dimension 32" in r.getMessage() for r in caplog.records) == warned


def test_ignored_options_are_named() -> None:
    from rag_relax_plugins.training.gaussian_setup import ignored_options

    assert ignored_options(TrainConfig(train_file="x")) == []
    notes = ignored_options(TrainConfig(train_file="x", margin=2.0, num_slices=64, isotropy="covariance", target_std=2.0,
                                        lambda_predictor=0.5))
    assert [n.split("=")[0] for n in notes] == ["margin", "num_slices", "target_std", "lambda_predictor"]
    assert ignored_options(TrainConfig(train_file="x", loss="triplet", temperature=5.0, isotropy="none", lambda_isotropy=0.5,
                                       lambda_reg=0.1, target_std=2.0)) == [
        "temperature=5.0 is ignored: the temperature is used by InfoNCE only",
        "lambda_isotropy=0.5 is ignored: lambda_isotropy has no effect with isotropy='none'",
    ]
    used = TrainConfig(train_file="x", loss="triplet", margin=2.0, isotropy="covariance", lambda_isotropy=0.5, predictor=True,
                       lambda_predictor=0.5)
    assert ignored_options(used) == []
