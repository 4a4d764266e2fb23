"""The LangChain filter benchmark runs end to end on a small store (its assertions check that the
MoL store and InMemoryVectorStore find the same documents for each filter) and writes nothing
with ``--no-write``."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCH))

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_a_small_run_prints_every_path_and_writes_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    bench = pytest.importorskip("bench_lc_filters")
    before = sorted(p.name for p in (BENCH / "results").iterdir())
    assert bench.main(["--docs", "1500", "--repeats", "1", "--no-write"]) == 0  # 15 match: more than k
    out = capsys.readouterr().out
    for path in ("mol_unfiltered", "mol_dict_filter", "mol_callable_filter", "in_memory_callable_filter"):
        assert out.count(path) == 2, path  # flat and nested metadata
    assert sorted(p.name for p in (BENCH / "results").iterdir()) == before
