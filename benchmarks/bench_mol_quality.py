"""Quality of Mixture-of-Logits retrieval vs dot product / cosine, 3 seeds each (mean and std).

1. MovieLens-100k, leave-last-out next-item retrieval over all items (the user's training items
   excluded from the ranking): MoL vs cosine/tau with the same learned item-id embedding budget
   (one ``D``-wide table row per item), the same history-encoder family, loss and schedule by
   default; each model's own validated options come from ``--dot-set`` / ``--mol-set`` (defaults:
   ``DOT_DEFAULT`` / ``MOL_DEFAULT`` below, both with a per-user query vector).
   HR@10, HR@50, NDCG@10, MRR.
2. HotpotQA open corpus (all unique paragraphs of ``distractor_500.jsonl``; half the questions
   train, the other half test): a MoL head over frozen MiniLM features vs MiniLM cosine.
   Recall@10, nDCG@10.

Run (from the repository root)::

    nice -n 10 .venv/bin/python benchmarks/bench_mol_quality.py

Writes its keys (``movielens_hr10_mol``, ``movielens_hr10_dot``, ``hotpot_ndcg10_mol``,
``hotpot_ndcg10_cosine``, ``mol_quality_details``, ``machine``, ``date``) into
``benchmarks/results/mol.json``, keeping the other keys of that file.

Choosing MovieLens hyper-parameters without the test split: ``--split valid`` trains without
each user's last two items and scores the second-to-last (leave-second-to-last-out); the run is
appended as one trial to ``benchmarks/results/mol_validation.json`` (nothing else is written).
``--models dot`` / ``--models mol`` runs one model (on the test split only with another
``--output`` file: a side run that ``mol.json`` never mixes in); ``--dot-set KEY=VALUE ...`` and
``--mol-set KEY=VALUE ...`` override any :class:`RecipeConfig` or :class:`MoLTrainConfig` field
of one model (e.g. ``--mol-set num_interests=4 lr=3e-3``), after the shared flags::

    nice -n 10 .venv/bin/python benchmarks/bench_mol_quality.py --skip-hotpot --split valid \
        --seeds 0 --models mol --mol-set num_interests=4

Each section's entry of ``mol_quality_details`` keeps its own seeds and wall time
(``movielens_seconds``, ``hotpot_seconds``), so a run of one section leaves the other's intact.

Bar (issue 3): MoL HR@10 >= 1.05x the dot product's HR@10 (seed means) on the MovieLens test
split, checked when both models ran on it into ``mol.json``, after the results are written (exit
status 1 when missed). Validation trials, one-model side runs, other ``--output`` files and
HotpotQA have no bar. ``mol.json`` takes only runs of at least 3 seeds (its figures are 3-seed
means); fewer seeds need another ``--output``.
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

from _common import RESULTS, Bar, check_bars, machine, print_table, today

ML_METRICS = ("hr@10", "hr@50", "ndcg@10", "mrr")
HP_METRICS = ("recall@10", "ndcg@10")
HR10_BAR = 1.05  # MoL HR@10 / dot HR@10 on the MovieLens test split (issue 3)
NOTE = "2-core machine shared by several agents; timings are indicative only"
# Each model's options chosen on the validation split (trials in benchmarks/results/mol_validation.json;
# docs/mol_training.md): the dot product's best at D = 64 (trial D11) and MoL's best (trial M12).
DOT_DEFAULT = ("item_mlp_hidden=128", "num_negatives=512", "user_embedding=true", "num_interests=4")
MOL_DEFAULT = ("user_embedding=true", "num_interests=4", "num_negatives=512", "num_query_embeddings=8",
               "num_item_embeddings=8", "warm_start_noise=0.3")


def _mean_std(values: list[float]) -> tuple[float, float]:
    from rag_relax_plugins.training.mol_eval import mean_std

    return mean_std(values)


def _fmt(values: list[float]) -> str:
    m, s = _mean_std(values)
    return f"{m:.4f} ± {s:.4f}"


def _parse_overrides(items: list[str]) -> dict[str, Any]:
    """``["lr=3e-3", "num_interests=4"]`` -> ``{"lr": 0.003, "num_interests": 4}`` (JSON values)."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep:
            raise SystemExit(f"override {item!r} must be KEY=VALUE")
        try:
            out[key] = json.loads(raw)
        except json.JSONDecodeError:
            out[key] = raw
    return out


