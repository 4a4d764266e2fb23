"""Write the core-ops table of docs/benchmarks.md from benchmarks/results/core_ops.json.

Run: ``.venv/bin/python benchmarks/render_core_table.py`` (``make bench-core`` runs it after the
benchmark), so the page always shows the figures of the last recorded run.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import NamedTuple

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import Bar

ROOT = Path(__file__).resolve().parents[1]
START, END = "<!-- core-ops table: start -->", "<!-- core-ops table: end -->"

class Row(NamedTuple):
    """One core-ops measure: how the page shows it and, for a bar, its threshold.

    ``bar`` names the pass/fail criterion checked by ``bench_core_ops.core_bars`` (``None``: a goal,
    shown but not enforced); ``op`` / ``threshold`` / ``unit`` define it once for the page, the
    printed table and the exit status.
    """

    label: str
    key: str
    fmt: str
    shown: str  # the bar column of the tables
    op: str
    threshold: float
    unit: str = ""
    bar: str | None = None


ROWS = [
    Row("soft_rank B=32 n=1000 fwd+bwd, speedup vs pairwise sigmoid rank", "soft_rank_speedup_vs_pairwise_n1000",
        "{:.0f}x", ">= 100x", ">=", 100, "x", "soft_rank vs pairwise sigmoid rank, n=1000 (speedup)"),
    Row("soft_rank max abs error vs numpy reference (float64)", "soft_rank_max_abs_err_vs_reference",
        "{:.1e}", "<= 1e-5", "<=", 1e-5, "", "soft_rank max abs error vs numpy reference"),
    Row("soft_rank B=32 n=100,000 fwd+bwd (ms)", "soft_rank_ms_n100000",
        "{:.0f}", "runs", ">", 0, " ms", "soft_rank n=100,000 B=32 fwd+bwd runs (ms)"),
    Row("soft_rank time / torchsort time, n=1000", "torchsort_ratio_n1000", "{:.2f}", "goal <= 2x", "<=", 2),
    Row("relaxed_topk B=32 n=1000 k=10 fwd+bwd, speedup vs per-element loop", "relaxed_topk_speedup_vs_loop",
        "{:.0f}x", ">= 50x", ">=", 50, "x", "relaxed_topk vs per-element loop (speedup)"),
    Row("relaxed_topk max abs error vs per-element loop", "relaxed_topk_max_abs_err_vs_loop",
        "{:.1e}", "<= 1e-4", "<=", 1e-4, "", "relaxed_topk max abs error vs per-element loop"),
    Row("MaxSim 1x32x128 vs 1000x180x128 / matmul floor (faster of batched, one GEMM)", "maxsim_ratio_to_matmul",
        "{:.2f}", "<= 1.3x", "<=", 1.3, "x", "MaxSim / matmul floor"),
    Row("MaxSim speedup vs per-document loop", "maxsim_speedup_vs_loop",
        "{:.2f}x", ">= 1.5x", ">=", 1.5, "x", "MaxSim vs per-document loop (speedup)"),
    Row("MaxSim max abs error vs per-document loop", "maxsim_max_abs_err_vs_loop",
        "{:.1e}", "<= 1e-4", "<=", 1e-4, "", "MaxSim max abs error vs per-document loop"),
    Row("import rag_relax_plugins (ms)", "import_time_ms", "{:.1f}", "< 100", "<", 100, " ms", "import rag_relax_plugins (ms)"),
]


def row_bars(results: Mapping[str, object], keys: Iterable[str] | None = None) -> list[Bar]:
    """The bars of :data:`ROWS` (goals left out) on a results dict.

    ``keys``: only the rows of these result keys (a standalone script checks the bars of what it
    measures); each must be the key of a bar row. A key missing from ``results`` gives a missed bar.
    """
    bar_rows = [r for r in ROWS if r.bar is not None]
    if keys is not None:
        wanted = set(keys)
        unknown = wanted - {r.key for r in bar_rows}
        if unknown:
            raise ValueError(f"keys must name bar rows of ROWS, got {sorted(unknown)}")
        bar_rows = [r for r in bar_rows if r.key in wanted]

    def value(key: str) -> float | None:
        v = results.get(key)
        return None if v is None else float(v)  # type: ignore[arg-type]

    return [Bar(r.bar, value(r.key), r.op, r.threshold, r.unit) for r in bar_rows if r.bar is not None]


def met(row: Row, value: float) -> bool:
    """Whether ``value`` reaches the row's threshold (bars and goals alike)."""
    return Bar(row.label, value, row.op, row.threshold).met


def render(results: dict[str, object]) -> str:
    lines = [
        f"Measured {results['date']} on {results['machine']}.",
        "",
        "| measure | value | bar | met |",
        "|---|---|---|---|",
    ]
    for row in ROWS:
        value = results.get(row.key)
        if value is None:
            lines.append(f"| {row.label} | n/a | {row.shown} | not measured |")
        else:
            ok = met(row, float(value))  # type: ignore[arg-type]
            lines.append(f"| {row.label} | {row.fmt.format(value)} | {row.shown} | {'yes' if ok else 'NO'} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    argparse.ArgumentParser(
        description="Render the core-ops table of docs/benchmarks.md (between its core-ops markers) "
        "from benchmarks/results/core_ops.json: rewrites docs/benchmarks.md and prints the table."
    ).parse_args(argv)
    results = json.loads((ROOT / "benchmarks/results/core_ops.json").read_text(encoding="utf-8"))
    page = ROOT / "docs/benchmarks.md"
    text = page.read_text(encoding="utf-8")
    block = f"{START}\n{render(results)}\n{END}"
    if START in text:
        text = re.sub(re.escape(START) + ".*?" + re.escape(END), lambda _: block, text, flags=re.S)
    else:
        text = text.replace("<!-- core-ops table: filled from core_ops.json -->", block)
    page.write_text(text, encoding="utf-8")
    print(render(results))


if __name__ == "__main__":
    main()
