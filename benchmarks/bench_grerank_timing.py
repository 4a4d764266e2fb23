"""G-Rerank training time per example on this machine (CPU by default).

Runs ``--steps`` optimiser steps (one question each, no accumulation) of G-Rerank with the frozen
SmolLM2 reader and the MiniLM cross-encoder scorer on HotpotQA training rows, and reports the median
wall time per example (reranker forward + relaxed mask + reader forward/backward + optimiser step).

    nice -n 10 .venv/bin/python benchmarks/bench_grerank_timing.py --steps 3 --threads 1

On a shared, oversubscribed CPU one intra-op thread is several times faster than torch's default.
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
    rows = [ex for ex in load_hotpotqa_distractor(limit=50) if ex.paragraphs][: args.steps + 1]
    with tempfile.TemporaryDirectory() as tmp:
        cfg = GRerankConfig(
            output_dir=tmp,
            epochs=1,
            grad_accum_steps=1,
            variant=args.variant,
            doc_tokens=args.doc_tokens,
            device=args.device,
            show_progress=False,
            save_every_steps=10_000,
            max_steps=args.steps + 1,
        )
        res = train_grerank(cfg, examples=rows)
    secs = res.history["seconds"][1:]  # the first step warms up
    out = {
        "steps": len(secs),
        "threads": torch.get_num_threads(),
        "document_cache": args.variant == "independent",
        "variant": args.variant,
        "doc_tokens": args.doc_tokens,
        "device": args.device,
        "seconds_per_example_median": statistics.median(secs),
        "seconds": secs,
    }
    print_table(
        [(args.device, args.variant, str(len(secs)), f"{statistics.median(secs):.2f}")],
        ("device", "variant", "steps", "s/example (median)"),
    )
    print(write_results("grerank_timing", out))
    shared = RESULTS / "rerankers.json"
    data = json.loads(shared.read_text(encoding="utf-8")) if shared.is_file() else {}
    data[f"grerank_seconds_per_example_{args.device}"] = out["seconds_per_example_median"]
    data[f"grerank_{args.device}_machine"] = machine()
    data[f"grerank_{args.device}_date"] = today()
    tmpf = shared.with_suffix(".json.tmp")
    tmpf.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    tmpf.replace(shared)


if __name__ == "__main__":
    main()
