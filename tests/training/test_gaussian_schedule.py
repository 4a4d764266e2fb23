"""The Gaussian trainer's documented schedule (review 2026-12-05, mutants that survived): the head LR
defaults to 10x learning_rate, the LR decays to 0 only at ceil(batches / grad_accum_steps) * epochs,
max_steps stops the whole run, and the validation loss counts a trailing single pair."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from rag_relax_plugins.training.gaussian_data import Pair
from rag_relax_plugins.training.gaussian_train import TrainConfig, _val_batches, train

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture
def base(tmp_path: Path) -> dict[str, Any]:
    rows = [{"query": f"query number {i}", "positive": f"passage {i} about subject {i}"} for i in range(20)]
    (tmp_path / "t.jsonl").write_text("\n".join(json.dumps(r) for r in rows), encoding="utf-8")
    return dict(train_file=str(tmp_path / "t.jsonl"), batch_size=4, num_slices=8, show_progress=False,
                device="cpu", backbone="hashing:64", output_dim=16, save_checkpoints=False)


def _logged_lrs(out: Path) -> list[float]:
    text = (out / "training.log").read_text(encoding="utf-8")
    return [float(x) for x in re.findall(r" step \d+ loss .* lr (\S+)$", text, flags=re.M)]


def test_head_lr_defaults_to_ten_times_the_learning_rate(tmp_path: Path, base: dict[str, Any]) -> None:
    out = tmp_path / "run"
    train(TrainConfig(output_dir=str(out), epochs=1, learning_rate=1e-3, max_steps=1, **base))
    assert _logged_lrs(out) == [pytest.approx(1e-2)]  # warmup 0: the first step runs at the full head LR


def test_lr_decays_to_zero_only_after_the_last_partial_accumulation_group(tmp_path: Path, base: dict[str, Any]) -> None:
    out = tmp_path / "run"
    # 5 batches, 2 per step: 3 optimiser steps per epoch (the last one of 1 batch), 6 in all
    res = train(TrainConfig(output_dir=str(out), epochs=2, grad_accum_steps=2, learning_rate=1e-3,
                            head_learning_rate=1e-2, **base))
    lrs = _logged_lrs(out)
    assert res["steps"] == 6 and len(lrs) == 6
    assert lrs == pytest.approx([1e-2 * (1 - s / 6) for s in range(6)], rel=1e-2)


def test_max_steps_stops_the_run_not_only_the_epoch(tmp_path: Path, base: dict[str, Any]) -> None:
    res = train(TrainConfig(output_dir=str(tmp_path / "run"), epochs=3, max_steps=2, **base))
    assert res["steps"] == 2
    assert len(res["history"]["step_loss"]) == 2 and len(res["history"]["train_loss"]) == 1


def test_a_trailing_single_validation_pair_joins_the_batch_before() -> None:
    pairs = [Pair(query=f"q{i}", positive=f"p{i}") for i in range(5)]
    assert [len(b) for b in _val_batches(pairs, 4, seed=0)] == [5]
