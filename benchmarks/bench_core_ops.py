"""Core-ops benchmark (issue 2): every ratio measured in this one run.

Run: ``.venv/bin/python benchmarks/bench_core_ops.py`` (or ``make bench-core``).
Writes ``benchmarks/results/core_ops.json``. Bars (docs/benchmarks.md):

- soft rank B=32 n=1000 fwd+bwd >= 100x faster than the pairwise-sigmoid rank; n=100,000 runs;
  max abs error vs the numpy reference <= 1e-5;
- relaxed_topk B=32 n=1000 k=10 fwd+bwd >= 50x faster than the per-element loop, max abs error vs
  it <= 1e-4;
- MaxSim 1x32x128 vs 1000x180x128, one thread: <= 1.3x the bare matmul, >= 1.5x faster than a loop,
  max abs error vs the loop <= 1e-4;
- ``import rag_relax_plugins`` < 100 ms.

The soft rank / torchsort time ratio (goal <= 2x; n/a without torchsort) is reported, not a bar.
The bars are checked after the results are written (``core_bars``, built from
``render_core_table.ROWS``, the one table of labels and thresholds); the exit status is 1 when one is missed or was not measured.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_maxsim
import bench_relaxed_topk
import bench_soft_rank
from _common import Bar, check_bars, print_table, write_results
from render_core_table import ROWS, row_bars


def import_time_ms(runs: int = 7) -> float:
    code = "import time; t=time.perf_counter(); import rag_relax_plugins; print((time.perf_counter()-t)*1000)"
    times = [
        float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)
        for _ in range(runs)
    ]
    return min(times)


def core_bars(results: dict[str, object]) -> list[Bar]:
    """The core-ops bars on a results dict (``benchmarks/results/core_ops.json``'s keys)."""
    return row_bars(results)


def main(argv: list[str] | None = None) -> int:
    argparse.ArgumentParser(
        description="Core-ops benchmark (issue 2): soft rank, relaxed_topk, MaxSim and import time, "
        "every ratio measured in this one run. Writes benchmarks/results/core_ops.json; exits 1 "
        "when a bar is missed (render the docs table with render_core_table.py)."
    ).parse_args(argv)
    results: dict[str, object] = {}
    results.update(bench_soft_rank.measure())
    results.update(bench_relaxed_topk.measure())
    results.update(bench_maxsim.measure())
    results["import_time_ms"] = import_time_ms()

    rows = [(r.label, "n/a" if results.get(r.key) is None else r.fmt.format(results[r.key]), r.shown)
            for r in ROWS]
    print_table(rows, ("measure", "value", "bar"))
    path = write_results("core_ops", results)
    print(f"\nwrote {path}")
    return check_bars(core_bars(results))


if __name__ == "__main__":
    raise SystemExit(main())
