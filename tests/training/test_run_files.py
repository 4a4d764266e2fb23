"""training._run_files: checkpoint rotation never deletes the checkpoint just written, and PNGs
are written atomically."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from rag_relax_plugins.training._run_files import checkpoint_steps, prune_checkpoints, save_png


def _ckpts(root: Path, steps: list[int]) -> None:
    for s in steps:
        (root / f"checkpoint_step_{s}").mkdir(parents=True)


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
    prune_checkpoints(tmp_path, 1, current=3)
    assert _names(tmp_path) == ["checkpoint_step_3", "checkpoint_step_7", "checkpoint_step_final"]


def test_save_png_writes_a_png_and_nothing_else(tmp_path: Path) -> None:
    plt = pytest.importorskip("matplotlib.pyplot")
    fig, ax = plt.subplots()
    ax.plot([1, 2, 3])
    path = save_png(fig, tmp_path / "sub" / "curve.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert _names(path.parent) == ["curve.png"]
    assert not plt.fignum_exists(fig.number)  # closed
