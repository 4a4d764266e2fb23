"""MovieLens diagnostic: the same trained weights scored on the validation and the test queries.

Each model is trained once per seed on the validation split of ``bench_mol_quality.py``
(``--split valid``: each user's last two items left out) and then ranks, with the same weights,
two held-out targets per user against all items minus the user's earlier items:

- ``valid``: the second-to-last item, from the history up to the third-to-last (the
  validation protocol);
- ``test``: the last item, from the history up to the second-to-last (the test protocol's
  queries; these weights never trained on the second-to-last item's pair, so figures are a
  little below a model trained on the test split).

With the weights fixed, a change in a model's standing between the two columns comes from the
queries (which items happen to be held out), not from training. The paired figures compare every
model with the first one per user (each user's HR@10, HR@50, NDCG@10 and reciprocal rank
averaged over the seeds); ``shift`` is the per-user difference of those paired differences
(test minus valid) with its standard error over users, per metric.

Run (from the repository root; the dot products D9 and D11 of docs/mol_training.md, about 5
minutes; ``--with-mol`` adds MoL trial M12, about 30 minutes a seed)::

    nice -n 10 .venv/bin/python benchmarks/diag_mol_query_sets.py --jobs 2 --with-mol

``--model NAME dot|mol KEY=VALUE ...`` replaces the default models (the options are the
``--dot-set`` / ``--mol-set`` overrides of ``bench_mol_quality.py`` on its defaults). Writes
``benchmarks/results/mol_query_sets.json``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import RESULTS, machine, print_table, today
from bench_mol_quality import (
    DOT_DEFAULT,
    MOL_DEFAULT,
    _fmt,
    _model_configs,
    _parse_overrides,
    merge_results,
)
from bench_mol_quality import build_parser as bench_parser

QUERY_SETS = ("valid", "test")
METRICS = ("hr@10", "hr@50", "ndcg@10", "mrr")
PROTOCOL = ("trained on MovieLens-100k without each user's last two items; 'valid' ranks the second-to-last item "
            "from the history up to the third-to-last, 'test' the last item from the history up to the "
            "second-to-last, against all items minus the user's earlier items; same weights for both")
# D9: the best dot product of the test side runs (one interest); D11: the benchmark's baseline.
DEFAULT_MODELS = (
    ("D9", "dot", tuple(o for o in DOT_DEFAULT if not o.startswith("num_interests="))),
    ("D11", "dot", DOT_DEFAULT),
)


def _bench_args(sim: str, overrides: tuple[str, ...], data: str | None) -> argparse.Namespace:
    """``bench_mol_quality.py --split valid`` defaults with one model's overrides."""
    args = bench_parser().parse_args(["--skip-hotpot", "--split", "valid"] + (["--data", data] if data else []))
    if sim == "dot":
        args.dot_set = list(overrides)
    else:
        args.mol_set = list(overrides)
    return args


def _query_sets(args: argparse.Namespace) -> dict[str, Any]:
    from rag_relax_plugins.datasets.movielens import load_movielens
    from rag_relax_plugins.training.mol_data import movielens_next_item

    ml = load_movielens(args.data and Path(args.data) / "movielens-100k")
    return {split: movielens_next_item(ml, max_len=args.max_len, split=split) for split in QUERY_SETS}


def _run_one(job: tuple[str, str, tuple[str, ...], int, str | None]) -> dict[str, Any]:
    """Train one model for one seed on the validation split; ranks on both query sets by user id."""
    import torch

    from rag_relax_plugins.training.mol_eval import rank_metrics, score_all, target_ranks
    from rag_relax_plugins.training.mol_recipes import load_recipe_model
    from rag_relax_plugins.training.mol_runs import run_movielens

    name, sim, overrides, seed, data_dir = job
    torch.set_num_threads(1)
    args = _bench_args(sim, overrides, data_dir)
    cfg, recipe = _model_configs(args, sim, seed)
    sets = _query_sets(args)
    out: dict[str, Any] = {"name": name, "seed": seed, "metrics": {}, "ranks": {}}
    with tempfile.TemporaryDirectory() as tmp:
        rep = run_movielens(cfg, recipe, data=sets["valid"], save_to=Path(tmp) / "model")
        model, _ = load_recipe_model(Path(tmp) / "model")
    out["train_seconds"] = rep["train_seconds"]
    out["config"] = {"train": {k: v for k, v in cfg.to_dict().items() if k != "seed"}, "recipe": recipe.to_dict()}
    for split, d in sets.items():
        d = d.with_user_ids() if recipe.user_embedding else d
        ranks = target_ranks(score_all(model, d.test_histories), d.test_targets, d.test_seen)
        if split == "valid" and ranks.tolist() != rep["test_ranks"]:
            raise RuntimeError("the reloaded model does not reproduce the trained model's validation ranks")
        out["metrics"][split] = rank_metrics(ranks, ks=(10, 50))
        out["ranks"][split] = dict(zip(d.test_users.tolist(), ranks.tolist(), strict=True))
    print(f"  {name} seed {seed}: " + "  ".join(
        f"{split} HR@10 {out['metrics'][split]['hr@10']:.4f}" for split in QUERY_SETS) + f"  ({out['train_seconds']:.0f} s)", flush=True)
    return out


