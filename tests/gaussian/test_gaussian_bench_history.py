"""The benchmark's best epoch follows ``history["selection_loss"]``, the series ``best_model/`` is
chosen by (``val_loss`` may hold ``null`` for a non-finite validation loss)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))


def test_best_epoch_uses_the_selection_series() -> None:
    bench = pytest.importorskip("bench_gaussian")
    # epoch 2's validation loss was NaN (null): best_model/ was chosen by its training loss
    history = {"train_loss": [2.0, 0.5, 1.5], "val_loss": [1.8, None, 1.2], "selection_loss": [1.8, 0.5, 1.2]}
    assert bench.best_epoch(history) == 2
    assert bench.best_epoch({"train_loss": [], "val_loss": [], "selection_loss": []}) is None
    assert bench.best_epoch({"val_loss": [], "selection_loss": [float("nan"), 3.0, 3.0]}) == 2  # first of the lowest
