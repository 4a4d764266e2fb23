"""The frozen-backbone stage of the Gaussian-embedder benchmark (``bench_gaussian.py``): the
projection head trained on cached backbone features (``_gaussian_feats.py``) with single-source
batches of HotpotQA, evidence and SNLI pairs, the epoch picked by validation nDCG@10, and its
evaluation on the HotpotQA and SNLI test sets."""

from __future__ import annotations

import argparse
import copy
import random
import time
from typing import Any

import torch
from _gaussian_feats import FeatureTable
from _gaussian_measure import _metrics

from rag_relax_plugins.embedders.gaussian import ProjectionHead
from rag_relax_plugins.training.gaussian_eval import embedding_diagnostics
from rag_relax_plugins.training.gaussian_objective import TrainConfig, lr_at, training_loss


def _batches(data: dict[str, Any], snli: list[tuple[str, str]], bs: int, g: random.Random, snli_per_epoch: int, m: int) -> list[dict[str, Any]]:
    """One epoch of single-source batches: HotpotQA (with ``m`` hard negatives), evidence, SNLI."""
    hp: list[tuple[Any, ...]] = [(it["query"], p, [g.choice(it["negatives"]) for _ in range(m)])
                                 for it in data["train_items"] for p in it["positives"]]
    ev: list[tuple[Any, ...]] = list(data["evidence_pairs"])
    sn: list[tuple[Any, ...]] = list(g.sample(snli, min(snli_per_epoch, len(snli))))
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
