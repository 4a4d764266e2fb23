"""Benchmark of the isotropic Gaussian embedder (issue 4): quality, ablation, ANN, speed.

Quality: HotpotQA open corpus (all 4,920 unique paragraphs of distractor_500). Training data:
the questions of one half of distractor_500 (gold paragraph as positive, a distractor paragraph
of the same question as hard negative; 50 of these questions are held out to pick the best
epoch), the 500 evidence_500 (question, evidence) pairs and SNLI entailment (hypothesis,
premise) pairs. Test: the other half of the distractor questions. Baseline: the untrained
MiniLM with cosine similarity. SNLI: hypothesis -> premise retrieval on the SNLI test split.

Frozen-backbone runs train the projection head on cached backbone features (exactly what a
frozen backbone computes; see ``_gaussian_feats.py``), 3 seeds per variant. Unfrozen runs train
MiniLM's last layers end to end with :func:`rag_relax_plugins.training.gaussian_train.train`,
starting from the frozen-stage model (short: CPU time), fewer seeds.

Also: FAISS HNSW recall@10 relative to exact search (base cosine vs trained Euclidean),
encode throughput against bare sentence-transformers, training steps/s on CPU.

Run (``--help`` for the knobs; the unfrozen stage first, since the main run includes its file)::

    nice -n 10 .venv/bin/python benchmarks/bench_gaussian.py --stage unfrozen --unfreeze-seeds 1
    nice -n 10 .venv/bin/python benchmarks/bench_gaussian.py --seeds 3 --epochs 10 --negatives 7 \
        --head-lr 3e-4 --snli-per-epoch 250 --lambda-isotropy 0.05
    nice -n 10 .venv/bin/python benchmarks/bench_gaussian.py --stage merge --unfrozen-name a,b  # pool seeds

Torch runs on one thread: on a shared, oversubscribed machine two threads made every step
~10x slower.
"""

from __future__ import annotations

import argparse
import copy
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, print_table, write_results
from _gaussian_data import hotpot, snli_pairs, snli_test
from _gaussian_feats import FeatureTable, encode_cached

from rag_relax_plugins.embedders.gaussian import (
    GaussianEmbedder,
    ProjectionHead,
    default_backbone_path,
)
from rag_relax_plugins.embedders.gaussian_config import GaussianConfig
from rag_relax_plugins.training.gaussian_eval import embedding_diagnostics, retrieval_metrics
from rag_relax_plugins.training.gaussian_objective import TrainConfig, lr_at, training_loss

TABLE_HEADER = ("model", "seeds", "HotpotQA nDCG@10", "HotpotQA R@10", "SNLI R@10", "SIGReg", "eff. rank")
VARIANTS: dict[str, dict[str, Any]] = {
    "none": {"isotropy": "none"},
    "covariance": {"isotropy": "covariance"},
    "sigreg": {"isotropy": "sigreg"},
}


def _metrics(q: torch.Tensor, d: torch.Tensor, ids: list[str], qrels: list[dict[str, int]], geometry: str) -> dict[str, float]:
    return retrieval_metrics(q, d, ids, qrels, geometry=geometry)


def _batches(data: dict[str, Any], snli: list[tuple[str, str]], bs: int, g: random.Random, snli_per_epoch: int, m: int) -> list[dict[str, Any]]:
    """One epoch of single-source batches: HotpotQA (with ``m`` hard negatives), evidence, SNLI."""
    hp = [(it["query"], p, [g.choice(it["negatives"]) for _ in range(m)]) for it in data["train_items"] for p in it["positives"]]
    ev, sn = list(data["evidence_pairs"]), g.sample(snli, min(snli_per_epoch, len(snli)))
    out = []
    for rows in (hp, ev, sn):
        g.shuffle(rows)
        for s in range(0, len(rows) - 1, bs):
            chunk = rows[s : s + bs]
            if len(chunk) >= 2:
                out.append({"q": [r[0] for r in chunk], "d": [r[1] for r in chunk],
                            "n": [t for r in chunk for t in r[2]] if len(chunk[0]) == 3 else []})
    g.shuffle(out)
    return out


