"""Write the core-ops table of docs/benchmarks.md from benchmarks/results/core_ops.json.

Run: ``.venv/bin/python benchmarks/render_core_table.py`` (``make bench-core`` runs it after the
benchmark), so the page always shows the figures of the last recorded run.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
START, END = "<!-- core-ops table: start -->", "<!-- core-ops table: end -->"

ROWS = [
    ("soft_rank B=32 n=1000 fwd+bwd, speedup vs pairwise sigmoid rank", "soft_rank_speedup_vs_pairwise_n1000", "{:.0f}x", ">= 100x", lambda v: v >= 100),
    ("soft_rank max abs error vs numpy reference (float64)", "soft_rank_max_abs_err_vs_reference", "{:.1e}", "<= 1e-5", lambda v: v <= 1e-5),
    ("soft_rank B=32 n=100,000 fwd+bwd (ms)", "soft_rank_ms_n100000", "{:.0f}", "runs", lambda v: v > 0),
    ("soft_rank time / torchsort time, n=1000", "torchsort_ratio_n1000", "{:.2f}", "goal <= 2x", lambda v: v <= 2),
    ("relaxed_topk B=32 n=1000 k=10 fwd+bwd, speedup vs per-element loop", "relaxed_topk_speedup_vs_loop", "{:.0f}x", ">= 50x", lambda v: v >= 50),
    ("MaxSim 1x32x128 vs 1000x180x128 / bare batched matmul", "maxsim_ratio_to_matmul", "{:.2f}", "<= 1.3x", lambda v: v <= 1.3),
    ("MaxSim speedup vs per-document loop", "maxsim_speedup_vs_loop", "{:.2f}x", ">= 1.5x", lambda v: v >= 1.5),
    ("import rag_relax_plugins (ms)", "import_time_ms", "{:.1f}", "< 100", lambda v: v < 100),
]


def render(results: dict[str, object]) -> str:
    lines = [
        f"Measured {results['date']} on {results['machine']}.",
        "",
        "| measure | value | bar | met |",
        "|---|---|---|---|",
    ]
    for label, key, fmt, bar, ok in ROWS:
        value = results.get(key)
        if value is None:
            lines.append(f"| {label} | n/a | {bar} | not measured |")
        else:
            lines.append(f"| {label} | {fmt.format(value)} | {bar} | {'yes' if ok(value) else 'NO'} |")
    return "\n".join(lines)


def main() -> None:
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
