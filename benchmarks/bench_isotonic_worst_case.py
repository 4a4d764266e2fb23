"""The isotonic solver behind ``soft_rank`` / ``soft_sort`` on its worst case, with and without the
sequential fallback, in one run.

A row of ``m`` tied top values followed by values spaced slightly more than the regularisation
strength apart makes the parallel merge rounds absorb one block per round: O(n) rounds of O(n) work.
Since 2026-12-03 the solver hands the blocks left after ``n.bit_length()`` rounds to a sequential
PAV (``max_rounds``, :mod:`rag_relax_plugins.core.isotonic`); ``max_rounds=n`` is the parallel
rounds alone, as before. Both must give the same solution.

Run: ``.venv/bin/python benchmarks/bench_isotonic_worst_case.py``. Writes
``benchmarks/results/isotonic_worst_case.json``: per ``n``, the time of ``soft_rank`` on that row
(``default_s``: with the fallback; ``parallel_only_s``: ``max_rounds=n``), their ratio, the
parallel rounds each used, and the largest difference between the two solutions. Bars: the two
solutions agree within 1e-9, and the default path takes at most 1 s at the largest ``n``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import Bar, check_bars, machine, print_table, today, write_results

from rag_relax_plugins.core.isotonic import isotonic_decreasing

TIES, SPACING = 100, 1e-4  # tied top values; gap over the strength (1.0) between the others


def worst_row(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(a, b)`` of ``soft_rank(x, 1.0)``'s isotonic problem for the worst-case ``x`` of length ``n``."""
    x = torch.cat([torch.zeros(TIES, dtype=torch.float64),
                   -(1 + SPACING) * torch.arange(1, n - TIES + 1, dtype=torch.float64)])
    s = torch.sort(x, descending=True).values.unsqueeze(0)  # (1, n), as soft_rank sorts
    w = torch.arange(n, 0, -1, dtype=torch.float64).unsqueeze(0)  # (1, n): rho = (n, ..., 1)
    return s, w


def measure(sizes: list[int]) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for n in sizes:
        s, w = worst_row(n)
        t0 = time.perf_counter()
        fast = isotonic_decreasing(s, w)
        t1 = time.perf_counter()
        slow = isotonic_decreasing(s, w, max_rounds=n)
        t2 = time.perf_counter()
        out[str(n)] = {
            "default_s": t1 - t0,
            "parallel_only_s": t2 - t1,
            "parallel_only_over_default": (t2 - t1) / (t1 - t0),
            "default_rounds": fast.rounds,
            "default_sequential_blocks": fast.sequential_blocks,
            "parallel_only_rounds": slow.rounds,
            "max_abs_diff": float((fast.values - slow.values).abs().max()),
        }
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="2600,5100,10100", help="row lengths n (comma-separated)")
    ap.add_argument("--no-write", action="store_true", help="print only; write no results file")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    sizes = [int(v) for v in args.sizes.split(",")]
    res = measure(sizes)
    print_table([[n, f"{r['default_s']:.3f}", f"{r['parallel_only_s']:.3f}", f"{r['parallel_only_over_default']:.0f}x",
                  f"{r['default_rounds']:.0f} + seq", f"{r['parallel_only_rounds']:.0f}", f"{r['max_abs_diff']:.1e}"]
                 for n, r in res.items()],
                ["n", "default (s)", "parallel only (s)", "ratio", "default rounds", "parallel rounds", "max diff"])
    if not args.no_write:
        print("wrote", write_results("isotonic_worst_case", {"machine": machine(), "date": today(), "sizes": res}))
    largest = res[str(max(sizes))]
    return check_bars([Bar("default and parallel-only solutions agree", max(r["max_abs_diff"] for r in res.values()),
                           "<=", 1e-9),
                       Bar(f"default path at n={max(sizes)}", largest["default_s"], "<=", 1.0, " s")])


if __name__ == "__main__":
    raise SystemExit(main())