def train_head(f: FeatureTable, data: dict[str, Any], snli: list[tuple[str, str]], cfg: TrainConfig, args: argparse.Namespace) -> tuple[ProjectionHead, dict[str, Any]]:
    """Train the head on cached features; keep the epoch with the best validation nDCG@10."""
    torch.manual_seed(cfg.seed)
    g = random.Random(cfg.seed)
    head = ProjectionHead(f.matrix.shape[1], 2 * f.matrix.shape[1], args.output_dim, cfg.dropout)
    opt = torch.optim.AdamW(head.parameters(), lr=cfg.head_learning_rate or 1e-3, weight_decay=cfg.weight_decay)
    steps_per_epoch = len(_batches(data, snli, cfg.batch_size, random.Random(0), args.snli_per_epoch, args.negatives))
    total = steps_per_epoch * cfg.epochs
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_at(s, warmup_steps=cfg.warmup_steps, total_steps=total))
    corpus = f(data["corpus"].values())
    vq, vids = f(data["val_queries"].values()), list(data["val_queries"])
    best, best_state, curve, step = -1.0, copy.deepcopy(head.state_dict()), [], 0
    t0 = time.perf_counter()
    for _ in range(cfg.epochs):
        head.train()
        for b in _batches(data, snli, cfg.batch_size, g, args.snli_per_epoch, args.negatives):
            q, d = head(f(b["q"])), head(f(b["d"]))
            n = head(f(b["n"])).reshape(q.shape[0], args.negatives, -1) if b["n"] else None  # (B, M, D)
            loss, _ = training_loss(q, d, n, cfg, step, geometry=args.geometry)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(head.parameters(), cfg.max_grad_norm)
            opt.step()
            sched.step()
            step += 1
        head.eval()
        with torch.inference_mode():
            val = _metrics(head(vq), head(corpus), list(data["corpus"]), [data["val_qrels"][k] for k in vids], args.geometry)["ndcg@10"]
        curve.append(val)
        print(f"  epoch {len(curve)}: val nDCG@10 {val:.4f} ({time.perf_counter() - t0:.0f} s)", flush=True)
        if val > best:
            best, best_state = val, copy.deepcopy(head.state_dict())
    head.load_state_dict(best_state)
    return head.eval(), {"val_ndcg10_curve": curve, "best_epoch": curve.index(best) + 1, "steps": step,
                         "head_steps_per_s": step / (time.perf_counter() - t0)}


@torch.inference_mode()
def evaluate_head(head: torch.nn.Module, f: FeatureTable, data: dict[str, Any], sn: dict[str, Any], geometry: str) -> dict[str, Any]:
    """HotpotQA test and SNLI test metrics plus diagnostics of the corpus embeddings."""
    c = head(f(data["corpus"].values()))
    hp = _metrics(head(f(data["queries"].values())), c, list(data["corpus"]), [data["qrels"][k] for k in data["queries"]], geometry)
    s = _metrics(head(f(sn["queries"].values())), head(f(sn["corpus"].values())), list(sn["corpus"]), [sn["qrels"][k] for k in sn["queries"]], geometry)
    diag = {k: v for k, v in embedding_diagnostics(c).items() if k != "per_dim_std"}
    return {"hotpot": hp, "snli": s, "diag": diag}


def hnsw_recall(docs: torch.Tensor, queries: torch.Tensor, metric: str, *, k: int = 10, ef_search: int = 16) -> float:
    """Recall@k of FAISS ``IndexHNSWFlat`` (M=16, efConstruction=40) against exact search."""
    import faiss

    x, qx = docs.contiguous().numpy().astype("float32"), queries.contiguous().numpy().astype("float32")
    if metric == "cosine":
        faiss.normalize_L2(x)
        faiss.normalize_L2(qx)
    mt = faiss.METRIC_L2 if metric == "euclidean" else faiss.METRIC_INNER_PRODUCT
    exact = faiss.IndexFlat(x.shape[1], mt)
    exact.add(x)
    hn = faiss.IndexHNSWFlat(x.shape[1], 16, mt)
    hn.hnsw.efConstruction = 40
    hn.add(x)
    hn.hnsw.efSearch = ef_search
    _, ie = exact.search(qx, k)
    _, ih = hn.search(qx, k)
    return float(sum(len(set(a) & set(b)) for a, b in zip(ie.tolist(), ih.tolist(), strict=True)) / (k * len(qx)))