def _model_configs(args: argparse.Namespace, sim: str, seed: int) -> tuple[Any, Any]:
    """``(MoLTrainConfig, RecipeConfig)`` of one MovieLens model: shared flags, then overrides."""
    import dataclasses

    from rag_relax_plugins.training.mol_recipes import RecipeConfig
    from rag_relax_plugins.training.mol_train import MoLTrainConfig

    cfg = MoLTrainConfig(
        epochs=args.ml_epochs, batch_size=args.ml_batch_size, lr=args.ml_lr,
        num_negatives=args.ml_negatives, seed=seed, device="cpu", show_progress=False,
    )
    recipe = RecipeConfig(
        similarity=sim, embedding_dim=args.dim, max_len=args.max_len,
        num_query_embeddings=args.pq, num_item_embeddings=args.px, tau=0.05,
        mi_loss_weight=args.mi_weight, component_dim=args.component_dim or None,
        warm_start_noise=None if args.ml_noise < 0 else args.ml_noise,
        num_interests=args.interests, item_mlp_hidden=args.item_mlp_hidden,
    )
    over = _parse_overrides(args.dot_set if sim == "dot" else args.mol_set)
    bad = sorted(set(over) - set(cfg.to_dict()) - set(recipe.to_dict()) | ({"seed", "similarity", "max_len"} & set(over)))
    if bad:
        raise SystemExit(f"--{sim}-set: unknown or fixed options {bad}")
    cfg = dataclasses.replace(cfg, **{k: v for k, v in over.items() if k in cfg.to_dict()})
    recipe = dataclasses.replace(recipe, **{k: v for k, v in over.items() if k in recipe.to_dict()})
    return cfg, recipe


def _movielens_data(args: argparse.Namespace) -> Any:
    from rag_relax_plugins.datasets.movielens import load_movielens
    from rag_relax_plugins.training.mol_data import movielens_next_item

    ml = load_movielens(args.data and Path(args.data) / "movielens-100k")
    return movielens_next_item(ml, max_len=args.max_len, split=args.split)


def _movielens_seed(args: argparse.Namespace, seed: int, data: Any = None) -> dict[str, dict[str, Any]]:
    """Train and evaluate the models for one seed (a worker process when ``--jobs`` > 1)."""
    import torch

    from rag_relax_plugins.training.mol_runs import run_movielens

    torch.set_num_threads(args.threads)
    if data is None:
        data = _movielens_data(args)
    out: dict[str, dict[str, Any]] = {}
    for sim in args.models:
        cfg, recipe = _model_configs(args, sim, seed)
        rep = run_movielens(cfg, recipe, data=data)
        rep["train_config"], rep["recipe"] = cfg.to_dict(), recipe.to_dict()
        rep.pop("history")
        out[sim] = rep
        print(f"  movielens ({args.split}) seed {seed} {sim}: " + "  ".join(f"{k} {rep['metrics'][k]:.4f}" for k in ML_METRICS)
              + f"  ({rep['train_seconds']:.0f} s)", flush=True)
    return out


def bench_movielens(args: argparse.Namespace) -> dict[str, Any]:
    data = _movielens_data(args)
    if args.jobs > 1:  # one process per seed; each result is deterministic given its seed
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(max_workers=args.jobs, mp_context=mp.get_context("spawn")) as pool:
            per_seed = list(pool.map(_movielens_seed, [args] * len(args.seeds), args.seeds))
    else:
        per_seed = [_movielens_seed(args, seed, data) for seed in args.seeds]
    runs: dict[str, list[dict[str, Any]]] = {sim: [r[sim] for r in per_seed] for sim in args.models}
    paired = None
    if "dot" in runs and "mol" in runs:  # per-user paired difference of the seed-averaged hits
        from rag_relax_plugins.training.mol_eval import paired_hit_difference

        paired = {f"hr@{k}": paired_hit_difference([r["test_ranks"] for r in runs["mol"]],
                                                   [r["test_ranks"] for r in runs["dot"]], k=k) for k in (10, 50)}
    for reps in runs.values():
        for rep in reps:
            rep.pop("test_ranks", None)
    config: dict[str, Any] = {"split": args.split, "train_pairs": int(data.train.items.shape[0]),
                              "eval_users": int(data.test_targets.shape[0])}
    for sim in args.models:  # the full options of each model (identical across seeds but the seed)
        cfg = dict(runs[sim][0]["train_config"])
        cfg.pop("seed")
        config[sim] = {"train": cfg, "recipe": runs[sim][0]["recipe"]}
    return {"runs": runs, "config": config, "paired": paired}


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


