"""Measurements of the Gaussian-embedder benchmark (``bench_gaussian.py``): retrieval metrics of
query and corpus embeddings, FAISS HNSW recall against exact search, mean and standard deviation
over seeds, and the speed part (encode overhead against bare sentence-transformers, CPU training
steps/s)."""

from __future__ import annotations

import copy
import statistics
import time
from typing import Any

import torch

from rag_relax_plugins.embedders.gaussian import GaussianEmbedder
from rag_relax_plugins.embedders.gaussian_config import GaussianConfig
from rag_relax_plugins.training.gaussian_eval import retrieval_metrics
from rag_relax_plugins.training.gaussian_objective import TrainConfig, training_loss


def _metrics(q: torch.Tensor, d: torch.Tensor, ids: list[str], qrels: list[dict[str, int]], geometry: str) -> dict[str, float]:
    return retrieval_metrics(q, d, ids, qrels, geometry=geometry)


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
