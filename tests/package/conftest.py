"""Fixtures of the benchmark-script tests (``test_bench_*.py``)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.fixture
def results(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty results folder in place of ``benchmarks/results`` (what the scripts write)."""
    if str(BENCH) not in sys.path:
        sys.path.insert(0, str(BENCH))
    import _common

    folder = tmp_path / "results"
    folder.mkdir()
    monkeypatch.setattr(_common, "RESULTS", folder)
    return folder
