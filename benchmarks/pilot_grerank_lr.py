"""Pick G-Rerank learning rates on held-out training rows, never on the test split (issue 5).

Trains the cross-encoder scorer with G-Rerank on the first ``--train-rows`` rows of the training
split and reports Recall@2 / Recall@5 / MRR on training rows 350-399 (a validation slice that the
pilot never trains on; the 100 test rows are not touched). Each call adds one named trial to
``benchmarks/results/grerank_lr_pilot.json``.

    nice -n 10 .venv/bin/python benchmarks/pilot_grerank_lr.py --name A --lr 2e-5 --head-lr 1e-3
    nice -n 10 .venv/bin/python benchmarks/pilot_grerank_lr.py --name B --lr 5e-5 --head-lr 3e-3

(The two trials above ran side by side, one intra-op thread each, 150 rows, 2 epochs, tau 1.0.)
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import torch
from _common import RESULTS, machine, today

from rag_relax_plugins.datasets.hotpotqa import load_hotpotqa_distractor
from rag_relax_plugins.rerankers.gumbel import GumbelReranker
from rag_relax_plugins.training.grerank import GRerankConfig, train_grerank
from rag_relax_plugins.training.grerank_eval import evaluate_reranker, hotpot_split


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--name", required=True)
    ap.add_argument("--lr", type=float, default=2e-5)
    ap.add_argument("--head-lr", type=float, default=1e-3)
    ap.add_argument("--tau", type=float, default=1.0)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--train-rows", type=int, default=150)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--runs", default="runs/grerank_pilot")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    train, _ = hotpot_split(load_hotpotqa_distractor(), 400)
    if args.train_rows > 350:
        raise SystemExit("--train-rows must be <= 350: rows 350-399 are the validation slice")
    rows, val = train[: args.train_rows], train[350:400]
    reranker = GumbelReranker("cross", max_length=128, device="cpu", seed=0, tau=args.tau)
    before = evaluate_reranker(reranker, val)["all"]
    t0 = time.perf_counter()
    res = train_grerank(
        GRerankConfig(
            output_dir=f"{args.runs}/{args.name}",
            epochs=args.epochs,
            learning_rate=args.lr,
            head_learning_rate=args.head_lr,
            tau=args.tau,
            save_every_steps=10_000,
            show_progress=False,
            device="cpu",
        ),
        examples=rows,
        reranker=reranker,
    )
    after = evaluate_reranker(GumbelReranker.from_pretrained(res.model_dir, device="cpu"), val)
    trial: dict[str, Any] = {
        "lr": args.lr,
        "head_lr": args.head_lr,
        "tau": args.tau,
        "epochs": args.epochs,
        "train_rows": len(rows),
        "val_before": before,
        "val_after": after["all"],
        "seconds_per_example": res.seconds_per_example,
        "minutes": (time.perf_counter() - t0) / 60,
        "threads": args.threads,
    }
    print(json.dumps({args.name: trial}, indent=1))
    path = RESULTS / "grerank_lr_pilot.json"
    data = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    data.setdefault("trials", {})[args.name] = trial
    data.update(machine=machine(), date=today(), validation="training rows 350-399 (42 judged)")
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    tmp.replace(path)


if __name__ == "__main__":
    main()
