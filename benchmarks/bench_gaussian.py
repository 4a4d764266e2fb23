"""Benchmark of the isotropic Gaussian embedder (issue 4): quality, ablation, ANN, speed.

Quality: HotpotQA open corpus (all 4,920 unique paragraphs of distractor_500). Training data:
the questions of one half of distractor_500 (gold paragraph as positive, a distractor paragraph
of the same question as hard negative; 50 of these questions are held out to pick the best
epoch), the 500 evidence_500 (question, evidence) pairs and SNLI entailment (hypothesis,
premise) pairs. Test: the other half of the distractor questions. Baseline: the untrained
MiniLM with cosine similarity. SNLI: hypothesis -> premise retrieval on the SNLI test split.

Frozen-backbone runs train the projection head on cached backbone features (exactly what a
frozen backbone computes; see ``_gaussian_feats.py``), 3 seeds per variant. Unfrozen runs train
MiniLM's last layers + the head end to end with
:func:`rag_relax_plugins.training.gaussian_train.train`; with ``--unfreeze-cache`` the frozen
layers' output is cached per text (the same outputs in eval mode; in training dropout draws
other masks, so an equivalent run rather than the same one), which makes 150 steps and the
corpus re-encoding after each seed affordable on a CPU; ``--unfreeze-val`` picks ``best_model`` by the loss on the
held-out validation questions.

Also: FAISS HNSW recall@10 relative to exact search (base cosine vs trained Euclidean),
encode throughput against bare sentence-transformers, training steps/s on CPU.

This script runs the stages and merges their results; its parts live next to it:
``_gaussian_data.py`` (data), ``_gaussian_feats.py`` (cached features), ``_gaussian_head.py``
(the head trained and evaluated on them), ``_gaussian_unfrozen.py`` (one unfrozen run),
``_gaussian_measure.py`` (metrics, HNSW recall, mean and std, the speed part) and
``_gaussian_report.py`` (the quality table, the recorded-headline line, the bars).

Run (``--help`` for the knobs): the commands of docs/gaussian.md ("Benchmarks"), which produced
the recorded figures. The reported "trained" model is the unfrozen SIGReg recipe::

    U="--stage unfrozen --unfreeze-seeds 3 --unfreeze-steps 150 --unfreeze-lr 5e-5 --unfreeze-warmup 10 --unfreeze-cache"
    nice -n 5 .venv/bin/python benchmarks/bench_gaussian.py $U --unfrozen-name gaussian_unfrozen_cached_final
    nice -n 5 .venv/bin/python benchmarks/bench_gaussian.py $U --unfreeze-isotropy none --unfrozen-name gaussian_unfrozen_cached_none
    nice -n 5 .venv/bin/python benchmarks/bench_gaussian.py $U --unfreeze-isotropy covariance --unfrozen-name gaussian_unfrozen_cached_cov
    nice -n 5 .venv/bin/python benchmarks/bench_gaussian.py $U --unfreeze-val --unfrozen-name gaussian_unfrozen_cached_valsel
    NAMES="gaussian_unfrozen,gaussian_unfrozen_s1,gaussian_unfrozen_s2;gaussian_unfrozen_long120;gaussian_unfrozen_cached_valsel;gaussian_unfrozen_cached_none;gaussian_unfrozen_cached_cov;gaussian_unfrozen_cached_final"
    # frozen stage (head on cached features, 3 seeds per isotropy variant, ANN, speed), merging the above:
    nice -n 10 .venv/bin/python benchmarks/bench_gaussian.py --seeds 3 --epochs 10 --negatives 7 \
        --head-lr 3e-4 --snli-per-epoch 250 --lambda-isotropy 0.05 --headline last2_unfrozen_150steps/sigreg \
        --unfrozen-name "$NAMES"
    # or, with an existing results/gaussian.json, only re-merge (same --unfrozen-name / --headline):
    nice -n 10 .venv/bin/python benchmarks/bench_gaussian.py --stage merge --headline last2_unfrozen_150steps/sigreg --unfrozen-name "$NAMES"

(``gaussian_unfrozen{,_s1,_s2}`` and ``gaussian_unfrozen_long120`` came from an earlier version
of this script and are only merged.)

Torch runs on one thread by default (``--threads``): on a shared, oversubscribed machine two
threads made every step ~10x slower.

Bars (issue 4), checked after the results are written, only on figures this run measured, both
sides of each in this one run (exit status 1 when one is missed): the trained model's HotpotQA
nDCG@10 >= the untrained MiniLM cosine + 0.02 (``hotpot_ndcg10_gain_points >= 2``), and the
encode time <= 1.10x bare sentence-transformers (``encode_overhead_ratio``; frozen stage with
``--speed-repeats`` > 0). The gain bar is checked by the unfrozen stage, which measures the
untrained model (its backbone before any step, cosine) and the trained one in the same run (an
ablation that misses it, e.g. ``--unfreeze-val``, exits 1), and by the frozen stage without
``--headline`` (the frozen SIGReg head is then the trained model). A ``--headline`` merged from
recorded ``gaussian_unfrozen*.json`` files is reported as recorded (file, date), not re-measured,
with no bar: ``make bench`` checks the gain on a one-seed unfrozen stage of the headline recipe
instead.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, check_bars, print_table, write_results
from _gaussian_data import hotpot, snli_pairs, snli_test
from _gaussian_feats import encode_cached
from _gaussian_head import evaluate_head, train_head
from _gaussian_measure import _metrics, hnsw_recall, ms, speed
from _gaussian_report import (
    ENCODE_OVERHEAD_BAR,
    GAIN_BAR_POINTS,
    TABLE_HEADER,
    gaussian_bars,
    recorded_headline,
    table_rows,
)
from _gaussian_unfrozen import _pair_rows, _val_items, unfrozen_run

from rag_relax_plugins.embedders.gaussian import (
    GaussianEmbedder,
    ProjectionHead,
    default_backbone_path,
)
from rag_relax_plugins.embedders.gaussian_config import GaussianConfig
from rag_relax_plugins.training.gaussian_objective import TrainConfig

# the helpers moved to the _gaussian_*.py modules stay importable from here (gaussian_batch_audit.py
# reads _pair_rows and _val_items; the tests patch the stages' helpers on this module)
__all__ = [
    "ENCODE_OVERHEAD_BAR", "GAIN_BAR_POINTS", "TABLE_HEADER", "VARIANTS", "_pair_rows", "_val_items",
    "evaluate_head", "gaussian_bars", "hnsw_recall", "main", "merge_unfrozen", "ms", "recorded_headline",
    "run_merge", "run_unfrozen", "speed", "table_rows", "train_head", "unfrozen_run", "untrained_cosine",
]

VARIANTS: dict[str, dict[str, Any]] = {
    "none": {"isotropy": "none"},
    "covariance": {"isotropy": "covariance"},
    "sigreg": {"isotropy": "sigreg"},
}


def untrained_cosine(model: GaussianEmbedder, data: dict[str, Any]) -> dict[str, float]:
    """HotpotQA test metrics of the untrained MiniLM with cosine similarity, the gain bar's baseline.

    ``model`` must not have been trained: its backbone's sentence embeddings (through the prefix
    cache when enabled, which this fills for the corpus), L2-normalised, scored by inner product.
    The head is left out, so the baseline is MiniLM's whatever ``--output-dim``.
    """
    def embed(texts: list[str]) -> torch.Tensor:  # (N, H) x float, unit rows
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad():  # the prefix cache keeps its tensors: no inference tensors
                cache = model.prefix_cache
                feats = (cache.sentence_embeddings(texts, model.device, chunk=32) if cache is not None
                         else model.backbone.encode(texts, batch_size=32, convert_to_tensor=True))
        finally:
            model.train(was_training)
        return torch.nn.functional.normalize(feats.float().cpu(), dim=-1)

    c, q = embed(list(data["corpus"].values())), embed(list(data["queries"].values()))
    return _metrics(q, c, list(data["corpus"]), [data["qrels"][k] for k in data["queries"]], "inner_product")


def run_unfrozen(args: argparse.Namespace) -> dict[str, Any]:
    """The unfrozen stage on its own (writes ``results/<unfrozen_name>.json`` unless ``--no-write``).

    Measures the untrained baseline first (:func:`untrained_cosine`), then trains and evaluates
    each seed, so the gain (``hotpot_ndcg10_gain_points``) is measured in this one run. With
    ``--unfreeze-cache`` one model is built, its frozen-prefix cache filled once (corpus and
    training texts) and reset to the initial weights before each seed: seeds share the cached
    states of the frozen layers, which no seed changes.
    """
    data = hotpot()
    if not args.unfreeze_no_snli:
        data["snli_test"] = snli_test()
    model, init = None, None
    cfg = GaussianConfig(output_dim=args.output_dim, geometry=args.geometry, freeze="first_n", freeze_layers=args.unfreeze_freeze)
    if args.unfreeze_cache:
        model = GaussianEmbedder(cfg, device="cpu")
        model.enable_prefix_cache()
        init = copy.deepcopy(model.state_dict())
    base = untrained_cosine(model if model is not None else GaussianEmbedder(cfg, device="cpu"), data)
    print(f"untrained MiniLM, cosine (this run): HotpotQA nDCG@10 {base['ndcg@10']:.4f}", flush=True)
    runs = []
    for seed in range(args.unfreeze_first_seed, args.unfreeze_first_seed + args.unfreeze_seeds):
        if model is not None and init is not None:
            model.load_state_dict(init)
        runs.append(unfrozen_run(data, args, seed, model))
        print(f"unfrozen seed {seed}: {runs[-1]}", flush=True)
    agg = {k: ms([float(r[k]) for r in runs]) for k in runs[0] if k not in ("val_loss", "best_epoch")}
    out = {"args": vars(args), "runs": runs, "mean_std": agg,
           "what": f"last {6 - args.unfreeze_freeze} MiniLM layers + head, {args.unfreeze_steps} steps, "
                   f"isotropy={args.unfreeze_isotropy}",
           "hotpot_ndcg10_base": base["ndcg@10"], "hotpot_recall10_base": base["recall@10"],
           "hotpot_ndcg10_gain_points": 100 * (agg["ndcg10"][0] - base["ndcg@10"])}
    print(f"HotpotQA nDCG@10 {agg['ndcg10'][0]:.4f} (mean of {len(runs)} seeds) vs {base['ndcg@10']:.4f} untrained: "
          f"{out['hotpot_ndcg10_gain_points']:+.2f} points, both measured in this run")
    if not args.no_write:
        print(f"wrote {write_results(args.unfrozen_name, out)}")
    return out


def _group_key(a: dict[str, Any]) -> str:
    """Ablation key of an unfrozen stage, e.g. ``last2_unfrozen_150steps/sigreg``."""
    sel = "_valsel" if a.get("unfreeze_val") else ""  # best epoch by validation loss, else the final model
    return f"last{6 - a['unfreeze_freeze']}_unfrozen_{a['unfreeze_steps']}steps{sel}/{a.get('unfreeze_isotropy', 'sigreg')}"


def headline_keys(names: str) -> list[str]:
    """The ablation keys :func:`merge_unfrozen` adds for ``names`` (groups with a file present)."""
    keys = []
    for group in filter(None, names.split(";")):
        found = [RESULTS / f"{n}.json" for n in group.split(",") if (RESULTS / f"{n}.json").is_file()]
        if found:
            keys.append(_group_key(json.loads(found[0].read_text(encoding="utf-8"))["args"]))
    return keys


def merge_unfrozen(res: dict[str, Any], rows: list[tuple[str, ...]], names: str, headline: str | None = None) -> None:
    """Add unfrozen stages to the results: ``names`` = groups separated by ``;``, files of a group
    (seeds of one configuration) separated by ``,`` and pooled.

    ``headline`` (a group's ablation key) becomes the reported "trained" model
    (``hotpot_ndcg10_trained_mean`` etc.); the frozen SIGReg head stays under ``*_frozen_sigreg*``.
    """
    for group in filter(None, names.split(";")):
        files = [RESULTS / f"{n}.json" for n in group.split(",")]
        found = [json.loads(f.read_text(encoding="utf-8")) for f in files if f.is_file()]
        if not found:
            continue
        runs = [r for un in found for r in un["runs"]]
        keys = [k for k in runs[0] if k not in ("val_loss", "best_epoch") and all(k in r for r in runs)]
        agg = {k: ms([float(r[k]) for r in runs]) for k in keys}
        a = found[0]["args"]
        bases = [un.get("hotpot_ndcg10_base") for un in found]  # measured by the unfrozen runs since 2026-12-03
        res["ablation"][_group_key(a)] = {"args": a, "runs": runs, "mean_std": agg, "files": [f.name for f in files if f.is_file()],
                                          "dates": [un.get("date") for un in found],
                                          "hotpot_ndcg10_base": statistics.mean(bases) if None not in bases else None}
    if headline is None:
        return
    entry = res["ablation"][headline]
    agg = entry["mean_std"]
    if "hotpot_ndcg10_frozen_sigreg_mean" not in res:  # keep the frozen head's figures under their own names
        for k in ("hotpot_ndcg10_trained_mean", "hotpot_ndcg10_trained_std", "snli_recall10_trained", "snli_recall10_trained_std",
                  "hnsw_recall10_ratio_trained", "hnsw_recall10_ratio_trained_ef16", "hnsw_recall10_ratio_trained_ef16_std",
                  "hnsw_recall10_ratio_trained_ef64", "hnsw_recall10_ratio_trained_ef64_std", "hotpot_ndcg10_gain_points"):
            if k in res:
                res[k.replace("trained", "frozen_sigreg") if "trained" in k else k + "_frozen_sigreg"] = res[k]
    res["trained_model"] = headline
    res["hotpot_ndcg10_trained_mean"], res["hotpot_ndcg10_trained_std"] = agg["ndcg10"]
    own_base = entry.get("hotpot_ndcg10_base")  # the files' own baseline, measured with their trained models
    res["hotpot_ndcg10_gain_points"] = 100 * (agg["ndcg10"][0] - (res["hotpot_ndcg10_base"] if own_base is None else own_base))
    res["trained_model_recorded"] = {
        "files": entry["files"], "dates": entry.get("dates", []),
        "gain_baseline": ("the untrained MiniLM measured by the recorded unfrozen runs" if own_base is not None
                          else "the untrained MiniLM of the run that merged them (the recorded files have no baseline)"),
        "note": "trained figures recorded from these files, not re-measured by the merging run: no bar checked on them",
    }
    if "snli_recall10" in agg:
        res["snli_recall10_trained"], res["snli_recall10_trained_std"] = agg["snli_recall10"]
    for ef in (16, 64):
        if f"hnsw_recall10_ratio_ef{ef}" in agg:
            res[f"hnsw_recall10_ratio_trained_ef{ef}"], res[f"hnsw_recall10_ratio_trained_ef{ef}_std"] = agg[f"hnsw_recall10_ratio_ef{ef}"]
    res["hnsw_recall10_ratio_trained"] = res["hnsw_recall10_ratio_trained_ef16"]
    res["train_steps_per_s_cpu_unfrozen_run"] = agg["train_steps_per_s"][0]


def run_merge(args: argparse.Namespace) -> int:
    """Merge a finished unfrozen stage into an existing ``results/gaussian.json`` and print the table."""
    res = json.loads((RESULTS / "gaussian.json").read_text(encoding="utf-8"))
    res["ablation"] = {k: v for k, v in res["ablation"].items() if k.startswith("frozen/")}  # re-merged below
    merge_unfrozen(res, [], args.unfrozen_name, args.headline)
    res["table_rows"] = table_rows(res)
    print_table(res["table_rows"], TABLE_HEADER)
    if args.headline is not None:
        print(recorded_headline(res))
    if not args.no_write:
        print(f"wrote {write_results('gaussian', res)}")
    # a merge measures nothing: the trained figures come from the unfrozen files, the base and the
    # encode ratio from the run that wrote gaussian.json
    return check_bars([], none_reason="a merge measures nothing (bars: the frozen and unfrozen stages)")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--head-lr", type=float, default=3e-4)
    ap.add_argument("--lambda-isotropy", type=float, default=0.05)
    ap.add_argument("--temperature", type=float, default=None)
    ap.add_argument("--output-dim", type=int, default=384)
    ap.add_argument("--geometry", default="euclidean", choices=["euclidean", "inner_product"])
    ap.add_argument("--snli-train", type=int, default=8000, help="SNLI entailment pairs available for training")
    ap.add_argument("--snli-per-epoch", type=int, default=2000, help="SNLI pairs sampled per epoch")
    ap.add_argument("--negatives", type=int, default=3, help="HotpotQA distractors per training question")
    ap.add_argument("--variants", default="none,covariance,sigreg")
    ap.add_argument("--stage", default="frozen", choices=["frozen", "unfrozen", "merge"],
                    help="frozen: everything but the unfrozen runs (includes results/gaussian_unfrozen.json when present)")
    ap.add_argument("--unfreeze-seeds", type=int, default=1, help="seeds of the unfrozen stage")
    ap.add_argument("--unfreeze-first-seed", type=int, default=0)
    ap.add_argument("--unfreeze-lr", type=float, default=2e-5)
    ap.add_argument("--unfrozen-name", default="gaussian_unfrozen",
                    help="results file of the unfrozen stage; for merging: groups separated by ';', each a comma-separated list of files whose runs are pooled")
    ap.add_argument("--unfreeze-steps", type=int, default=40)
    ap.add_argument("--unfreeze-batch", type=int, default=16)
    ap.add_argument("--unfreeze-freeze", type=int, default=4, help="freeze_early_layers of the unfrozen stage")
    ap.add_argument("--unfreeze-warmup", type=int, default=5, help="warm-up steps of the unfrozen stage")
    ap.add_argument("--headline", default=None,
                    help="ablation key reported as the trained model (e.g. last2_unfrozen_150steps/sigreg); default: the frozen SIGReg head")
    ap.add_argument("--unfreeze-isotropy", default="sigreg", choices=["sigreg", "covariance", "none"])
    ap.add_argument("--unfreeze-no-snli", action="store_true", help="skip the SNLI evaluation of the unfrozen stage")
    ap.add_argument("--unfreeze-cache", action="store_true", help="cache the frozen layers' output (faster; equivalent, not bit-identical, under dropout)")
    ap.add_argument("--unfreeze-val", action="store_true",
                    help="select best_model by the validation questions' loss (else the final model)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1 on a shared machine)")
    ap.add_argument("--speed-repeats", type=int, default=5, help="interleaved encode timings (0 skips the speed part)")
    ap.add_argument("--no-write", action="store_true",
                    help="write no results file (benchmarks/results/gaussian.json, or the unfrozen stage's file)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)  # on a shared machine one thread avoids oversubscription stalls
    if args.stage != "unfrozen" and args.headline is not None and args.headline not in headline_keys(args.unfrozen_name):
        # checked before measuring: a KeyError after the frozen stage's ~35 minutes lost every figure
        raise SystemExit(f"--headline {args.headline!r} is not a group of --unfrozen-name {args.unfrozen_name!r} "
                         f"(its groups: {headline_keys(args.unfrozen_name)})")
    if args.stage == "unfrozen":  # the gain bar on this run's trained model against this run's baseline
        return check_bars(gaussian_bars(run_unfrozen(args), quality=True, speed=False))
    if args.stage == "merge":
        return run_merge(args)
    from sentence_transformers import SentenceTransformer

    path = default_backbone_path()
    st = SentenceTransformer(path, device="cpu", local_files_only=True)
    data, sn, snli = hotpot(), snli_test(), snli_pairs(args.snli_train)
    texts = [*data["corpus"].values(), *data["queries"].values(), *data["val_queries"].values(), *data["all_questions"],
             *(t for it in data["train_items"] for t in (it["query"], *it["positives"])),
             *(t for pr in data["evidence_pairs"] for t in pr), *(t for pr in snli for t in pr),
             *sn["corpus"].values(), *sn["queries"].values()]
    print(f"data ready ({len(texts)} texts)", flush=True)
    t0 = time.perf_counter()
    f = encode_cached(st, path, texts)
    print(f"features of {len(f.index)} texts ready in {time.perf_counter() - t0:.0f} s")
    res: dict[str, Any] = {"args": vars(args), "num_test_queries": len(data["queries"]), "num_corpus": len(data["corpus"]),
                           "num_val_queries": len(data["val_queries"]), "num_snli_queries": len(sn["queries"]),
                           "num_snli_corpus": len(sn["corpus"])}
    identity = torch.nn.Identity()
    base = evaluate_head(identity, f, data, sn, "inner_product")  # unit-norm MiniLM rows: inner product = cosine
    res["hotpot_ndcg10_base"], res["snli_recall10_base"] = base["hotpot"]["ndcg@10"], base["snli"]["recall@10"]
    res["base"] = base
    print(f"base MiniLM cosine: HotpotQA nDCG@10 {base['hotpot']['ndcg@10']:.4f}, SNLI R@10 {base['snli']['recall@10']:.4f}", flush=True)
    rows: list[tuple[str, ...]] = [("MiniLM, cosine (untrained)", "-", f"{base['hotpot']['ndcg@10']:.4f}", f"{base['hotpot']['recall@10']:.4f}",
             f"{base['snli']['recall@10']:.4f}", f"{base['diag']['sigreg']:.1f}", f"{base['diag']['effective_rank']:.0f}")]
    ablation: dict[str, Any] = {}
    heads: dict[int, ProjectionHead] = {}
    for name in args.variants.split(","):
        runs = []
        for seed in range(args.seeds):
            cfg = TrainConfig(train_file="-", seed=seed, epochs=args.epochs, batch_size=args.batch_size, head_learning_rate=args.head_lr,
                              warmup_steps=20, lambda_isotropy=args.lambda_isotropy, temperature=args.temperature, **VARIANTS[name])
            t0 = time.perf_counter()
            head, info = train_head(f, data, snli, cfg, args)
            ev = evaluate_head(head, f, data, sn, args.geometry)
            runs.append({"ndcg10": ev["hotpot"]["ndcg@10"], "recall10": ev["hotpot"]["recall@10"], "mrr": ev["hotpot"]["mrr"],
                         "snli_recall10": ev["snli"]["recall@10"], "sigreg": ev["diag"]["sigreg"],
                         "effective_rank": ev["diag"]["effective_rank"], "seconds": time.perf_counter() - t0, **info})
            if name == "sigreg":
                heads[seed] = head
            print(f"frozen/{name} seed {seed}: nDCG@10 {runs[-1]['ndcg10']:.4f} (best epoch {info['best_epoch']}) "
                  f"snli R@10 {runs[-1]['snli_recall10']:.4f} SIGReg {runs[-1]['sigreg']:.2f}", flush=True)
        agg = {k: ms([float(r[k]) for r in runs]) for k in ("ndcg10", "recall10", "mrr", "snli_recall10", "sigreg", "effective_rank", "seconds", "head_steps_per_s")}
        ablation[f"frozen/{name}"] = {"runs": runs, "mean_std": agg}
        rows.append((f"frozen backbone, isotropy={name}", str(args.seeds), f"{agg['ndcg10'][0]:.4f} ± {agg['ndcg10'][1]:.4f}",
                     f"{agg['recall10'][0]:.4f} ± {agg['recall10'][1]:.4f}", f"{agg['snli_recall10'][0]:.4f} ± {agg['snli_recall10'][1]:.4f}",
                     f"{agg['sigreg'][0]:.1f}", f"{agg['effective_rank'][0]:.0f}"))
    res["ablation"] = ablation
    if "frozen/sigreg" in ablation:
        best = ablation["frozen/sigreg"]["mean_std"]
        res["hotpot_ndcg10_trained_mean"], res["hotpot_ndcg10_trained_std"] = best["ndcg10"]
        res["snli_recall10_trained"], res["snli_recall10_trained_std"] = best["snli_recall10"]
        res["hotpot_ndcg10_gain_points"] = 100 * (best["ndcg10"][0] - res["hotpot_ndcg10_base"])
        # ANN friendliness: all 500 HotpotQA questions against the corpus
        c_base, q_base = f(data["corpus"].values()), f(data["all_questions"])
        for ef in (16, 64):
            res[f"hnsw_recall10_ratio_base_ef{ef}"] = hnsw_recall(c_base, q_base, "cosine", ef_search=ef)
            with torch.inference_mode():
                tr = [hnsw_recall(h(c_base), h(q_base), args.geometry, ef_search=ef) for h in heads.values()]
            res[f"hnsw_recall10_ratio_trained_ef{ef}"], res[f"hnsw_recall10_ratio_trained_ef{ef}_std"] = ms(tr)
        res["hnsw_recall10_ratio_base"] = res["hnsw_recall10_ratio_base_ef16"]
        res["hnsw_recall10_ratio_trained"] = res["hnsw_recall10_ratio_trained_ef16"]
    if args.speed_repeats > 0:
        res.update(speed(st, list(data["corpus"].values())[:128], snli[:64], args.speed_repeats))
    merge_unfrozen(res, rows, args.unfrozen_name, args.headline)
    res["table_rows"] = table_rows(res)
    print()
    print_table(res["table_rows"], TABLE_HEADER)
    print()
    keys = [k for k in sorted(res) if k.startswith(("hnsw", "encode", "train_steps", "hotpot_ndcg10_gain"))]
    print_table([(k, f"{res[k]:.4f}") for k in keys], ("figure", "value"))
    recorded = recorded_headline(res)
    if recorded:
        print(recorded)
    if not args.no_write:
        print(f"wrote {write_results('gaussian', res)}")
    # the gain bar only when both sides were measured here: the frozen SIGReg head as the trained
    # model (no --headline); a headline merged from recorded files gets no bar
    quality = "hotpot_ndcg10_gain_points" in res and not recorded
    return check_bars(gaussian_bars(res, quality=quality, speed=args.speed_repeats > 0),
                      none_reason="no trained model measured in this run (no sigreg variant, or a recorded "
                                  "--headline) and no speed part")


if __name__ == "__main__":
    raise SystemExit(main())
