"""The scale benchmark script runs end to end at a small size (slow: trains a MoL head)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_bench_mol_scale_small_run() -> None:
    pytest.importorskip("faiss")
    out = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "bench_mol_scale.py"),
            "--n",
            "20000",
            "--steps",
            "20",
            "--nlist",
            "64",
            "--queries",
            "8",
            "--no-write",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=900,
    )
    assert "best approximate strategy" in out.stdout
    diff = re.search(r"exact two-pass max \|score diff\| vs BruteForce: (\S+)", out.stdout)
    assert diff is not None and float(diff.group(1)) < 1e-4
