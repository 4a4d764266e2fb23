"""What the Gaussian benchmark's unfrozen-stage batches hold (issue 4): false negatives and same-query pairs.

Run: ``.venv/bin/python benchmarks/gaussian_batch_audit.py`` (seconds; no model, no training).
Writes ``results/gaussian_batch_audit.json``.

It rebuilds, per seed, the training rows of ``bench_gaussian.py --stage unfrozen`` and the
validation rows of ``--unfreeze-val`` (same draws, same order), then walks the batches the
library's ``train`` makes over ``--unfreeze-steps`` steps and counts:

- batches where :func:`~rag_relax_plugins.training.gaussian_objective.false_negative_mask` masks
  something (a row's own positive text among its candidates): when 0, the masked loss equals the
  unmasked one, so the recorded figures do not depend on the mask;
- batches (and rows) where a query's *other* positive is an in-batch negative (two gold paragraphs
  of one question in one batch): left as negatives, as in MultipleNegativesRankingLoss.
"""

from __future__ import annotations

import argparse
import random
import sys
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_gaussian as bg
from _common import print_table, write_results
from _gaussian_data import hotpot

from rag_relax_plugins.training.gaussian_data import Pair
from rag_relax_plugins.training.gaussian_objective import false_negative_mask
from rag_relax_plugins.training.gaussian_train import _val_batches, make_batches


def _count(batches: Sequence[Sequence[Pair]]) -> dict[str, int]:
    masked = same_query_batches = same_query_rows = 0
    for b in batches:
        negatives = [[p.negative] for p in b] if any(p.negative is not None for p in b) else None  # as training's _embed
        masked += false_negative_mask([p.query for p in b], [p.positive for p in b], negatives) is not None
        queries = [p.query for p in b]
        rows = sum(queries.count(q) > 1 for q in queries)
        same_query_batches += rows > 0
        same_query_rows += rows
    return {"batches": len(batches), "masked_batches": masked, "same_query_batches": same_query_batches,
            "same_query_rows": same_query_rows}


def _train_batches(pairs: list[Pair], batch_size: int, seed: int, steps: int) -> list[list[Pair]]:
    out: list[list[Pair]] = []
    epoch = 0
    while len(out) < steps:
        out += make_batches(pairs, batch_size, seed, epoch)[: steps - len(out)]
        epoch += 1
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=16, help="bench_gaussian's --unfreeze-batch")
    ap.add_argument("--steps", type=int, default=150, help="bench_gaussian's --unfreeze-steps")
    args = ap.parse_args()
    data = hotpot()
    val_items = bg._val_items(data)
    result: dict[str, object] = {"args": vars(args)}
    table = []
    for seed in range(args.seeds):
        g = random.Random(seed)  # the draws of bench_gaussian.unfrozen_run, in its order
        train = [Pair(r["query"], r["positive"], r["negative"]) for r in bg._pair_rows(data["train_items"], g)]
        val = [Pair(r["query"], r["positive"], r["negative"]) for r in bg._pair_rows(val_items, g)]
        tr = _count(_train_batches(train, args.batch_size, seed, args.steps))
        va = _count(_val_batches(val, args.batch_size, seed))
        result[f"seed{seed}"] = {"train": tr, "val": {**va, "rows": len(val)}}
        table.append((str(seed), f"{tr['masked_batches']}/{tr['batches']}",
                      f"{tr['same_query_batches']}/{tr['batches']} ({tr['same_query_rows']} rows)",
                      f"{va['masked_batches']}/{va['batches']}", f"{va['same_query_rows']} of {len(val)} rows"))
    print_table(table, ("seed", "train: masked", "train: same-query pair", "val: masked", "val: same-query pair"))
    print(f"wrote {write_results('gaussian_batch_audit', result)}")


if __name__ == "__main__":
    main()
