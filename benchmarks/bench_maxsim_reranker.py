"""MaxSimReranker: batched packed scoring vs a per-document loop, and HotpotQA reranking quality.

Run from the repository root::

    .venv/bin/python benchmarks/bench_maxsim_reranker.py            # speed + quality
    .venv/bin/python benchmarks/bench_maxsim_reranker.py --skip-quality --repeats 3
    .venv/bin/python benchmarks/bench_maxsim_reranker.py --skip-speed \
        --trained-model runs/maxsim/best_model   # evaluate a `rag-relax train-maxsim` run instead

Speed: one query against 100 candidates of ~180 word pieces (HotpotQA paragraphs joined and cut),
encoding included on every side, same model (offline MiniLM + 384->128 projection):

- ``batched``: ``MaxSimReranker.score`` (length-sorted backbone batches, packed MaxSim);
- ``loop (ColbertRerank style)``: the query encoded once, then per document a tokenizer call and
  a backbone forward with autograd enabled, and a broadcast ``cosine_similarity`` max/mean, as
  LlamaIndex's ``ColbertRerank._calculate_sim`` does;
- ``loop (inference mode)``: the same per-document loop under ``torch.inference_mode()`` with the
  packed scorer, i.e. the only difference from ``batched`` is one forward per document.

The three are timed in interleaved rounds (best of ``--repeats``), so load drift on a shared
machine hits them alike. Quality: Recall@2/@5 and MRR of the gold paragraphs on the last 100
distractor questions, for MiniLM cosine, MaxSim untrained (raw tokens, and a random orthonormal
128-d projection) and MaxSim trained with ``train_maxsim`` on the first 400 rows (last 40 for
model selection). Results are merged into ``benchmarks/results/rerankers.json`` (read-update-
write: other scripts write other keys of that file).

Bar (issue 5), when the speed section runs: ``batched`` >= 3x faster than the ColbertRerank-style
per-document loop. Checked after the results are written; the exit status is 1 when it is missed.
The quality section reports figures only (no bar).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, Bar, check_bars, machine, print_table, today

from rag_relax_plugins.datasets.hotpotqa import load_hotpotqa_distractor
from rag_relax_plugins.rerankers.maxsim import MaxSimConfig, MaxSimReranker

SPEEDUP_BAR = 3.0  # batched packed scoring vs the per-document loop (issue 5)


def make_candidates(rr: MaxSimReranker, n: int = 100, length: int = 180) -> tuple[str, list[str]]:
    """A HotpotQA question and ``n`` texts of ``length`` word pieces ([CLS]/[SEP] included)."""
    rows = load_hotpotqa_distractor(limit=60)
    paras = [p for ex in rows for p in ex.paragraph_texts()]
    enc: Any = rr.encoder
    tok = enc.tokenizer
    docs: list[str] = []
    i = 0
    while len(docs) < n:
        ids: list[int] = []
        j = i
        while len(ids) < length:
            ids += tok(paras[j % len(paras)], add_special_tokens=False)["input_ids"]
            j += 1
        docs.append(tok.decode(ids[: length - 2 - 3]))  # room for [CLS], [SEP] and the "[D] " marker
        i += 1
    return rows[0].question, docs


def loop_colbert_style(rr: MaxSimReranker, query: str, docs: list[str]) -> torch.Tensor:
    """Per-document loop as in LlamaIndex's ColbertRerank (autograd on, broadcast cosine)."""
    enc: Any = rr.encoder
    tr = enc.model[0]
    c = rr.config
    qf = enc.tokenizer([c.query_marker + query], return_tensors="pt", truncation=True, max_length=c.max_seq_length)
    q = rr.head(tr(dict(qf))["token_embeddings"])  # (1, Lq, d)
    out = []
    for d in docs:
        df = enc.tokenizer([c.document_marker + d], return_tensors="pt", truncation=True, max_length=c.max_seq_length)
        dv = rr.head(tr(dict(df))["token_embeddings"])  # (1, Ld, d)
        sim = F.cosine_similarity(q.unsqueeze(2), dv.unsqueeze(1), dim=-1)  # (1, Lq, Ld)
        out.append(sim.max(dim=2).values.mean(dim=1))
    return torch.cat(out).detach()


def loop_inference(rr: MaxSimReranker, query: str, docs: list[str]) -> torch.Tensor:
    """Per-document loop with the same scorer, under inference mode."""
    with torch.inference_mode():
        q = rr.encode_queries([query])
        out = []
        for d in docs:
            p = rr.encode_documents([d])
            out.append(rr.score_tokens(q.embeddings, q.mask, p.tokens, p.offsets)[0])
        return torch.cat(out).clone()


