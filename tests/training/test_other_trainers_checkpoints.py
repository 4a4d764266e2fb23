"""A checkpoint or a save of one kind handed to the code of another is refused by name.

Before, resuming ``train-maxsim`` from a Gaussian checkpoint failed with a list of "different
options" (backbone, batch_size, ...) that never said the checkpoint was another trainer's, and
the other way round with a KeyError-like "not a readable Gaussian embedder config ('dropout')";
loading a checkpoint folder as a model said "no Gaussian embedder at ... (needs config.json and
head.safetensors)" without pointing at its ``model/``."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from rag_relax_plugins.embedders.gaussian import GaussianEmbedder
from rag_relax_plugins.rerankers.gumbel import GumbelReranker
from rag_relax_plugins.rerankers.maxsim import MaxSimReranker
from rag_relax_plugins.training import _run_files
from rag_relax_plugins.training.gaussian_train import TrainConfig, train
from rag_relax_plugins.training.grerank import train_grerank
from rag_relax_plugins.training.maxsim_train import MaxSimTrainConfig, train_maxsim
from rag_relax_plugins.training.mol_recipes import load_recipe_model
from rag_relax_plugins.training.mol_towers import (
    DotProductSimilarity,
    IdEmbeddingTower,
    TwoTowerModel,
)
from rag_relax_plugins.training.mol_train import MoLTrainConfig, PairData, train_retrieval

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "rerankers"))
from _gumbel_helpers import FakeReader, example, grerank_config, tiny_scorer
from test_maxsim_train import make_reranker, synthetic

pytestmark = pytest.mark.usefixtures("one_torch_thread")

DESCRIBED = {"train": "the Gaussian embedder trainer", "train-maxsim": "the MaxSim reranker trainer",
             "train-reranker": "the G-Rerank trainer", "train-mol": "the MoL trainer"}


def _gaussian_options(tmp: Path) -> dict[str, Any]:
    rows = [{"query": f"query number {i}", "positive": f"passage {i} about subject {i}"} for i in range(8)]
    (tmp / "t.jsonl").write_text("\n".join(json.dumps(r) for r in rows), encoding="utf-8")
    return dict(train_file=str(tmp / "t.jsonl"), batch_size=4, num_slices=8, show_progress=False,
                device="cpu", backbone="hashing:64", output_dim=16, epochs=1)


_MAXSIM = dict(batch_size=2, hard_negatives=2, learning_rate=0.1, val_rows=0, train_rows=10, projection_dim=8,
               show_progress=False, epochs=1)


def _mol_model() -> TwoTowerModel:
    torch.manual_seed(0)
    return TwoTowerModel(IdEmbeddingTower(12, 8, padding_idx=None), IdEmbeddingTower(12, 8, padding_idx=None),
                         DotProductSimilarity(normalize=True, tau=0.1), 12)


def _mol_data() -> PairData:
    q = torch.arange(48) % 12
    return PairData(q, (5 * q + 1) % 12, 12)


def _mol_cfg(folder: Path) -> MoLTrainConfig:
    return MoLTrainConfig(epochs=1, batch_size=16, num_negatives=4, device="cpu", show_progress=False,
                          checkpoint_dir=str(folder))


def _resume(trainer: str, checkpoint: Path, tmp: Path, minilm_path: str) -> None:
    """Resume ``trainer`` (a ``rag-relax`` command) from ``checkpoint``, into ``tmp``."""
    if trainer == "train":
        train(TrainConfig(output_dir=str(tmp / "out"), resume_from=str(checkpoint), **_gaussian_options(tmp)))
    elif trainer == "train-maxsim":
        groups, queries, texts = synthetic()
        train_maxsim(MaxSimTrainConfig(output_dir=str(tmp / "out"), resume_from=str(checkpoint), **_MAXSIM),
                     groups, queries.texts, texts.texts, reranker=make_reranker())
    elif trainer == "train-reranker":
        reranker = GumbelReranker(tiny_scorer(minilm_path), k=1, device="cpu", tau=0.5)
        train_grerank(grerank_config(tmp / "out", k=1, tau=0.5, resume_from=str(checkpoint)),
                      examples=[example(i) for i in range(4)], reranker=reranker, reader=FakeReader())
    else:
        train_retrieval(_mol_model(), _mol_data(), _mol_cfg(tmp / "out"), resume=checkpoint)


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory, minilm_path: str) -> dict[str, Path]:
    """One real checkpoint of each trainer, by its ``rag-relax`` command."""
    tmp = tmp_path_factory.mktemp("checkpoints")
    with torch.random.fork_rng(devices=[]):
        torch.set_num_threads(1)
        train(TrainConfig(output_dir=str(tmp / "g"), **_gaussian_options(tmp)))
        groups, queries, texts = synthetic()
        train_maxsim(MaxSimTrainConfig(output_dir=str(tmp / "m"), **_MAXSIM), groups, queries.texts, texts.texts,
                     reranker=make_reranker())
        reranker = GumbelReranker(tiny_scorer(minilm_path), k=1, device="cpu", tau=0.5)
        train_grerank(grerank_config(tmp / "r", k=1, tau=0.5), examples=[example(i) for i in range(4)],
                      reranker=reranker, reader=FakeReader())
        train_retrieval(_mol_model(), _mol_data(), _mol_cfg(tmp / "mol"))
    return {"train": tmp / "g" / "checkpoint_epoch_1", "train-maxsim": tmp / "m" / "checkpoint_epoch_1",
            "train-reranker": tmp / "r" / "checkpoint_step_4", "train-mol": tmp / "mol" / "checkpoint_step_3"}


def test_each_trainers_checkpoint_is_told_apart(checkpoints: dict[str, Path]) -> None:
    assert {name: _run_files.checkpoint_trainer(folder) for name, folder in checkpoints.items()} == {
        name: name for name in checkpoints}


def test_the_layouts_name_the_models_save_kinds() -> None:
    kinds = {command: kind for command, (_, kind, _) in _run_files._TRAINER_LAYOUTS.items()}
    assert kinds == {"train": GaussianEmbedder.SAVE_KIND, "train-maxsim": MaxSimReranker.SAVE_KIND,
                     "train-reranker": GumbelReranker.SAVE_KIND, "train-mol": None}


# each trainer resumed from another's checkpoint; together they cover every trainer both ways
@pytest.mark.parametrize(("trainer", "source"), [("train", "train-maxsim"), ("train-maxsim", "train-reranker"),
                                                  ("train-reranker", "train-mol"), ("train-mol", "train")])
def test_a_resume_from_another_trainers_checkpoint_names_that_trainer(
    trainer: str, source: str, checkpoints: dict[str, Path], tmp_path: Path, minilm_path: str
) -> None:
    before = sorted(p.relative_to(checkpoints[source]) for p in checkpoints[source].rglob("*"))
    message = (f"cannot resume from {checkpoints[source]}: it is a checkpoint of {DESCRIBED[source]} "
               f"\\(rag-relax {source}\\), not of {DESCRIBED[trainer]} \\(rag-relax {trainer}\\)")
    with pytest.raises(ValueError, match=message):
        _resume(trainer, checkpoints[source], tmp_path, minilm_path)
    assert sorted(p.relative_to(checkpoints[source]) for p in checkpoints[source].rglob("*")) == before
    out = tmp_path / "out"
    assert not out.exists() or not any(p.is_file() and p.stat().st_size for p in out.rglob("*"))


def test_a_checkpoint_of_unknown_layout_is_still_checked_by_its_options(
    checkpoints: dict[str, Path], tmp_path: Path, minilm_path: str
) -> None:
    """A checkpoint whose folders tell no trainer (no save markers) falls back to the options check."""
    import shutil

    bare = tmp_path / "bare"
    shutil.copytree(checkpoints["train"], bare)
    for marker in bare.rglob(".rag_relax_save.json"):
        marker.unlink()
    assert _run_files.checkpoint_trainer(bare) is None
    with pytest.raises(ValueError, match="different options"):
        _resume("train-maxsim", bare, tmp_path, minilm_path)


@pytest.mark.parametrize(("loader", "source", "saved"), [
    (GaussianEmbedder.load, "train-maxsim", "maxsim-reranker"),
    (MaxSimReranker.load, "train", "gaussian-embedder"),
    (GumbelReranker.from_pretrained, "train", "gaussian-embedder"),
    (load_recipe_model, "train-maxsim", "maxsim-reranker"),
])
def test_loading_another_models_save_names_its_kind(
    loader: Any, source: str, saved: str, checkpoints: dict[str, Path]
) -> None:
    folder = checkpoints[source] / "model"
    with pytest.raises(ValueError, match=f"{folder} holds a saved {saved}, not a "):
        loader(str(folder))


def test_loading_a_checkpoint_as_a_model_points_at_the_model_inside(checkpoints: dict[str, Path]) -> None:
    folder = checkpoints["train"]
    with pytest.raises(ValueError, match=f"holds a saved checkpoint, not a gaussian-embedder; load {folder / 'model'}"):
        GaussianEmbedder.load(str(folder))
    assert GaussianEmbedder.load(str(folder / "model")).config.output_dim == 16
    reranker = checkpoints["train-reranker"]
    with pytest.raises(ValueError, match=f"load {reranker / 'reranker'}"):
        GumbelReranker.from_pretrained(reranker)
