"""G-Rerank training time per example on this machine (CPU by default).

Runs two epochs over ``--steps`` HotpotQA training questions (one optimiser step per question, no
accumulation) of G-Rerank with the frozen SmolLM2 reader and the MiniLM cross-encoder scorer, and
reports the median wall time per example (reranker forward + relaxed mask + reader forward/backward +
optimiser step) of each epoch. With the independent layout the reader's document states are kept
after the first visit (``cache_reader_states``), so the second epoch shows the steady-state cost of
a multi-epoch run and the first epoch the cost of a question seen once.

    nice -n 10 .venv/bin/python benchmarks/bench_grerank_timing.py --steps 6 --threads 2

On a shared, oversubscribed CPU one intra-op thread is several times faster than torch's default.

A report only: no issue sets a bar on this timing, so the script exits 0 whatever its figures
(it still fails when the run itself fails).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile

import torch
from _common import RESULTS, machine, print_table, today, write_results

from rag_relax_plugins.datasets.hotpotqa import load_hotpotqa_distractor
from rag_relax_plugins.training.grerank import GRerankConfig, train_grerank


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--variant", default="independent", choices=["independent", "concatenated"])
    ap.add_argument("--doc-tokens", type=int, default=48)
    ap.add_argument("--device", default="cpu")
    ap.add_argument(
        "--threads", type=int, default=None, help="torch intra-op threads (default: torch's)"
    )
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = [ex for ex in load_hotpotqa_distractor(limit=50) if ex.paragraphs][: args.steps]
    stored = args.variant == "independent"
    with tempfile.TemporaryDirectory() as tmp:
        cfg = GRerankConfig(
            output_dir=tmp,
            epochs=2,
            grad_accum_steps=1,
            variant=args.variant,
            doc_tokens=args.doc_tokens,
            cache_reader_states=stored,
            device=args.device,
            show_progress=False,
            save_every_steps=10_000,
        )
        res = train_grerank(cfg, examples=rows)
    n = len(rows)
    first = res.history["seconds"][1:n]  # step 0 warms up
    second = res.history["seconds"][n : 2 * n]
    out = {
        "steps": n,
        "threads": torch.get_num_threads(),
        "document_cache": stored,
        "variant": args.variant,
        "doc_tokens": args.doc_tokens,
        "device": args.device,
        "seconds_per_example_median": statistics.median(first),
        "seconds_per_example_median_epoch2": statistics.median(second),
        "epoch2_speedup": statistics.median(first) / statistics.median(second),
        "seconds": first,
        "seconds_epoch2": second,
    }
    print_table(
        [
            (args.device, args.variant, "1 (states computed)", str(len(first)), f"{statistics.median(first):.2f}"),
            (args.device, args.variant, "2 (states reused)" if stored else "2", str(len(second)), f"{statistics.median(second):.2f}"),
        ],
        ("device", "variant", "epoch", "steps", "s/example (median)"),
    )
    print(write_results("grerank_timing", out))
    shared = RESULTS / "rerankers.json"
    data = json.loads(shared.read_text(encoding="utf-8")) if shared.is_file() else {}
    data[f"grerank_seconds_per_example_{args.device}"] = out["seconds_per_example_median"]
    data[f"grerank_seconds_per_example_{args.device}_later_epochs"] = out[
        "seconds_per_example_median_epoch2"
    ]
    data[f"grerank_{args.device}_machine"] = machine()
    data[f"grerank_{args.device}_date"] = today()
    tmpf = shared.with_suffix(".json.tmp")
    tmpf.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    tmpf.replace(shared)


if __name__ == "__main__":
    main()
