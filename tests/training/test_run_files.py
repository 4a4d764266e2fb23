"""training._run_files: checkpoint rotation never deletes the checkpoint just written, PNGs are
written atomically, the checkpoint a resume reads (shared by the G-Rerank and MaxSim trainers) and
the restore of a checkpoint's best model (shared by the Gaussian and MaxSim trainers)."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pytest

from rag_relax_plugins.training import grerank, maxsim_checkpoint
from rag_relax_plugins.training._run_files import (
    checkpoint_folder,
    checkpoint_steps,
    prune_checkpoints,
    restore_best_model,
    run_folder,
    save_png,
)


def _ckpts(root: Path, steps: list[int]) -> None:
    for s in steps:  # a trainer_state.json: what checkpoints from before saves recorded a kind hold
        (root / f"checkpoint_step_{s}").mkdir(parents=True)
        (root / f"checkpoint_step_{s}" / "trainer_state.json").write_text("{}", encoding="utf-8")


def _names(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir())


def test_keeps_the_newest(tmp_path: Path) -> None:
    _ckpts(tmp_path, [2, 4, 6, 10])  # 10 sorts before 2 as text: steps compare as numbers
    prune_checkpoints(tmp_path, 2, current=10)
    assert _names(tmp_path) == ["checkpoint_step_10", "checkpoint_step_6"]


def test_a_resumed_run_keeps_the_checkpoint_it_just_wrote(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    # an earlier run reached step 60; this one resumed from step 20 and just wrote step 30
    _ckpts(tmp_path, [20, 30, 40, 60])
    with caplog.at_level(logging.WARNING):
        prune_checkpoints(tmp_path, 1, current=30)
    assert _names(tmp_path) == ["checkpoint_step_30", "checkpoint_step_40", "checkpoint_step_60"]
    assert "checkpoint_step_40" in caplog.text


def test_other_folders_and_files_are_left_alone(tmp_path: Path) -> None:
    _ckpts(tmp_path, [1, 2, 3])
    (tmp_path / "checkpoint_step_final").mkdir()
    (tmp_path / "checkpoint_step_7").write_text("a file, not a checkpoint", encoding="utf-8")
    assert [s for s, _ in checkpoint_steps(tmp_path)] == [1, 2, 3]
    (tmp_path / "checkpoint_step_0").mkdir()  # named like one, not written as one: kept, not counted
    (tmp_path / "checkpoint_step_0" / "notes.txt").write_text("mine", encoding="utf-8")
    prune_checkpoints(tmp_path, 1, current=3)
    assert _names(tmp_path) == ["checkpoint_step_0", "checkpoint_step_3", "checkpoint_step_7", "checkpoint_step_final"]


def test_save_png_writes_a_png_and_nothing_else(tmp_path: Path) -> None:
    plt = pytest.importorskip("matplotlib.pyplot")
    fig, ax = plt.subplots()
    ax.plot([1, 2, 3])
    path = save_png(fig, tmp_path / "sub" / "curve.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert _names(path.parent) == ["curve.png"]
    assert not plt.fignum_exists(fig.number)  # closed


def test_checkpoint_folder_finds_the_backup_a_crash_left(tmp_path: Path) -> None:
    """One helper for both trainers: the folder itself, else the backup left between two renames."""
    assert grerank.checkpoint_folder is maxsim_checkpoint.checkpoint_folder is checkpoint_folder
    ck = tmp_path / "checkpoint_step_2"
    ck.mkdir()
    (ck / "trainer_state.json").write_text("{}", encoding="utf-8")
    assert checkpoint_folder(ck) == ck
    os.replace(ck, tmp_path / ".checkpoint_step_2.old-abc123")
    assert checkpoint_folder(ck) == tmp_path / ".checkpoint_step_2.old-abc123"
    with pytest.raises(FileNotFoundError, match=r"checkpoint not found: .*trainer_state\.json"):
        checkpoint_folder(tmp_path / "nothing")


def _save(folder: Path, tag: str) -> None:
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"tag": tag}), encoding="utf-8")
    (folder / "model.safetensors").write_bytes(tag.encode())


@pytest.mark.parametrize(
    ("state", "stored_best", "restored"),
    [
        ({"epoch": 3, "best_epoch": 2}, True, "best"),  # an earlier epoch: the stored best_model/
        ({"epoch": 2, "best_epoch": 2, "batch": 1}, True, "best"),  # stopped part-way: best_model/, not model/
        ({"epoch": 2, "best_epoch": 2}, False, "model"),  # the checkpoint's own epoch: model/
        ({"epoch": 3, "best_epoch": 2}, False, None),  # best_model/ missing: none
        ({"epoch": 3}, False, None),  # older format: no best_epoch
    ],
)
def test_restore_best_model(tmp_path: Path, state: dict, stored_best: bool, restored: str | None) -> None:
    ck = tmp_path / "ck"
    _save(ck / "model", "model")
    if stored_best:
        _save(ck / "best_model", "best")
    target = tmp_path / "out" / "best_model"
    _save(target, "stale")  # a best model an earlier run left there is replaced
    assert restore_best_model(ck, state, target) is (restored is not None)
    assert json.loads((target / "config.json").read_text())["tag"] == (restored or "stale")


def test_run_folder_removes_only_what_a_refused_run_created_and_left_empty(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError), run_folder(tmp_path / "a" / "b") as out:
        (out / "training.log").write_text("")
        raise RuntimeError("refused")
    assert not (tmp_path / "a").exists()  # the new parent too
    with pytest.raises(RuntimeError), run_folder(tmp_path / "c") as out:
        (out / "checkpoint").mkdir()
        (out / "checkpoint" / "state.json").write_text("{}")
        raise RuntimeError("crashed mid-run")
    assert (tmp_path / "c" / "checkpoint" / "state.json").is_file()  # something to resume from: kept
    (tmp_path / "d").mkdir()
    with pytest.raises(RuntimeError), run_folder(tmp_path / "d"):
        raise RuntimeError("refused")
    assert (tmp_path / "d").is_dir()  # not created by this run: never removed
    with run_folder(tmp_path / "e") as out:
        pass
    assert out.is_dir()


def test_rotation_leaves_another_trainers_checkpoints(tmp_path: Path) -> None:
    """A G-Rerank run resumed into a folder holding train-mol checkpoints deleted them silently:
    they were counted among its own (review)."""
    from rag_relax_plugins.training._run_files import remove_earlier_checkpoints

    _ckpts(tmp_path, [1, 3])
    for s in (1, 3):  # the MoL trainer's layout
        (tmp_path / f"checkpoint_step_{s}" / "model.safetensors").write_bytes(b"x")
    _ckpts(tmp_path, [4, 5])
    prune_checkpoints(tmp_path, 1, current=5, trainer="train-reranker")
    assert _names(tmp_path) == ["checkpoint_step_1", "checkpoint_step_3", "checkpoint_step_5"]
    remove_earlier_checkpoints(tmp_path, keep=tmp_path / "checkpoint_step_5", trainer="train-reranker")
    assert _names(tmp_path) == ["checkpoint_step_1", "checkpoint_step_3", "checkpoint_step_5"]
    prune_checkpoints(tmp_path, 1, current=5, trainer="train-mol")  # its own (and untold ones) are counted
    assert _names(tmp_path) == ["checkpoint_step_5"]