def ms(xs: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation."""
    return statistics.mean(xs), (statistics.stdev(xs) if len(xs) > 1 else 0.0)


def unfrozen_run(data: dict[str, Any], args: argparse.Namespace, seed: int) -> dict[str, Any]:
    """Train MiniLM's last ``6 - unfreeze_freeze`` layers + the head end to end (library ``train``).

    Starts from the identity head (the untrained model ranks like cosine MiniLM), trains on the
    HotpotQA training pairs, each with a hard negative, then encodes the corpus and evaluates.
    """
    from rag_relax_plugins.training.gaussian_train import train

    g = random.Random(seed)
    rows = [{"query": it["query"], "positive": p, "negative": g.choice(it["negatives"])} for it in data["train_items"] for p in it["positives"]]
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "train.jsonl").write_text("\n".join(json.dumps(r) for r in rows), encoding="utf-8")
        cfg = TrainConfig(train_file=str(Path(tmp) / "train.jsonl"), output_dir=str(Path(tmp) / "run"), output_dim=args.output_dim,
                          geometry=args.geometry, freeze_early_layers=args.unfreeze_freeze, batch_size=args.unfreeze_batch,
                          epochs=100, max_steps=args.unfreeze_steps, learning_rate=args.unfreeze_lr, head_learning_rate=args.head_lr,
                          warmup_steps=5, seed=seed, isotropy="sigreg", lambda_isotropy=args.lambda_isotropy,
                          save_checkpoints=False, show_progress=False, device="cpu")
        t0 = time.perf_counter()
        out = train(cfg)
        train_s = time.perf_counter() - t0
        model = GaussianEmbedder.load(Path(tmp) / "run" / "final_model", device="cpu")
    t0 = time.perf_counter()
    c = model.encode(list(data["corpus"].values()), batch_size=32)
    q = model.encode(list(data["queries"].values()), batch_size=32)
    met = _metrics(q, c, list(data["corpus"]), [data["qrels"][k] for k in data["queries"]], args.geometry)
    return {"ndcg10": met["ndcg@10"], "recall10": met["recall@10"], "mrr": met["mrr"], "steps": out["steps"],
            "train_seconds": train_s, "train_steps_per_s": out["steps_per_second"],
            "encode_eval_seconds": time.perf_counter() - t0, "pairs": len(rows)}


def run_unfrozen(args: argparse.Namespace) -> None:
    """The unfrozen stage on its own (writes ``results/gaussian_unfrozen.json``)."""
    data = hotpot()
    runs = []
    for seed in range(args.unfreeze_first_seed, args.unfreeze_first_seed + args.unfreeze_seeds):
        runs.append(unfrozen_run(data, args, seed))
        print(f"unfrozen seed {seed}: {runs[-1]}", flush=True)
    agg = {k: ms([float(r[k]) for r in runs]) for k in runs[0]}
    write_results(args.unfrozen_name, {"args": vars(args), "runs": runs, "mean_std": agg,
                                        "what": f"last {6 - args.unfreeze_freeze} MiniLM layers + head, {args.unfreeze_steps} steps"})


def merge_unfrozen(res: dict[str, Any], rows: list[tuple[str, ...]], names: str) -> None:
    """Add the runs of ``results/<name>.json`` files (``--stage unfrozen``) to the results, pooled."""
    files = [RESULTS / f"{n}.json" for n in names.split(",")]
    found = [json.loads(f.read_text(encoding="utf-8")) for f in files if f.is_file()]
    if not found:
        return
    runs = [r for un in found for r in un["runs"]]
    agg = {k: ms([float(r[k]) for r in runs]) for k in runs[0]}
    a = found[0]["args"]
    res["ablation"][f"last{6 - a['unfreeze_freeze']}_unfrozen/sigreg"] = {"args": a, "runs": runs, "mean_std": agg,
                                                                          "files": [f.name for f in files if f.is_file()]}
    res["train_steps_per_s_cpu_unfrozen_run"] = agg["train_steps_per_s"][0]


def table_rows(res: dict[str, Any]) -> list[tuple[str, ...]]:
    """The quality table from the results dict: base, then every ablation entry."""
    base = res["base"]
    rows = [("MiniLM, cosine (untrained)", "-", f"{base['hotpot']['ndcg@10']:.4f}", f"{base['hotpot']['recall@10']:.4f}",
             f"{base['snli']['recall@10']:.4f}", f"{base['diag']['sigreg']:.1f}", f"{base['diag']['effective_rank']:.0f}")]
    for key, entry in res["ablation"].items():
        agg, n = entry["mean_std"], str(len(entry["runs"]))
        def cell(k: str, agg: dict[str, Any] = agg) -> str:
            return f"{agg[k][0]:.4f} ± {agg[k][1]:.4f}" if k in agg else "-"
        if key.startswith("frozen/"):
            label = f"frozen backbone, isotropy={key.split('/')[1]}"
            rows.append((label, n, cell("ndcg10"), cell("recall10"), cell("snli_recall10"), f"{agg['sigreg'][0]:.1f}",
                         f"{agg['effective_rank'][0]:.0f}"))
        else:
            a = entry["args"]
            label = f"last {6 - a['unfreeze_freeze']} layers unfrozen, {a['unfreeze_steps']} steps, sigreg"
            rows.append((label, n, cell("ndcg10"), cell("recall10"), "-", "-", "-"))
    return rows


def run_merge(args: argparse.Namespace) -> None:
    """Merge a finished unfrozen stage into an existing ``results/gaussian.json`` and print the table."""
    res = json.loads((RESULTS / "gaussian.json").read_text(encoding="utf-8"))
    merge_unfrozen(res, [], args.unfrozen_name)
    res["table_rows"] = table_rows(res)
    print_table(res["table_rows"], TABLE_HEADER)
    print(f"wrote {write_results('gaussian', res)}")


def speed(st: Any, texts: list[str], pairs: list[tuple[str, str]], repeats: int) -> dict[str, float]:
    """Encode overhead vs bare sentence-transformers and CPU training steps/s (batch 16 pairs)."""
    g = GaussianEmbedder(GaussianConfig(freeze="all", dropout=0.0), device="cpu", backbone=st)
    tb, tg = [], []
    for _ in range(repeats):  # interleaved, so both see the same machine load
        t0 = time.perf_counter()
        st.encode(texts, batch_size=32, convert_to_tensor=True)
        tb.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        g.encode(texts, batch_size=32)
        tg.append(time.perf_counter() - t0)
    res = {"encode_overhead_ratio": min(tg) / min(tb), "encode_texts_per_s_bare": len(texts) / min(tb),
           "encode_texts_per_s_gaussian": len(texts) / min(tg)}
    for name, freeze in (("full", "none"), ("frozen", "all")):
        model = GaussianEmbedder(GaussianConfig(freeze=freeze), device="cpu", backbone=copy.deepcopy(st)).train()
        opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=2e-5)
        cfg, times = TrainConfig(train_file="-"), []
        for i in range(4):
            batch = pairs[16 * i : 16 * i + 16]
            t0 = time.perf_counter()
            out = model([p[0] for p in batch] + [p[1] for p in batch])
            loss, _ = training_loss(out[:16], out[16:], None, cfg, i)
            opt.zero_grad()
            loss.backward()
            opt.step()
            times.append(time.perf_counter() - t0)
        res[f"train_steps_per_s_cpu_{name}_b16"] = 1 / statistics.median(times[1:])
    return res


def main() -> None:
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
                    help="results file of the unfrozen stage; for --stage merge a comma-separated list whose runs are pooled")
    ap.add_argument("--unfreeze-steps", type=int, default=40)
    ap.add_argument("--unfreeze-batch", type=int, default=16)
    ap.add_argument("--unfreeze-freeze", type=int, default=4, help="freeze_early_layers of the unfrozen stage")
    ap.add_argument("--speed-repeats", type=int, default=5, help="interleaved encode timings (0 skips the speed part)")
    ap.add_argument("--no-write", action="store_true", help="do not write benchmarks/results/gaussian.json")
    args = ap.parse_args()
    torch.set_num_threads(1)  # the machine is shared: one thread avoids oversubscription stalls
    if args.stage == "unfrozen":
        run_unfrozen(args)
        return
    if args.stage == "merge":
        run_merge(args)
        return
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
    rows = [("MiniLM, cosine (untrained)", "-", f"{base['hotpot']['ndcg@10']:.4f}", f"{base['hotpot']['recall@10']:.4f}",
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
    merge_unfrozen(res, rows, args.unfrozen_name)
    res["table_rows"] = table_rows(res)
    print()
    print_table(res["table_rows"], TABLE_HEADER)
    print()
    keys = [k for k in sorted(res) if k.startswith(("hnsw", "encode", "train_steps", "hotpot_ndcg10_gain"))]
    print_table([(k, f"{res[k]:.4f}") for k in keys], ("figure", "value"))
    if not args.no_write:
        print(f"wrote {write_results('gaussian', res)}")


if __name__ == "__main__":
    main()
