"""A folder of the user's where a run will save its model (``best_model/``, ``final_model/``,
``model/``) is refused before the run does any work. It was refused only at the final save, after
the whole training, with checkpoints already written and a message saying nothing was changed."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from rag_relax_plugins.training.gaussian_train import TrainConfig, train

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "rerankers"))

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _foreign(folder: Path) -> Path:
    folder.mkdir(parents=True)
    (folder / "README.txt").write_text("mine", encoding="utf-8")
    return folder


def _nothing_written(out: Path, foreign: Path) -> None:
    assert sorted(p.name for p in out.iterdir()) == [foreign.name], "the run wrote before refusing"
    assert (foreign / "README.txt").read_text(encoding="utf-8") == "mine"


@pytest.mark.parametrize("name", ["best_model", "final_model"])
def test_gaussian(tmp_path: Path, name: str) -> None:
    rows = [{"query": f"query number {i}", "positive": f"passage {i} about subject {i}"} for i in range(8)]
    (tmp_path / "t.jsonl").write_text("\n".join(json.dumps(r) for r in rows), encoding="utf-8")
    out = tmp_path / "run"
    foreign = _foreign(out / name)
    with pytest.raises(ValueError, match="refusing to replace the existing folder"):
        train(TrainConfig(train_file=str(tmp_path / "t.jsonl"), output_dir=str(out), batch_size=4, num_slices=8,
                          show_progress=False, device="cpu", backbone="hashing:64", output_dim=16))
    _nothing_written(out, foreign)


def test_gaussian_still_replaces_its_own_earlier_save(tmp_path: Path) -> None:
    rows = [{"query": f"query number {i}", "positive": f"passage {i} about subject {i}"} for i in range(8)]
    (tmp_path / "t.jsonl").write_text("\n".join(json.dumps(r) for r in rows), encoding="utf-8")
    cfg = TrainConfig(train_file=str(tmp_path / "t.jsonl"), output_dir=str(tmp_path / "run"), batch_size=4,
                      num_slices=8, show_progress=False, device="cpu", backbone="hashing:64", output_dim=16)
    train(cfg)
    train(cfg)  # best_model/ and final_model/ of the first run are saves: replaced
    assert (tmp_path / "run" / "final_model" / "config.json").is_file()


def test_maxsim_final_model(tmp_path: Path) -> None:
    from test_maxsim_train import make_reranker, synthetic

    from rag_relax_plugins.training.maxsim_train import MaxSimTrainConfig, train_maxsim

    groups, queries, texts = synthetic()
    out = tmp_path / "run"
    foreign = _foreign(out / "final_model")
    with pytest.raises(ValueError, match="refusing to replace the existing folder"):
        train_maxsim(MaxSimTrainConfig(output_dir=str(out), epochs=1, batch_size=2, hard_negatives=2, val_rows=0,
                                       train_rows=10, projection_dim=8, show_progress=False),
                     groups, queries.texts, texts.texts, reranker=make_reranker())
    _nothing_written(out, foreign)


def test_train_mol_model_folder(tmp_path: Path) -> None:
    from rag_relax_plugins.training.mol_recipes import RecipeConfig
    from rag_relax_plugins.training.mol_runs import run_hotpot, run_movielens
    from rag_relax_plugins.training.mol_train_config import MoLTrainConfig

    foreign = _foreign(tmp_path / "run" / "model")
    for run in (run_movielens, run_hotpot):  # refused before any data is read
        with pytest.raises(ValueError, match="refusing to replace the existing folder"):
            run(MoLTrainConfig(show_progress=False), RecipeConfig(), data=str(tmp_path / "no data"), save_to=foreign)
    _nothing_written(tmp_path / "run", foreign)


def test_grerank_final_model(minilm_path: str, tmp_path: Path) -> None:
    from _gumbel_helpers import FakeReader, example, grerank_config, tiny_scorer

    from rag_relax_plugins.rerankers.gumbel import GumbelReranker
    from rag_relax_plugins.training.grerank import train_grerank

    out = tmp_path / "run"
    foreign = _foreign(out / "final_model")
    r = GumbelReranker(tiny_scorer(minilm_path), k=1, device="cpu", tau=0.5)
    with pytest.raises(ValueError, match="refusing to replace the existing folder"):
        train_grerank(grerank_config(out, k=1, tau=0.5), examples=[example(i) for i in range(4)], reranker=r,
                      reader=FakeReader())
    _nothing_written(out, foreign)