def movielens_bars(summary: dict[str, Any]) -> list[Bar]:
    """The HR@10 bar from a MovieLens ``summary`` (``{"mol"|"dot": {"hr@10": {"mean": ...}}}``)."""
    ratio = summary["mol"]["hr@10"]["mean"] / summary["dot"]["hr@10"]["mean"]
    return [Bar("MovieLens test HR@10, MoL / dot product (seed means)", ratio, ">=", HR10_BAR, "x")]


def build_parser() -> argparse.ArgumentParser:
    """The command-line options (also the defaults of ``diag_mol_query_sets.py``)."""
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
    p.add_argument("--interests", type=int, default=1, help="interest vectors of the history encoder (both models)")
    p.add_argument("--item-mlp-hidden", type=int, default=0, help="residual MLP after the item table (0: none)")
    p.add_argument("--split", choices=("test", "valid"), default="test",
                   help="MovieLens target: last item (test) or second-to-last (valid, for tuning)")
    p.add_argument("--models", nargs="+", choices=("dot", "mol"), default=["dot", "mol"])
    p.add_argument("--dot-set", nargs="*", default=list(DOT_DEFAULT), metavar="KEY=VALUE",
                   help=f"overrides for the dot model (default: {' '.join(DOT_DEFAULT)}; pass none to clear)")
    p.add_argument("--mol-set", nargs="*", default=list(MOL_DEFAULT), metavar="KEY=VALUE",
                   help=f"overrides for the MoL model (default: {' '.join(MOL_DEFAULT)}; pass none to clear)")
    p.add_argument("--trial-name", default="", help="label of a --split valid trial (or of a one-model test run)")
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
    p.add_argument("--output", default=None,
                   help="default: benchmarks/results/mol.json (test) or mol_validation.json (valid)")
    return p


