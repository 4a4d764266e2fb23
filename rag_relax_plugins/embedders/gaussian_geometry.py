"""Scores and relevances of Gaussian embeddings under a geometry (``"euclidean"`` or ``"inner_product"``).

Pure functions shared by :class:`~rag_relax_plugins.embedders.gaussian.GaussianEmbedder`, its
evaluation and its framework adapters.
"""

from __future__ import annotations

import math

import torch

from rag_relax_plugins.core.validation import check_floating, check_same_dtype
from rag_relax_plugins.embedders.gaussian_config import GEOMETRIES

__all__ = ["geometry_scores", "relevance_from_scores"]


def _check_geometry(geometry: object) -> str:
    if geometry not in GEOMETRIES:
        raise ValueError(f"geometry must be one of {GEOMETRIES}, got {geometry!r}")
    return str(geometry)


def geometry_scores(queries: torch.Tensor, docs: torch.Tensor, geometry: str) -> torch.Tensor:
    """Similarity scores under ``geometry`` (higher is better).

    Args:
        queries: ``(B, D) x float``.
        docs: ``(N, D) x float``.
        geometry: ``"euclidean"`` (minus the L2 distance) or ``"inner_product"``.

    Returns:
        ``(B, N) x float`` on the inputs' device.
    """
    geometry = _check_geometry(geometry)
    if queries.dim() != 2 or docs.dim() != 2:
        raise ValueError(
            f"queries and docs must be 2-D, got shapes {tuple(queries.shape)} and {tuple(docs.shape)}"
        )
    if queries.shape[-1] != docs.shape[-1]:
        raise ValueError(
            f"queries and docs must share the last dimension, got {queries.shape[-1]} and {docs.shape[-1]}"
        )
    check_floating("queries", queries)
    check_floating("docs", docs)
    check_same_dtype("docs", docs, "queries", queries)
    if geometry == "euclidean":
        # exact distances (cdist's matmul shortcut loses precision for nearby points); CPU cdist
        # has no float16 / bfloat16 kernel
        half = queries.device.type == "cpu" and queries.dtype in (torch.float16, torch.bfloat16)
        q, d = (queries.float(), docs.float()) if half else (queries, docs)
        scores = -torch.cdist(q, d, compute_mode="donot_use_mm_for_euclid_dist").to(queries.dtype)
    else:
        scores = queries @ docs.T
    if not bool(torch.isfinite(scores).all()):  # on the (small) output, as maxsim does
        raise ValueError("queries or docs contain NaN or inf values (the scores are not finite)")
    return scores


def relevance_from_scores(scores: torch.Tensor, geometry: str, dim: int) -> torch.Tensor:
    """Map raw scores to relevances in ``[0, 1]`` (monotone, so rankings are unchanged).

    - ``"euclidean"`` (score ``= -dist``): ``exp(-dist^2 / (2 D))``: 1 for identical vectors,
      ``exp(-1)`` for two independent ``N(0, I_D)`` vectors.
    - ``"inner_product"``: ``sigmoid(score / sqrt(D))``: the inner product of two independent
      ``N(0, I_D)`` vectors has standard deviation ``sqrt(D)``.

    Args:
        scores: ``(...) x float`` raw scores from :func:`geometry_scores`.
        geometry: the geometry that produced them.
        dim: embedding dimension ``D`` (>= 1).
    """
    geometry = _check_geometry(geometry)
    if dim < 1:
        raise ValueError(f"dim must be >= 1, got {dim}")
    if geometry == "euclidean":
        return torch.exp(-(scores**2) / (2 * dim))
    return torch.sigmoid(scores / math.sqrt(dim))
