"""A fresh Gaussian or MaxSim run into an output folder an earlier run used removes that run's
``checkpoint_epoch_N/`` once it has written its own first checkpoint; a resume keeps them, and so
does a fresh run that fails first. Before, a 1-epoch run left epochs 2-3 of a 3-epoch run beside
its own checkpoint_epoch_1/, in one folder."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

from rag_relax_plugins.training._run_files import EPOCH_CHECKPOINT_PREFIX, EarlierCheckpoints
from rag_relax_plugins.training.gaussian_train import TrainConfig, train

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _epochs(out: Path) -> list[str]:
    return sorted(p.name for p in out.glob(f"{EPOCH_CHECKPOINT_PREFIX}*"))


def _state(folder: Path) -> dict:
    return json.loads((folder / "trainer_state.json").read_text(encoding="utf-8"))


@pytest.fixture
def gaussian_base(tmp_path: Path) -> dict:
    rows = [{"query": f"query number {i}", "positive": f"passage {i} about subject {i}"} for i in range(8)]
    (tmp_path / "t.jsonl").write_text("\n".join(json.dumps(r) for r in rows), encoding="utf-8")
    return dict(train_file=str(tmp_path / "t.jsonl"), batch_size=4, num_slices=8, show_progress=False,
                device="cpu", backbone="hashing:64", output_dim=16)


def test_a_fresh_gaussian_run_replaces_an_earlier_runs_epoch_checkpoints(tmp_path: Path, gaussian_base: dict) -> None:
    out = tmp_path / "run"
    train(TrainConfig(output_dir=str(out), epochs=3, **gaussian_base))
    (out / f"{EPOCH_CHECKPOINT_PREFIX}9").mkdir()  # the user's folder, not a checkpoint: left alone
    (out / f"{EPOCH_CHECKPOINT_PREFIX}9" / "notes.txt").write_text("mine", encoding="utf-8")
    assert _epochs(out) == ["checkpoint_epoch_1", "checkpoint_epoch_2", "checkpoint_epoch_3", "checkpoint_epoch_9"]
    train(TrainConfig(output_dir=str(out), epochs=1, seed=5, **gaussian_base))
    assert _epochs(out) == ["checkpoint_epoch_1", "checkpoint_epoch_9"]
    assert _state(out / "checkpoint_epoch_1")["config"]["seed"] == 5  # the new run's


def test_a_gaussian_resume_keeps_the_runs_later_checkpoints(tmp_path: Path, gaussian_base: dict) -> None:
    out = tmp_path / "run"
    train(TrainConfig(output_dir=str(out), epochs=3, **gaussian_base))
    shutil.copytree(out / "checkpoint_epoch_3", out / "checkpoint_epoch_7")  # a checkpoint this run never writes
    train(TrainConfig(output_dir=str(out), epochs=3, resume_from=str(out / "checkpoint_epoch_1"), **gaussian_base))
    assert _epochs(out) == ["checkpoint_epoch_1", "checkpoint_epoch_2", "checkpoint_epoch_3", "checkpoint_epoch_7"]


def test_a_fresh_gaussian_run_that_fails_first_removes_nothing(
    tmp_path: Path, gaussian_base: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The run fails in its first epoch, after EarlierCheckpoints exists, before its first checkpoint."""
    from rag_relax_plugins.training import gaussian_train

    out = tmp_path / "run"
    train(TrainConfig(output_dir=str(out), epochs=2, **gaussian_base))
    calls = []
    embed = gaussian_train._embed

    def failing_second_step(*args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("out of memory")
        return embed(*args, **kwargs)

    monkeypatch.setattr(gaussian_train, "_embed", failing_second_step)
    with pytest.raises(RuntimeError, match="out of memory"):
        train(TrainConfig(output_dir=str(out), epochs=1, seed=9, **gaussian_base))
    assert len(calls) == 2  # it trained a step first
    assert _epochs(out) == ["checkpoint_epoch_1", "checkpoint_epoch_2"]
    assert _state(out / "checkpoint_epoch_1")["config"]["seed"] == 0  # the earlier run's, untouched


def test_a_fresh_gaussian_run_keeps_the_checkpoint_it_starts_from(tmp_path: Path, gaussian_base: dict) -> None:
    """Fine-tuning from an earlier epoch of the same folder (init_model) deleted that epoch."""
    out = tmp_path / "run"
    train(TrainConfig(output_dir=str(out), epochs=3, **gaussian_base))
    train(TrainConfig(output_dir=str(out), epochs=1, init_model=str(out / "checkpoint_epoch_3" / "model"),
                      **gaussian_base))
    assert _epochs(out) == ["checkpoint_epoch_1", "checkpoint_epoch_3"]  # epoch 2 of the earlier run goes


def test_a_gaussian_init_model_the_run_would_overwrite_is_refused(tmp_path: Path, gaussian_base: dict) -> None:
    """Fine-tuning from checkpoint_epoch_1/model of the same folder with epochs >= 1: the run's own
    epoch-1 checkpoint replaced the model it started from, and the earlier run's other epochs were
    removed: nothing of that run was left (review)."""
    out = tmp_path / "run"
    train(TrainConfig(output_dir=str(out), epochs=2, **gaussian_base))
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    with pytest.raises(ValueError, match=r"init_model .* is inside .*checkpoint_epoch_1, which this run writes"):
        train(TrainConfig(output_dir=str(out), epochs=1, init_model=str(out / "checkpoint_epoch_1" / "model"),
                          **gaussian_base))
    assert {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    # best_model/ may be replaced, as the docs allow: the model is loaded before anything is saved
    train(TrainConfig(output_dir=str(out), epochs=1, init_model=str(out / "best_model"), **gaussian_base))


def test_a_fresh_maxsim_run_replaces_an_earlier_runs_epoch_checkpoints(tmp_path: Path) -> None:
    sys.path.insert(0, str(Path(__file__).parents[1] / "rerankers"))  # the MaxSim tests' helpers
    try:
        from test_maxsim_train import make_reranker, synthetic
    finally:
        sys.path.pop(0)
    from rag_relax_plugins.training.maxsim_train import MaxSimTrainConfig, train_maxsim

    groups, queries, texts = synthetic()
    base = dict(batch_size=2, hard_negatives=2, learning_rate=0.1, val_rows=0, train_rows=10, projection_dim=8,
                show_progress=False)
    out = tmp_path / "run"
    train_maxsim(MaxSimTrainConfig(output_dir=str(out), epochs=3, **base), groups, queries.texts, texts.texts,
                 reranker=make_reranker())
    assert _epochs(out) == ["checkpoint_epoch_1", "checkpoint_epoch_2", "checkpoint_epoch_3"]
    train_maxsim(MaxSimTrainConfig(output_dir=str(out), epochs=1, seed=3, **base), groups, queries.texts,
                 texts.texts, reranker=make_reranker())
    assert _epochs(out) == ["checkpoint_epoch_1"]
    assert _state(out / "checkpoint_epoch_1")["config"]["seed"] == 3


def test_earlier_checkpoints_removes_once_and_only_for_a_fresh_run(tmp_path: Path) -> None:
    def checkpoint(name: str) -> Path:
        (tmp_path / name).mkdir()
        (tmp_path / name / "trainer_state.json").write_text("{}", encoding="utf-8")
        return tmp_path / name

    old = [checkpoint("checkpoint_step_5"), checkpoint("checkpoint_step_9")]
    resumed = EarlierCheckpoints(fresh=False)
    resumed.written(checkpoint("checkpoint_step_6"))
    assert all(p.is_dir() for p in old)
    fresh = EarlierCheckpoints(fresh=True)
    fresh.written(tmp_path / "checkpoint_step_6")
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint_step_6"]
    later = checkpoint("checkpoint_step_7")
    fresh.written(later)  # the run's own later checkpoints are never removed
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint_step_6", "checkpoint_step_7"]


def test_a_user_folder_named_like_a_checkpoint_is_refused_before_training(tmp_path: Path, gaussian_base: dict) -> None:
    """A folder of the user's at checkpoint_epoch_2 stopped the run at its epoch-2 save, after the
    training (review); it is refused before the first step now, and left as it was."""
    out = tmp_path / "run"
    mine = out / "checkpoint_epoch_2"
    mine.mkdir(parents=True)
    (mine / "notes.txt").write_text("mine", encoding="utf-8")
    with pytest.raises(ValueError, match=r"refusing to replace the existing folder .*checkpoint_epoch_2"):
        train(TrainConfig(output_dir=str(out), epochs=2, **gaussian_base))
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint_epoch_2"]
    assert (mine / "notes.txt").read_text(encoding="utf-8") == "mine"
    train(TrainConfig(output_dir=str(out), epochs=1, **gaussian_base))  # epoch 2 is not this run's: kept
    assert (mine / "notes.txt").read_text(encoding="utf-8") == "mine"


def test_a_fresh_run_leaves_a_symbolic_link_to_an_earlier_checkpoint(tmp_path: Path, gaussian_base: dict) -> None:
    """A link there to another run's checkpoint aborted the fresh run after epoch 1 with "Cannot
    call rmtree on a symbolic link" (review); the link is left, with a warning."""
    other = tmp_path / "other"
    train(TrainConfig(output_dir=str(other), epochs=3, **gaussian_base))
    out = tmp_path / "run"
    out.mkdir()
    (out / "checkpoint_epoch_3").symlink_to(other / "checkpoint_epoch_3", target_is_directory=True)
    train(TrainConfig(output_dir=str(out), epochs=1, **gaussian_base))
    assert (out / "checkpoint_epoch_3").is_symlink() and (other / "checkpoint_epoch_3" / "trainer_state.json").is_file()
    assert (out / "final_model").is_dir()