def _per_user(runs: list[dict[str, Any]], split: str, users: list[int], metric: str) -> list[float]:
    """Each user's ``metric`` averaged over the seeds."""
    import torch

    from rag_relax_plugins.training.mol_eval import query_rank_metric

    ranks = torch.tensor([[r["ranks"][split][u] for u in users] for r in runs])  # (S, U)
    return query_rank_metric(ranks, metric).mean(0).tolist()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--model", nargs="+", action="append", metavar="NAME SIM KEY=VALUE",
                   help="a model: name, 'dot' or 'mol', then overrides (repeat; default: D9 and D11)")
    p.add_argument("--with-mol", action="store_true",
                   help="also MoL trial M12 (bench_mol_quality.py's MOL_DEFAULT; about 30 minutes a seed)")
    p.add_argument("--jobs", type=int, default=1, help="(model, seed) runs in parallel processes")
    p.add_argument("--data", default=None, help="shared data folder (default: $RAG_RELAX_DATA or ../shared/data)")
    p.add_argument("--output", default=str(RESULTS / "mol_query_sets.json"))
    args = p.parse_args()
    models = []
    for spec in args.model or []:
        if len(spec) < 2 or spec[1] not in ("dot", "mol"):
            raise SystemExit(f"--model needs NAME and 'dot' or 'mol', got {spec}")
        _parse_overrides(spec[2:])  # KEY=VALUE syntax checked before any training
        models.append((spec[0], spec[1], tuple(spec[2:])))
    models = models or [(n, s, tuple(o)) for n, s, o in DEFAULT_MODELS]
    if args.with_mol:
        models.append(("M12", "mol", MOL_DEFAULT))
    if len({m[0] for m in models}) != len(models):
        raise SystemExit("model names must be unique")
    for _name, sim, over in models:  # unknown options fail here, not in a worker
        _model_configs(_bench_args(sim, over, args.data), sim, 0)
    jobs = [(name, sim, over, seed, args.data) for name, sim, over in models for seed in args.seeds]
    jobs.sort(key=lambda j: j[1] != "mol")  # the slow MoL runs first, so the workers finish together
    command = "nice -n 10 .venv/bin/python benchmarks/diag_mol_query_sets.py " + " ".join(sys.argv[1:])
    print(f"training {len(models)} model(s) x {len(args.seeds)} seed(s) on the validation split", flush=True)
    t0 = time.perf_counter()
    if args.jobs > 1:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(max_workers=args.jobs, mp_context=mp.get_context("spawn")) as pool:
            results = list(pool.map(_run_one, jobs))
    else:
        results = [_run_one(j) for j in jobs]

    from rag_relax_plugins.core.metrics import paired_difference
    from rag_relax_plugins.training.mol_eval import mean_std

    by_model = {name: [r for r in results if r["name"] == name] for name, _, _ in models}
    users = {split: sorted(by_model[models[0][0]][0]["ranks"][split]) for split in QUERY_SETS}
    common = sorted(set(users["valid"]) & set(users["test"]))
    ref = models[0][0]
    report: dict[str, Any] = {}
    rows = []
    for name, sim, over in models:
        runs = by_model[name]
        entry: dict[str, Any] = {"similarity": sim, "overrides": list(over), "config": runs[0]["config"],
                                 "train_seconds": [r["train_seconds"] for r in runs]}
        for split in QUERY_SETS:
            vals = {m: [r["metrics"][split][m] for r in runs] for m in METRICS}
            entry[split] = {m: dict(zip(("mean", "std"), mean_std(v), strict=True)) | {"per_seed": v} for m, v in vals.items()}
        if name != ref:  # per-user paired differences against the reference, per query set and metric
            paired: dict[str, Any] = {}
            shift: dict[str, Any] = {}
            for metric in METRICS:
                paired[metric] = {split: paired_difference(_per_user(runs, split, users[split], metric),
                                                           _per_user(by_model[ref], split, users[split], metric))
                                  for split in QUERY_SETS}
                gap = {split: [a - b for a, b in zip(_per_user(runs, split, common, metric),
                                                     _per_user(by_model[ref], split, common, metric), strict=True)]
                       for split in QUERY_SETS}
                shift[metric] = paired_difference(gap["test"], gap["valid"])
            entry[f"paired_minus_{ref}"], entry[f"shift_test_minus_valid_vs_{ref}"] = paired, shift
        report[name] = entry
        rows.append((name, sim, *(_fmt(entry[split][m]["per_seed"]) for m in ("hr@10", "mrr") for split in QUERY_SETS)))
    print_table(rows, ("model", "scorer", "valid HR@10", "test HR@10", "valid MRR", "test MRR"))
    shift_rows = []
    for name, _, _ in models[1:]:
        e = report[name]
        for metric in METRICS:
            pv, pt = (e[f"paired_minus_{ref}"][metric][split] for split in QUERY_SETS)
            sh = e[f"shift_test_minus_valid_vs_{ref}"][metric]
            shift_rows.append((f"{name} - {ref}", metric, f"{pv['mean']:+.4f} ± {pv['se']:.4f}", f"{pt['mean']:+.4f} ± {pt['se']:.4f}",
                               f"{sh['mean']:+.4f} ± {sh['se']:.4f}", f"{sh['mean'] / sh['se']:+.1f}"))
    if shift_rows:
        print(f"\npaired over {len(common)} users (each user's value averaged over the seeds; ± one standard error):")
        print_table(shift_rows, ("models", "metric", "valid", "test", "shift (test - valid)", "shift / SE"))
    seconds = time.perf_counter() - t0
    merge_results(Path(args.output), {"machine": machine(), "date": today(), "command": command.strip(),
                                      "seeds": args.seeds, "reference": ref, "models": report,
                                      "total_seconds": seconds, "protocol": PROTOCOL})
    print(f"wrote {args.output} ({seconds:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
