"""Evaluation of an embedder on an ``eval.json`` (corpus, queries, qrels) plus embedding diagnostics.

Metrics: Recall@1/5/10/20/50/100, MRR, nDCG@10, MAP@100 (definitions in
:mod:`rag_relax_plugins.core.metrics`), and for the document embeddings the SIGReg statistic
(with its null expectation for reference), the effective rank and per-dimension std.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from rag_relax_plugins._io import atomic_write_json
from rag_relax_plugins.core.isotropy import effective_rank, epps_pulley_null_mean, sigreg
from rag_relax_plugins.core.metrics import deepest_cutoff, evaluate, rankings_from_scores
from rag_relax_plugins.embedders.gaussian import geometry_scores

__all__ = ["DEFAULT_METRICS", "embedding_diagnostics", "evaluate_model", "format_table", "retrieval_metrics", "write_report"]

DEFAULT_METRICS = ("recall@1", "recall@5", "recall@10", "recall@20", "recall@50", "recall@100", "mrr", "ndcg@10", "map@100")


def retrieval_metrics(
    queries: torch.Tensor,
    docs: torch.Tensor,
    doc_ids: Sequence[str],
    qrels: Sequence[Mapping[str, float]],
    *,
    geometry: str,
    metrics: Sequence[str] = DEFAULT_METRICS,
    chunk: int = 256,
) -> dict[str, float]:
    """Exact retrieval of ``docs`` for each query and mean IR metrics.

    Args:
        queries: ``(Q, D) x float``.
        docs: ``(N, D) x float``.
        doc_ids: ``N`` ids.
        qrels: ``Q`` mappings doc id -> grade.
        geometry: ``"euclidean"``, ``"inner_product"`` or ``"cosine"``.
        metrics: metric names understood by :func:`rag_relax_plugins.core.metrics.evaluate`.
        chunk: queries scored at once (bounds the ``(chunk, N)`` score matrix).

    Returns:
        ``{metric: mean over queries}``; rankings go ``min(N, max(100, largest k))`` documents
        deep, so every ``@k`` metric is exact and plain ``"mrr"`` counts a query whose first
        relevant document lies deeper as 0 (at most ``1 / 101`` below the full MRR per query).
    """
    if docs.dim() != 2 or queries.dim() != 2 or docs.shape[1] != queries.shape[1]:
        raise ValueError(f"queries (Q, D) and docs (N, D) must share D, got {tuple(queries.shape)} and {tuple(docs.shape)}")
    if docs.shape[0] != len(doc_ids):
        raise ValueError(f"doc_ids must have one id per document ({docs.shape[0]}), got {len(doc_ids)}")
    if queries.shape[0] != len(qrels):
        raise ValueError(f"qrels must have one entry per query ({queries.shape[0]}), got {len(qrels)}")
    if geometry == "cosine":
        queries, docs, geometry = (torch.nn.functional.normalize(queries, dim=-1), torch.nn.functional.normalize(docs, dim=-1), "inner_product")
    # recall@200 was cut at depth 100 and read a gold document at rank 150 as missing
    depth = min(docs.shape[0], max(100, deepest_cutoff(metrics) or 0))
    rankings: list[list[Any]] = []
    for s in range(0, queries.shape[0], chunk):  # chunks keep the (chunk, N) score matrix small
        rankings += rankings_from_scores(geometry_scores(queries[s : s + chunk], docs, geometry), depth, list(doc_ids))  # type: ignore[arg-type]
    return evaluate(rankings, list(qrels), list(metrics))  # type: ignore[arg-type]


def embedding_diagnostics(x: torch.Tensor, *, seed: int = 0) -> dict[str, Any]:
    """SIGReg statistic (and its null mean), effective rank and per-dimension std of embeddings.

    Args:
        x: ``(N, D) x float`` embeddings, ``N >= 2``.
        seed: seed of the SIGReg slices (fixed, so diagnostics are deterministic).

    Returns:
        ``sigreg`` (mean Epps-Pulley statistic; ``sigreg_null_mean`` is its value for ideal
        ``N(0, I)`` samples), ``effective_rank``, ``dim``, ``std_mean/min/max``, ``per_dim_std``.
    """
    if x.ndim != 2 or x.shape[0] < 2:
        raise ValueError(f"x must be (N, D) embeddings with N >= 2, got shape {tuple(x.shape)}")
    x = x.detach().float().cpu()
    std = x.std(dim=0)
    return {
        "sigreg": float(sigreg(x, seed=seed)),
        "sigreg_null_mean": epps_pulley_null_mean(),
        "effective_rank": float(effective_rank(x)),
        "dim": int(x.shape[1]),
        "std_mean": float(std.mean()),
        "std_min": float(std.min()),
        "std_max": float(std.max()),
        "per_dim_std": [round(v, 5) for v in std.tolist()],
    }


def evaluate_model(model: Any, data: Mapping[str, Any], *, batch_size: int = 64, geometry: str | None = None, show_progress: bool = False) -> dict[str, Any]:
    """Encode the corpus and queries of ``data`` with ``model`` (``encode`` method) and score them.

    Args:
        model: a ``GaussianEmbedder`` or any ``TextEncoder``.
        data: ``{"corpus": {id: text}, "queries": {id: text}, "qrels": {qid: {id: grade}}}``.
        batch_size: texts per forward pass.
        geometry: defaults to ``model.geometry`` (``"cosine"`` for encoders without one).
        show_progress: progress bars while encoding.

    Returns:
        ``{"metrics": {name: mean}, "diagnostics": ..., "geometry", "num_queries", "num_docs"}``;
        queries with no relevant document (no qrels, or only grades <= 0) are left out of the means.
        ``diagnostics`` is ``{}`` for a one-document corpus (its statistics need two).
    """
    corpus, queries, qrels = data["corpus"], data["queries"], data["qrels"]
    qids = [q for q in queries if any(g > 0 for g in (qrels.get(q) or {}).values())]  # others have nothing to find
    if not qids:
        raise ValueError("no query of 'queries' has a relevant document in 'qrels'")
    doc_ids = list(corpus)
    geo = str(geometry or getattr(model, "geometry", "cosine"))
    d = model.encode([corpus[i] for i in doc_ids], batch_size=batch_size, show_progress=show_progress).cpu()
    q = model.encode([queries[i] for i in qids], batch_size=batch_size, show_progress=show_progress).cpu()
    metrics = retrieval_metrics(q, d, doc_ids, [qrels[i] for i in qids], geometry=geo)
    diagnostics = embedding_diagnostics(d) if len(doc_ids) >= 2 else {}
    return {"metrics": metrics, "diagnostics": diagnostics, "geometry": geo, "num_queries": len(qids), "num_docs": len(doc_ids)}


def format_table(result: Mapping[str, Any]) -> str:
    """A readable two-column table of the metrics and diagnostics."""
    rows = [(k, f"{v:.4f}") for k, v in result["metrics"].items()]
    diag = result.get("diagnostics", {})
    for k in ("sigreg", "sigreg_null_mean", "effective_rank", "std_mean", "std_min", "std_max"):
        if k in diag:
            rows.append((k, f"{diag[k]:.4f}"))
    width = max(len(k) for k, _ in rows)
    lines = [f"{'metric':<{width}}  value", f"{'-' * width}  ------"]
    lines += [f"{k:<{width}}  {v}" for k, v in rows]
    return "\n".join(lines)


def write_report(result: Mapping[str, Any], path: str | os.PathLike[str]) -> Path:
    """Write ``result`` as JSON (atomically)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(target, result)
    return target
