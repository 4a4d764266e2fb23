"""One run of the unfrozen stage of the Gaussian-embedder benchmark (``bench_gaussian.py``):
MiniLM's last layers and the head trained end to end by the library's ``train`` on HotpotQA
(question, gold paragraph, distractor) rows, then evaluated (HotpotQA, SNLI, HNSW recall, and the
validation questions under ``--unfreeze-val``)."""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from pathlib import Path
from typing import Any

from _gaussian_measure import _metrics, hnsw_recall

from rag_relax_plugins.embedders.gaussian import GaussianEmbedder
from rag_relax_plugins.training.gaussian_eval import embedding_diagnostics
from rag_relax_plugins.training.gaussian_objective import TrainConfig


def _pair_rows(items: list[dict[str, Any]], g: random.Random) -> list[dict[str, str]]:
    """(question, gold paragraph, one random distractor of the same question) rows."""
    return [{"query": it["query"], "positive": p, "negative": g.choice(it["negatives"])} for it in items for p in it["positives"]]


def _val_items(data: dict[str, Any]) -> list[dict[str, Any]]:
    """Training-style items of the held-out validation questions (gold + distractors from the corpus)."""
    from rag_relax_plugins.datasets import load_hotpotqa_distractor

    by_q = {ex.question: ex for ex in load_hotpotqa_distractor()}
    items = []
    for q in data["val_queries"].values():
        ex = by_q[q]
        pos = [data["corpus"][t] for t in ex.gold_titles if t in data["corpus"]]
        neg = [data["corpus"][t] for t in ex.titles if t not in set(ex.gold_titles) and t in data["corpus"]]
        if pos and neg:
            items.append({"query": q, "positives": pos, "negatives": neg})
    return items


def unfrozen_run(data: dict[str, Any], args: argparse.Namespace, seed: int, model: GaussianEmbedder | None = None) -> dict[str, Any]:
    """Train MiniLM's last ``6 - unfreeze_freeze`` layers + the head end to end (library ``train``).

    Starts from the identity head (the untrained model ranks like cosine MiniLM), trains on the
    HotpotQA training pairs, each with a hard negative, then encodes the corpus and evaluates.
    With ``--unfreeze-val`` the held-out validation questions' pairs pick ``best_model`` (lowest
    validation loss over epochs), which is evaluated. ``model`` (already built, with its prefix
    cache enabled under ``--unfreeze-cache``) is trained in place instead of a new one.
    """
    from rag_relax_plugins.training.gaussian_train import train

    g = random.Random(seed)
    rows = _pair_rows(data["train_items"], g)
    val_rows = _pair_rows(_val_items(data), g) if args.unfreeze_val else []
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "train.jsonl").write_text("\n".join(json.dumps(r) for r in rows), encoding="utf-8")
        if val_rows:
            (Path(tmp) / "val.jsonl").write_text("\n".join(json.dumps(r) for r in val_rows), encoding="utf-8")
        cfg = TrainConfig(train_file=str(Path(tmp) / "train.jsonl"), output_dir=str(Path(tmp) / "run"), output_dim=args.output_dim,
                          val_file=str(Path(tmp) / "val.jsonl") if val_rows else None,
                          geometry=args.geometry, freeze_early_layers=args.unfreeze_freeze, batch_size=args.unfreeze_batch,
                          epochs=1000, max_steps=args.unfreeze_steps, learning_rate=args.unfreeze_lr, head_learning_rate=args.head_lr,
                          warmup_steps=args.unfreeze_warmup, seed=seed, isotropy=args.unfreeze_isotropy, lambda_isotropy=args.lambda_isotropy,
                          save_checkpoints=False, show_progress=False, device="cpu", cache_frozen_prefix=args.unfreeze_cache)
        t0 = time.perf_counter()
        out = train(cfg, model=model)
        train_s = time.perf_counter() - t0
        chosen = "best_model" if val_rows else "final_model"
        if model is not None and val_rows:
            state = GaussianEmbedder.load(Path(tmp) / "run" / chosen, device="cpu").state_dict()
            model.load_state_dict(state)  # the cache (frozen layers) stays valid: only trained weights change
        elif model is None:
            model = GaussianEmbedder.load(Path(tmp) / "run" / chosen, device="cpu")
            if args.unfreeze_cache:
                model.enable_prefix_cache()
    chosen_epoch = out["best_epoch"] if val_rows else None
    t0 = time.perf_counter()
    c = model.encode(list(data["corpus"].values()), batch_size=32)
    q = model.encode(list(data["queries"].values()), batch_size=32)
    met = _metrics(q, c, list(data["corpus"]), [data["qrels"][k] for k in data["queries"]], args.geometry)
    res = {"ndcg10": met["ndcg@10"], "recall10": met["recall@10"], "mrr": met["mrr"], "steps": out["steps"],
           "train_seconds": train_s, "train_steps_per_s": out["steps_per_second"],
           "encode_eval_seconds": time.perf_counter() - t0, "pairs": len(rows)}
    diag = embedding_diagnostics(c)
    res.update({"sigreg": diag["sigreg"], "effective_rank": diag["effective_rank"]})
    sn = data.get("snli_test")
    if sn is not None:
        s = _metrics(model.encode(list(sn["queries"].values()), batch_size=64), model.encode(list(sn["corpus"].values()), batch_size=64),
                     list(sn["corpus"]), [sn["qrels"][k] for k in sn["queries"]], args.geometry)
        res["snli_recall10"] = s["recall@10"]
    qa = model.encode(data["all_questions"], batch_size=32)
    for ef in (16, 64):
        res[f"hnsw_recall10_ratio_ef{ef}"] = hnsw_recall(c, qa, args.geometry, ef_search=ef)
    if val_rows:
        vq = model.encode(list(data["val_queries"].values()), batch_size=32)
        vm = _metrics(vq, c, list(data["corpus"]), [data["val_qrels"][k] for k in data["val_queries"]], args.geometry)
        res.update({"val_ndcg10": vm["ndcg@10"], "best_epoch": chosen_epoch, "val_loss": out["history"]["val_loss"]})
    return res
