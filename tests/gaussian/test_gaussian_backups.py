"""A crash between the two renames of a replacing save leaves only ``.<name>.old-*``: the model
loader and the resume read that backup (``find_saved_folder``), as the rerankers' do."""

from __future__ import annotations

import json
import os

import pytest
import torch

from rag_relax_plugins.cli import main
from rag_relax_plugins.embedders.gaussian import GaussianConfig, GaussianEmbedder
from rag_relax_plugins.training.gaussian_train import TrainConfig, train

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_load_recovers_the_backup_a_crash_left(tmp_path) -> None:
    model = GaussianEmbedder(GaussianConfig(backbone="hashing:64", output_dim=16, freeze="all"), device="cpu")
    model.save(tmp_path / "m")
    os.replace(tmp_path / "m", tmp_path / ".m.old-abc123")
    loaded = GaussianEmbedder.load(tmp_path / "m", device="cpu")
    assert torch.equal(loaded.encode(["a text"]), model.encode(["a text"]))
    (tmp_path / "eval.json").write_text(json.dumps({"corpus": {"d": "a text", "e": "another one"}, "queries": {"q": "a text"},
                                                    "qrels": {"q": {"d": 1}}}))
    assert main(["evaluate", "--model", str(tmp_path / "m"), "--eval-file", str(tmp_path / "eval.json"),
                 "--device", "cpu"]) == 0
    with pytest.raises(FileNotFoundError, match="no Gaussian embedder at"):
        GaussianEmbedder.load(tmp_path / "other", device="cpu")


def test_resume_reads_the_backup_of_a_checkpoint(tmp_path) -> None:
    rows = [{"query": f"query number {i}", "positive": f"passage {i} about subject {i}"} for i in range(8)]
    (tmp_path / "t.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    base = dict(train_file=str(tmp_path / "t.jsonl"), batch_size=4, epochs=2, num_slices=8, show_progress=False,
                device="cpu", backbone="hashing:64", output_dim=16)
    full = train(TrainConfig(output_dir=str(tmp_path / "full"), **base))["history"]
    ck = tmp_path / "full" / "checkpoint_epoch_1"
    os.replace(ck, tmp_path / "full" / ".checkpoint_epoch_1.old-abc123")
    res = train(TrainConfig(output_dir=str(tmp_path / "res"), resume_from=str(ck), **base))["history"]
    assert res == full
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        train(TrainConfig(output_dir=str(tmp_path / "x"), resume_from=str(tmp_path / "nothing"), **base))
