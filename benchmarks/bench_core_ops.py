"""Core-ops benchmark (issue 2): every ratio measured in this one run.

Run: ``.venv/bin/python benchmarks/bench_core_ops.py`` (or ``make bench-core``).
Writes ``benchmarks/results/core_ops.json``. Bars (docs/benchmarks.md):

- soft rank B=32 n=1000 fwd+bwd >= 100x faster than the pairwise-sigmoid rank; n=100,000 runs;
  max abs error vs the numpy reference <= 1e-5;
- relaxed_topk B=32 n=1000 k=10 fwd+bwd >= 50x faster than the per-element loop;
- MaxSim 1x32x128 vs 1000x180x128, one thread: <= 1.3x the bare matmul, >= 1.5x faster than a loop;
- ``import rag_relax_plugins`` < 100 ms.

The soft rank / torchsort time ratio (goal <= 2x; n/a without torchsort) is reported, not a bar.
The bars are checked after the results are written (``core_bars``, the same thresholds as
``render_core_table.py``); the exit status is 1 when one is missed or was not measured.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_maxsim
import bench_relaxed_topk
import bench_soft_rank
from _common import Bar, check_bars, print_table, write_results


def import_time_ms(runs: int = 7) -> float:
    code = "import time; t=time.perf_counter(); import rag_relax_plugins; print((time.perf_counter()-t)*1000)"
    times = [
        float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)
        for _ in range(runs)
    ]
    return min(times)


def core_bars(results: dict[str, object]) -> list[Bar]:
    """The core-ops bars on a results dict (``benchmarks/results/core_ops.json``'s keys)."""

    def value(key: str) -> float | None:
        v = results.get(key)
        return None if v is None else float(v)  # type: ignore[arg-type]

    return [
        Bar("soft_rank vs pairwise sigmoid rank, n=1000 (speedup)", value("soft_rank_speedup_vs_pairwise_n1000"), ">=", 100, "x"),
        Bar("soft_rank max abs error vs numpy reference", value("soft_rank_max_abs_err_vs_reference"), "<=", 1e-5),
        Bar("soft_rank n=100,000 B=32 fwd+bwd runs (ms)", value("soft_rank_ms_n100000"), ">", 0, " ms"),
        Bar("relaxed_topk vs per-element loop (speedup)", value("relaxed_topk_speedup_vs_loop"), ">=", 50, "x"),
        Bar("MaxSim / bare batched matmul", value("maxsim_ratio_to_matmul"), "<=", 1.3, "x"),
        Bar("MaxSim vs per-document loop (speedup)", value("maxsim_speedup_vs_loop"), ">=", 1.5, "x"),
        Bar("import rag_relax_plugins (ms)", value("import_time_ms"), "<", 100, " ms"),
    ]


def main() -> int:
    results: dict[str, object] = {}
    results.update(bench_soft_rank.measure())
    results.update(bench_relaxed_topk.measure())
    results.update(bench_maxsim.measure())
    results["import_time_ms"] = import_time_ms()

    def fmt(key: str, spec: str = ".1f") -> str:
        value = results.get(key)
        return "n/a" if value is None else format(value, spec)  # type: ignore[arg-type]

    rows = [
        ("soft_rank vs pairwise, n=1000 (speedup)", fmt("soft_rank_speedup_vs_pairwise_n1000"), ">= 100x"),
        ("soft_rank max abs err vs numpy reference", fmt("soft_rank_max_abs_err_vs_reference", ".2e"), "<= 1e-5"),
        ("soft_rank n=100,000 B=32 fwd+bwd (ms)", fmt("soft_rank_ms_n100000"), "runs"),
        ("soft_rank / torchsort time, n=1000", fmt("torchsort_ratio_n1000", ".2f"), "goal <= 2x"),
        ("relaxed_topk vs loop (speedup)", fmt("relaxed_topk_speedup_vs_loop"), ">= 50x"),
        ("MaxSim / bare matmul (ratio)", fmt("maxsim_ratio_to_matmul", ".3f"), "<= 1.3x"),
        ("MaxSim vs per-doc loop (speedup)", fmt("maxsim_speedup_vs_loop", ".2f"), ">= 1.5x"),
        ("import rag_relax_plugins (ms)", fmt("import_time_ms", ".1f"), "< 100 ms"),
    ]
    print_table(rows, ("measure", "value", "bar"))
    path = write_results("core_ops", results)
    print(f"\nwrote {path}")
    return check_bars(core_bars(results))


if __name__ == "__main__":
    raise SystemExit(main())