def main() -> int:
    args = build_parser().parse_args()
    args.models = list(dict.fromkeys(args.models))  # --models mol mol trained MoL twice per seed
    if args.output is None:
        args.output = str(RESULTS / ("mol.json" if args.split == "test" else "mol_validation.json"))
    if args.split == "valid" and not args.skip_hotpot:
        raise SystemExit("--split valid is for MovieLens only: add --skip-hotpot")
    if len(set(args.seeds)) < 3 and Path(args.output).resolve() == (RESULTS / "mol.json").resolve():
        raise SystemExit("mol.json records figures averaged over 3 seeds: pass at least 3 --seeds, or another --output")
    # a one-model test run is a side run: refused before any training (it was refused after it)
    one_model_test = not args.skip_movielens and args.split == "test" and len(set(args.models)) < 2
    if one_model_test and Path(args.output).resolve() == (RESULTS / "mol.json").resolve():
        raise SystemExit("one model on the test split writes only to another --output file "
                         "(mol.json needs both models: --models dot mol)")
    if one_model_test and not args.trial_name:
        raise SystemExit("a one-model test run needs --trial-name (its key in --output)")
    if one_model_test and not args.skip_hotpot:  # the side run returns before the HotpotQA section
        raise SystemExit("a one-model test run is MovieLens only: add --skip-hotpot")

    import torch

    torch.set_num_threads(args.threads)
    command = "nice -n 10 .venv/bin/python benchmarks/bench_mol_quality.py " + " ".join(sys.argv[1:])
    updates: dict[str, Any] = {"machine": machine(), "date": today()}
    details: dict[str, Any] = {}  # one entry per section run, merged into the file's
    bars: list[Bar] = []
    t_run = time.perf_counter()
    if not args.skip_movielens:
        t0 = time.perf_counter()
        target = "last item (test)" if args.split == "test" else "second-to-last item (validation)"
        print(f"MovieLens-100k next item, target = {target} (all items; training items excluded)", flush=True)
        ml = bench_movielens(args)
        rows = []
        summary: dict[str, Any] = {}
        for sim, label in (("dot", "dot product (cosine/tau)"), ("mol", "MoL")):
            if sim not in ml["runs"]:
                continue
            vals = {k: [r["metrics"][k] for r in ml["runs"][sim]] for k in ML_METRICS}
            summary[sim] = {k: dict(zip(("mean", "std"), _mean_std(v), strict=False)) | {"per_seed": v} for k, v in vals.items()}
            rows.append((label, *(_fmt(vals[k]) for k in ML_METRICS)))
        print_table(rows, ("model", *ML_METRICS))
        gain = None
        if "dot" in summary and "mol" in summary:
            gain = summary["mol"]["hr@10"]["mean"] / summary["dot"]["hr@10"]["mean"] - 1
            print(f"MoL vs dot HR@10: {100 * gain:+.1f}% relative (bar: +5%)", flush=True)
            pr = ml["paired"]["hr@10"]
            print(f"paired over {int(pr['queries'])} users (hits averaged over seeds): HR@10 difference "
                  f"{pr['diff']:+.4f} +- {pr['diff_se']:.4f} (SE), {100 * pr['relative']:+.1f}% +- "
                  f"{100 * pr['relative_se']:.1f}% relative\n", flush=True)
        train_seconds = {s: [r["train_seconds"] for r in ml["runs"][s]] for s in ml["runs"]}
        if args.split == "valid":  # one tuning trial: appended to the trial log, nothing else written
            trial = {"name": args.trial_name, "command": command.strip(), "date": today(), "seeds": args.seeds,
                     "summary": summary, "config": ml["config"], "train_seconds": train_seconds}
            if ml["paired"] is not None:
                trial["paired_mol_minus_dot"] = ml["paired"]
            log_path = Path(args.output)
            trials = json.loads(log_path.read_text(encoding="utf-8")).get("trials", []) if log_path.is_file() else []
            merge_results(log_path, {"machine": machine(), "protocol": (
                "MovieLens-100k leave-second-to-last-out: each user's last item dropped, second-to-last item "
                "is the target, ranked against all items minus the user's training items"),
                "trials": [*trials, trial]})
            print(f"appended trial {args.trial_name!r} to {log_path}")
            return 0
        if gain is None:  # one model on the test split: a side run, never into mol.json (checked in main)
            merge_results(Path(args.output), {"machine": machine(), "runs": {args.trial_name: {
                "command": command.strip(), "date": today(), "summary": summary, "config": ml["config"],
                "train_seconds": train_seconds}}}, nested=("runs",))
            print(f"wrote run {args.trial_name!r} to {args.output}")
            return 0
        updates["movielens_hr10_mol"] = summary["mol"]["hr@10"]["mean"]
        updates["movielens_hr10_dot"] = summary["dot"]["hr@10"]["mean"]
        details["movielens"] = {"command": command.strip(), "summary": summary, "hr10_relative_gain": gain, "config": ml["config"],
                                "paired_mol_minus_dot": ml["paired"], "train_seconds": train_seconds,
                                "seeds": args.seeds, "note": NOTE, "movielens_seconds": time.perf_counter() - t0,
                                "machine": machine(), "date": today()}
        if Path(args.output).resolve() == (RESULTS / "mol.json").resolve():
            bars = movielens_bars(summary)
    if not args.skip_hotpot:
        t0 = time.perf_counter()
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
                             "mol": {k: dict(zip(("mean", "std"), _mean_std(v), strict=False)) | {"per_seed": v} for k, v in vals.items()},
                             "seeds": args.seeds, "note": NOTE, "hotpot_seconds": time.perf_counter() - t0,
                             "machine": machine(), "date": today()}
    updates["mol_quality_details"] = details
    merge_results(Path(args.output), updates, nested=("mol_quality_details",))
    print(f"wrote {args.output} ({time.perf_counter() - t_run:.0f} s)")
    return check_bars(bars, none_reason="the HR@10 bar needs both MovieLens models on the test split into mol.json")


if __name__ == "__main__":
    raise SystemExit(main())