def bench_speed(rr: MaxSimReranker, repeats: int) -> dict[str, Any]:
    query, docs = make_candidates(rr)
    enc: Any = rr.encoder
    lengths = [len(enc.tokenizer(rr.config.document_marker + d)["input_ids"]) for d in docs]
    fns = {
        "batched": lambda: rr.score(query, docs),
        "loop_colbert_style": lambda: loop_colbert_style(rr, query, docs),
        "loop_inference_mode": lambda: loop_inference(rr, query, docs),
    }
    ref = fns["batched"]()  # warm-up, and the scores every variant must reproduce
    for name in ("loop_colbert_style", "loop_inference_mode"):
        got = fns[name]()
        if not torch.allclose(got, ref, atol=1e-4):
            raise RuntimeError(f"{name} disagrees with the batched scores by {float((got - ref).abs().max()):.2e}")
    best = {k: float("inf") for k in fns}
    for _ in range(repeats):  # interleaved rounds
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - t0)
    return {
        "n_candidates": len(docs),
        "tokens_per_candidate_mean": sum(lengths) / len(lengths),
        "seconds": best,
        "speedup_vs_colbert_loop": best["loop_colbert_style"] / best["batched"],
        "speedup_vs_inference_loop": best["loop_inference_mode"] / best["batched"],
        "threads": torch.get_num_threads(),
        "repeats": repeats,
    }


def bench_quality(
    rr: MaxSimReranker, cache_dir: str, out_dir: str, epochs: int, trained_model: str | None
) -> dict[str, Any]:
    from rag_relax_plugins.core.metrics import evaluate
    from rag_relax_plugins.evals.hotpot_rerank import rerank_hotpot
    from rag_relax_plugins.training.maxsim_data import TokenCache, hotpot_split
    from rag_relax_plugins.training.maxsim_train import (
        MaxSimTrainConfig,
        evaluate_groups,
        train_maxsim,
    )

    split = hotpot_split(train_rows=400, val_rows=40)
    q = TokenCache.build(rr, split.queries.texts, marker=rr.config.query_marker, cache_dir=cache_dir)
    t = TokenCache.build(rr, split.texts.texts, marker=rr.config.document_marker, cache_dir=cache_dir, show_progress=True)
    table: dict[str, Any] = {}
    enc = rr.encoder
    # the cached (float16) evaluation path ranks like the public MaxSimReranker.score
    for g in split.test[:3]:
        direct = rr.score(split.queries.texts[g.query], [split.texts.texts[c] for c in g.candidates])
        with torch.inference_mode():
            qt = q.padded([g.query], rr.device)
            d = t.gather(g.candidates, rr.device)
            cached = rr.score_tokens(rr.head(qt[0]) * qt[1][..., None], qt[1], rr.head(d.tokens), d.offsets)[0]
        if not torch.allclose(direct, cached, atol=5e-3):
            raise RuntimeError(f"cached scores differ from MaxSimReranker.score by {float((direct - cached).abs().max()):.2e}")
    table["untrained_no_projection"] = evaluate_groups(
        MaxSimReranker(MaxSimConfig(projection_dim=None, max_seq_length=rr.config.max_seq_length), encoder=enc),
        split.test, q, t)
    table["untrained_projection_128"] = evaluate_groups(rr, split.test, q, t)
    if trained_model is None:  # train here (same options as `rag-relax train-maxsim`)
        cfg = MaxSimTrainConfig(output_dir=out_dir, epochs=epochs, cache_dir=cache_dir, show_progress=False)
        t0 = time.perf_counter()
        trained = MaxSimReranker(cfg.model_config(), encoder=enc)
        res = train_maxsim(cfg, split.train, split.queries.texts, split.texts.texts, val_groups=split.val,
                           reranker=trained)
        train_info = {"seconds": time.perf_counter() - t0, "steps": res["steps"], "config": cfg.to_dict(),
                      "model": str(Path(out_dir) / "best_model")}
        trained_model = str(Path(out_dir) / "best_model")
    else:  # a folder written by `rag-relax train-maxsim` (its train_config.json and history.json)
        run_dir = Path(trained_model).parent
        hist = json.loads((run_dir / "history.json").read_text(encoding="utf-8"))
        train_info = {"steps": len(hist["step_loss"]), "val_mrr_per_epoch": hist["val_mrr"], "model": trained_model,
                      "config": json.loads((run_dir / "train_config.json").read_text(encoding="utf-8"))}
    best = MaxSimReranker.load(trained_model, encoder=enc)
    table["trained_projection_128"] = evaluate_groups(best, split.test, q, t)
    rows = load_hotpot_test()
    cos = rerank_hotpot(rows, enc, batch_size=32)  # type: ignore[arg-type]  # one encoding pass
    by_type: dict[str, Any] = {}
    for kind in ("all", "bridge", "comparison"):
        keep = [i for i, r in enumerate(rows) if kind in ("all", r.type) and r.gold_indices]
        qrels: list[dict[str | int, float]] = [{g: 1.0 for g in rows[i].gold_indices} for i in keep]
        res = evaluate([cos.rankings[i] for i in keep], qrels, ["recall@2", "recall@5", "mrr"], skip_empty=True)
        by_type[kind] = {**res, "n": float(len(keep))}
    table["minilm_cosine"] = by_type
    return {"table": table, "training": train_info,
            "train_questions": len(split.train), "val_questions": len(split.val), "test_questions": len(split.test)}


