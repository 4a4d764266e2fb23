"""Which DMA variant gives the reader a usable signal? Answer NLL with gold-only vs distractor-only docs.

For each HotpotQA distractor train row with both gold paragraphs present, the frozen SmolLM2 reader
scores the gold answer with the document mask set to 1 on the gold paragraphs only, and then on the
distractors only (all paragraphs stay in the prompt; the mask removes the others through the DMA
bias). A usable training signal needs gold-only NLL < distractor-only NLL.

    .venv/bin/python benchmarks/bench_grerank_signal.py --rows 16 --doc-tokens 48
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from _common import print_table, write_results

from rag_relax_plugins.datasets.hotpotqa import load_hotpotqa_distractor
from rag_relax_plugins.readers.causal_lm import CausalLMReader


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=16)
    ap.add_argument("--doc-tokens", type=int, default=48)
    ap.add_argument("--device", default="cpu")
    ap.add_argument(
        "--reader-path", default=None, help="converted reader folder (default: cached SmolLM2)"
    )
    args = ap.parse_args()
    torch.manual_seed(0)
    rows = [ex for ex in load_hotpotqa_distractor(limit=400) if len(ex.gold_indices) == 2][
        : args.rows
    ]
    reader = CausalLMReader(args.reader_path, device=args.device, doc_tokens=args.doc_tokens)
    out: dict[str, object] = {
        "rows": len(rows),
        "doc_tokens": args.doc_tokens,
        "device": args.device,
    }
    table: list[tuple[str, ...]] = []
    for variant in ("concatenated", "independent"):
        gaps, wins, secs = [], 0, []
        for ex in rows:
            n = len(ex.paragraphs)
            gold = torch.zeros(n)
            gold[list(ex.gold_indices)] = 1.0
            masks = torch.stack([gold, 1.0 - gold])  # (2, N): gold-only, distractor-only
            t0 = time.perf_counter()
            with torch.inference_mode():
                nll = reader.answer_nll(
                    ex.question, ex.paragraph_texts(), ex.answer, masks, variant=variant
                ).cpu()
            secs.append(time.perf_counter() - t0)
            gap = float(nll[1] - nll[0])
            gaps.append(gap)
            wins += gap > 0
        out[variant] = {
            "mean_gap_nats": statistics.fmean(gaps),
            "median_gap_nats": statistics.median(gaps),
            "gold_better": wins,
            "seconds_per_row_2_masks": statistics.median(secs),
            "gaps": gaps,
        }
        table.append(
            (
                variant,
                f"{statistics.fmean(gaps):.3f}",
                f"{wins}/{len(rows)}",
                f"{statistics.median(secs):.2f}",
            )
        )
    print_table(table, ("variant", "mean NLL gap (distractor - gold)", "gold better", "s/row"))
    print(write_results("grerank_signal", out))


if __name__ == "__main__":
    main()
