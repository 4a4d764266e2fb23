"""Quality of Mixture-of-Logits retrieval vs dot product / cosine, 3 seeds each (mean and std).

1. MovieLens-100k, leave-last-out next-item retrieval over all items (the user's training items
   excluded from the ranking): MoL vs cosine/tau with the same item-id embedding budget
   (``D = P_x * d_P`` floats per item), same history encoder, same loss and negatives.
   HR@10, HR@50, NDCG@10, MRR.
2. HotpotQA open corpus (all unique paragraphs of ``distractor_500.jsonl``; half the questions
   train, the other half test): a MoL head over frozen MiniLM features vs MiniLM cosine.
   Recall@10, nDCG@10.

Run (from the repository root)::

    nice -n 10 .venv/bin/python benchmarks/bench_mol_quality.py

Writes its keys (``movielens_hr10_mol``, ``movielens_hr10_dot``, ``hotpot_ndcg10_mol``,
``hotpot_ndcg10_cosine``, ``mol_quality_details``, ``machine``, ``date``) into
``benchmarks/results/mol.json``, keeping the other keys of that file.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import RESULTS, machine, print_table, today

ML_METRICS = ("hr@10", "hr@50", "ndcg@10", "mrr")
HP_METRICS = ("recall@10", "ndcg@10")


def _mean_std(values: list[float]) -> tuple[float, float]:
    from rag_relax_plugins.training.mol_eval import mean_std

    return mean_std(values)


def _fmt(values: list[float]) -> str:
    m, s = _mean_std(values)
    return f"{m:.4f} ± {s:.4f}"


def _movielens_seed(args: argparse.Namespace, seed: int, data: Any = None) -> dict[str, dict[str, Any]]:
    """Train and evaluate both models for one seed (a worker process when ``--jobs`` > 1)."""
    import torch

    from rag_relax_plugins.datasets.movielens import load_movielens
    from rag_relax_plugins.training.mol_data import movielens_next_item
    from rag_relax_plugins.training.mol_recipes import RecipeConfig
    from rag_relax_plugins.training.mol_runs import run_movielens
    from rag_relax_plugins.training.mol_train import MoLTrainConfig

    torch.set_num_threads(args.threads)
    if data is None:
        data = movielens_next_item(load_movielens(args.data and Path(args.data) / "movielens-100k"), max_len=args.max_len)
    out: dict[str, dict[str, Any]] = {}
    for sim in ("dot", "mol"):
        cfg = MoLTrainConfig(
            epochs=args.ml_epochs, batch_size=args.ml_batch_size, lr=args.ml_lr,
            num_negatives=args.ml_negatives, seed=seed, device="cpu", show_progress=False,
        )
        recipe = RecipeConfig(
            similarity=sim, embedding_dim=args.dim, max_len=args.max_len,
            num_query_embeddings=args.pq, num_item_embeddings=args.px, tau=0.05,
            mi_loss_weight=args.mi_weight, component_dim=args.component_dim or None,
            warm_start_noise=None if args.ml_noise < 0 else args.ml_noise,
        )
        rep = run_movielens(cfg, recipe, data=data)
        rep.pop("history")
        out[sim] = rep
        print(f"  movielens seed {seed} {sim}: " + "  ".join(f"{k} {rep['metrics'][k]:.4f}" for k in ML_METRICS)
              + f"  ({rep['train_seconds']:.0f} s)", flush=True)
    return out


def bench_movielens(args: argparse.Namespace) -> dict[str, Any]:
    from rag_relax_plugins.datasets.movielens import load_movielens
    from rag_relax_plugins.training.mol_data import movielens_next_item

    data = movielens_next_item(load_movielens(args.data and Path(args.data) / "movielens-100k"), max_len=args.max_len)
    if args.jobs > 1:  # one process per seed; each result is deterministic given its seed
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(max_workers=args.jobs, mp_context=mp.get_context("spawn")) as pool:
            per_seed = list(pool.map(_movielens_seed, [args] * len(args.seeds), args.seeds))
    else:
        per_seed = [_movielens_seed(args, seed, data) for seed in args.seeds]
    runs: dict[str, list[dict[str, Any]]] = {"dot": [r["dot"] for r in per_seed], "mol": [r["mol"] for r in per_seed]}
    return {"runs": runs, "config": {"epochs": args.ml_epochs, "batch_size": args.ml_batch_size, "lr": args.ml_lr,
                                     "num_negatives": args.ml_negatives, "embedding_dim": args.dim,
                                     "max_len": args.max_len, "P_q": args.pq, "P_x": args.px,
                                     "component_dim": args.component_dim or args.dim // args.px, "tau": 0.05,
                                     "mi_loss_weight": args.mi_weight, "warm_start_noise": args.ml_noise,
                                     "encoder": "pool", "train_pairs": int(data.train.items.shape[0]),
                                     "test_users": int(data.test_targets.shape[0])}}


def bench_hotpot(args: argparse.Namespace) -> dict[str, Any]:
    from rag_relax_plugins.datasets.hotpotqa import load_hotpotqa_distractor
    from rag_relax_plugins.embedders.sentence_transformer import SentenceTransformerEncoder
    from rag_relax_plugins.training.mol_data import hotpot_open_split
    from rag_relax_plugins.training.mol_recipes import RecipeConfig
    from rag_relax_plugins.training.mol_runs import encode_hotpot, hotpot_cosine_metrics, run_hotpot
    from rag_relax_plugins.training.mol_train import MoLTrainConfig

    split = hotpot_open_split(load_hotpotqa_distractor(args.data))
    cached = bool(args.feature_cache) and Path(args.feature_cache).is_file()
    t0 = time.perf_counter()
    features = encode_hotpot(split, SentenceTransformerEncoder(device="cpu"), cache=args.feature_cache)
    encode_s = time.perf_counter() - t0
    print(f"  hotpot: {len(split.doc_ids)} paragraphs, {len(split.train_questions)} train / "
          f"{len(split.test_questions)} test questions, features in {encode_s:.0f} s"
          + (" (from the cache file if its texts matched)" if cached else ""), flush=True)
    cosine = hotpot_cosine_metrics(features)
    runs = []
    for seed in args.seeds:
        cfg = MoLTrainConfig(
            epochs=args.hp_epochs, batch_size=args.hp_batch_size, lr=args.hp_lr, weight_decay=args.hp_weight_decay,
            num_negatives=args.hp_negatives, seed=seed, device="cpu", show_progress=False,
        )
        recipe = RecipeConfig(similarity="mol", num_query_embeddings=args.hp_pq, num_item_embeddings=args.hp_px,
                              component_dim=args.hp_component_dim, tau=0.05, mi_loss_weight=args.mi_weight)
        rep = run_hotpot(cfg, recipe, features=features, warm_start_noise=args.hp_noise)
        rep.pop("history")
        runs.append(rep)
        print(f"  hotpot seed {seed} mol: " + "  ".join(f"{k} {rep['metrics'][k]:.4f}" for k in HP_METRICS)
              + f"  (cosine {cosine['ndcg@10']:.4f}; {rep['train_seconds']:.0f} s)", flush=True)
    return {"cosine": cosine, "runs": runs, "encode_seconds": encode_s, "feature_cache_used": cached,
            "config": {"epochs": args.hp_epochs, "batch_size": args.hp_batch_size, "lr": args.hp_lr,
                       "weight_decay": args.hp_weight_decay, "num_negatives": args.hp_negatives,
                       "P_q": args.hp_pq, "P_x": args.hp_px, "component_dim": args.hp_component_dim or 384,
                       "warm_start_noise": args.hp_noise, "tau": 0.05, "mi_loss_weight": args.mi_weight,
                       "train_pairs": runs[0]["num_train_pairs"] if runs else None,
                       "test_queries": runs[0]["num_test_queries"] if runs else None}}


def merge_results(path: Path, updates: dict[str, Any], nested: tuple[str, ...] = ()) -> None:
    """Read ``path`` (if any), update only our keys, write atomically (temp file + os.replace).

    Keys in ``nested`` hold dicts that are merged one level deep (so a MovieLens-only run keeps
    the HotpotQA details of an earlier run, and vice versa).
    """
    data: dict[str, Any] = {}
    if path.is_file():
        data = json.loads(path.read_text(encoding="utf-8"))
    for key in nested:
        if isinstance(data.get(key), dict) and key in updates:
            updates = {**updates, key: {**data[key], **updates[key]}}
    data.update(updates)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--data", default=None, help="shared data folder (default: $RAG_RELAX_DATA or ../shared/data)")
    p.add_argument("--skip-movielens", action="store_true")
    p.add_argument("--skip-hotpot", action="store_true")
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads (1 is fastest on a shared box)")
    p.add_argument("--jobs", type=int, default=1, help="MovieLens seeds trained in parallel processes")
    p.add_argument("--mi-weight", type=float, default=1e-3)
    p.add_argument("--ml-epochs", type=int, default=8)
    p.add_argument("--ml-batch-size", type=int, default=128)
    p.add_argument("--ml-lr", type=float, default=1e-3)
    p.add_argument("--ml-negatives", type=int, default=128)
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--max-len", type=int, default=50)
    p.add_argument("--pq", type=int, default=4)
    p.add_argument("--px", type=int, default=4)
    p.add_argument("--component-dim", type=int, default=64, help="MoL d_P on MovieLens (0: D / P_x)")
    p.add_argument("--ml-noise", type=float, default=0.1, help="identity warm start noise (-1: random init)")
    p.add_argument("--hp-epochs", type=int, default=20)
    p.add_argument("--hp-batch-size", type=int, default=64)
    p.add_argument("--hp-lr", type=float, default=1e-4)
    p.add_argument("--hp-weight-decay", type=float, default=0.0)
    p.add_argument("--hp-negatives", type=int, default=512)
    p.add_argument("--hp-pq", type=int, default=4)
    p.add_argument("--hp-px", type=int, default=4)
    p.add_argument("--hp-component-dim", type=int, default=None)
    p.add_argument("--hp-noise", type=float, default=0.1)
    p.add_argument("--feature-cache", default=None, help="optional .safetensors cache of the MiniLM features")
    p.add_argument("--output", default=str(RESULTS / "mol.json"))
    args = p.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    command = "nice -n 10 .venv/bin/python benchmarks/bench_mol_quality.py " + " ".join(sys.argv[1:])
    updates: dict[str, Any] = {"machine": machine(), "date": today()}
    details: dict[str, Any] = {"seeds": args.seeds,
                               "note": "2-core machine shared by several agents; timings are indicative only"}
    t0 = time.perf_counter()
    if not args.skip_movielens:
        print("MovieLens-100k leave-last-out next item (all items; training items excluded)", flush=True)
        ml = bench_movielens(args)
        rows = []
        summary: dict[str, Any] = {}
        for sim, label in (("dot", "dot product (cosine/tau)"), ("mol", "MoL")):
            vals = {k: [r["metrics"][k] for r in ml["runs"][sim]] for k in ML_METRICS}
            summary[sim] = {k: dict(zip(("mean", "std"), _mean_std(v), strict=False)) | {"per_seed": v} for k, v in vals.items()}
            rows.append((label, *(_fmt(vals[k]) for k in ML_METRICS)))
        print_table(rows, ("model", *ML_METRICS))
        gain = summary["mol"]["hr@10"]["mean"] / summary["dot"]["hr@10"]["mean"] - 1
        print(f"MoL vs dot HR@10: {100 * gain:+.1f}% relative (bar: +5%)\n", flush=True)
        updates["movielens_hr10_mol"] = summary["mol"]["hr@10"]["mean"]
        updates["movielens_hr10_dot"] = summary["dot"]["hr@10"]["mean"]
        details["movielens"] = {"command": command.strip(), "summary": summary, "hr10_relative_gain": gain, "config": ml["config"],
                                "train_seconds": {s: [r["train_seconds"] for r in ml["runs"][s]] for s in ml["runs"]}}
    if not args.skip_hotpot:
        print("HotpotQA open corpus: MoL head over frozen MiniLM vs MiniLM cosine (test half)", flush=True)
        hp = bench_hotpot(args)
        vals = {k: [r["metrics"][k] for r in hp["runs"]] for k in HP_METRICS}
        rows = [("MiniLM cosine", *(f"{hp['cosine'][k]:.4f}" for k in HP_METRICS)),
                ("MoL head (frozen MiniLM)", *(_fmt(vals[k]) for k in HP_METRICS))]
        print_table(rows, ("model", *HP_METRICS))
        mol_ndcg = _mean_std(vals["ndcg@10"])
        print(f"MoL vs cosine nDCG@10: {100 * (mol_ndcg[0] / hp['cosine']['ndcg@10'] - 1):+.1f}% relative\n", flush=True)
        updates["hotpot_ndcg10_mol"] = mol_ndcg[0]
        updates["hotpot_ndcg10_cosine"] = hp["cosine"]["ndcg@10"]
        details["hotpot"] = {"command": command.strip(), "cosine": hp["cosine"], "config": hp["config"], "encode_seconds": hp["encode_seconds"],
                             "feature_cache_used": hp["feature_cache_used"],
                             "mol": {k: dict(zip(("mean", "std"), _mean_std(v), strict=False)) | {"per_seed": v} for k, v in vals.items()}}
    details["total_seconds"] = time.perf_counter() - t0
    updates["mol_quality_details"] = details
    merge_results(Path(args.output), updates, nested=("mol_quality_details",))
    print(f"wrote {args.output} ({details['total_seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