def load_hotpot_test() -> list[Any]:
    return load_hotpotqa_distractor()[400:]


def merge_results(update: dict[str, Any]) -> Path:
    """Read-update-write ``benchmarks/results/rerankers.json`` atomically."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / "rerankers.json"
    data = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    data.update(update)
    tmp = path.with_suffix(f".json.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path


def speed_bars(speed: dict[str, Any]) -> list[Bar]:
    """The speed bar on ``bench_speed``'s result."""
    return [Bar("batched vs per-document loop (ColbertRerank style) speedup", speed["speedup_vs_colbert_loop"],
                ">=", SPEEDUP_BAR, "x")]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--skip-speed", action="store_true")
    ap.add_argument("--skip-quality", action="store_true")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--cache-dir", default="runs/maxsim_cache", help="frozen-backbone token cache")
    ap.add_argument("--out-dir", default="runs/bench_maxsim", help="where the trained reranker goes")
    ap.add_argument("--trained-model", default=None,
                    help="evaluate this best_model folder of a `rag-relax train-maxsim` run instead of training")
    args = ap.parse_args()
    length = MaxSimConfig().max_seq_length
    if args.trained_model is not None:  # read as many tokens as the trained model (its token cache too)
        saved = json.loads((Path(args.trained_model) / "config.json").read_text(encoding="utf-8"))
        length = int(saved.get("max_seq_length", length))
    rr = MaxSimReranker(MaxSimConfig(projection_dim=128, max_seq_length=length), device="cpu", batch_size=32)
    update: dict[str, Any] = {"machine": machine(), "date": today(), "maxsim_machine": machine(), "maxsim_date": today()}
    bars: list[Bar] = []
    if not args.skip_speed:
        speed = bench_speed(rr, args.repeats)
        bars = speed_bars(speed)
        # dated on their own: a later --skip-speed run re-dates maxsim_date, not these figures
        update["maxsim_speed_date"], update["maxsim_speed_machine"] = today(), machine()
        update["maxsim_speed"] = speed
        update["maxsim_speedup_vs_loop"] = speed["speedup_vs_colbert_loop"]
        update["maxsim_speedup_vs_inference_loop"] = speed["speedup_vs_inference_loop"]
        s = speed["seconds"]
        print(f"\nSpeed: 1 query x {speed['n_candidates']} candidates x {speed['tokens_per_candidate_mean']:.0f} tokens, "
              f"{speed['threads']} threads, best of {args.repeats} interleaved rounds")
        print_table([(k, f"{v:.2f}", f"{v / s['batched']:.2f}x") for k, v in s.items()], ("variant", "seconds", "vs batched"))
    if not args.skip_quality:
        qual = bench_quality(rr, args.cache_dir, args.out_dir, args.epochs, args.trained_model)
        update["maxsim_quality"] = qual
        tab = qual["table"]
        for key, name in (("untrained_no_projection", "maxsim_untrained"), ("trained_projection_128", "maxsim_trained")):
            update[f"recall2_{name}"] = tab[key]["all"]["recall@2"]
            update[f"recall5_{name}"] = tab[key]["all"]["recall@5"]
            update[f"mrr_{name}"] = tab[key]["all"]["mrr"]
        rows: list[tuple[str, ...]] = []
        for key, per in tab.items():
            for kind in ("all", "bridge", "comparison"):
                m = per[kind]
                rows.append((key, kind, f"{int(m['n'])}", f"{m['recall@2']:.3f}", f"{m['recall@5']:.3f}", f"{m['mrr']:.3f}"))
        print(f"\nHotpotQA distractor, last 100 rows (questions with a gold paragraph present); "
              f"trained model {qual['training']['model']} ({qual['training']['steps']} steps)")
        print_table(rows, ("model", "type", "n", "Recall@2", "Recall@5", "MRR"))
    path = merge_results(update)
    print(f"\nwrote {path}")
    return check_bars(bars, none_reason="the speed section (the only one with a bar) was skipped")


if __name__ == "__main__":
    raise SystemExit(main())
