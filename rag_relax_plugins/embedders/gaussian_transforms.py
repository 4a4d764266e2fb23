"""Exact reductions of the Gaussian embedder's geometry to cosine similarity.

Many vector stores (LangChain's ``InMemoryVectorStore``, LlamaIndex's ``SimpleVectorStore``)
rank by cosine similarity only. Two classic asymmetric transforms make cosine ranking over the
transformed vectors *identical* to ranking by the model's geometry:

- Euclidean -> inner product (Bachrach et al., RecSys 2014, in the "L2 to MIPS" direction):
  ``d -> [d, -|d|^2 / 2]``, ``q -> [q, 1]``, so ``<q', d'> = -(|q - d|^2 - |q|^2) / 2``, which
  for a fixed query orders documents exactly like minus the distance.
- Inner product -> cosine (Neyshabur & Srebro, ICML 2015, "simple-LSH"):
  ``a -> [a / M, sqrt(1 - |a / M|^2)]`` for documents with ``|a| <= M``, ``q -> [q, 0]``. Every
  document then has unit norm and the query's norm is fixed, so cosine is ``<q, a> / (M |q|)``:
  monotone in the inner product.

Documents get two (Euclidean) or one (inner product) extra coordinates; ``max_norm`` ``M`` must
bound the norm of every (Euclidean-augmented) document vector, and a larger document is an error
rather than a silent ranking change.
"""

from __future__ import annotations

import torch

from rag_relax_plugins.core.validation import (
    check_finite,
    check_floating,
    check_ndim,
    check_positive,
)
from rag_relax_plugins.embedders.gaussian_config import GEOMETRIES

__all__ = ["cosine_compatible_documents", "cosine_compatible_queries", "extra_dims"]


def _check(name: str, x: torch.Tensor, geometry: str) -> None:
    check_floating(name, x)
    check_ndim(name, x, 2)
    check_finite(name, x)
    if geometry not in GEOMETRIES:
        raise ValueError(f"geometry must be one of {GEOMETRIES}, got {geometry!r}")


def extra_dims(geometry: str) -> int:
    """Coordinates the transforms add: 2 for ``"euclidean"``, 1 for ``"inner_product"``."""
    if geometry not in GEOMETRIES:
        raise ValueError(f"geometry must be one of {GEOMETRIES}, got {geometry!r}")
    return 2 if geometry == "euclidean" else 1


def cosine_compatible_documents(docs: torch.Tensor, geometry: str, max_norm: float) -> torch.Tensor:
    """Document vectors whose cosine with :func:`cosine_compatible_queries` ranks like ``geometry``.

    Args:
        docs: ``(N, D) x float`` raw model outputs.
        geometry: ``"euclidean"`` or ``"inner_product"``.
        max_norm: ``M``, an upper bound of ``|[d, -|d|^2/2]|`` (Euclidean) or ``|d|``.

    Returns:
        ``(N, D + extra_dims(geometry)) x float`` unit-norm rows (computed in float64).

    Raises:
        ValueError: a document exceeds ``max_norm`` (the message gives the largest norm).
    """
    _check("docs", docs, geometry)
    m = check_positive("max_norm", max_norm)
    x = docs.double()
    if geometry == "euclidean":
        x = torch.cat([x, -0.5 * (x * x).sum(-1, keepdim=True)], dim=-1)  # (N, D + 1)
    norms = x.norm(dim=-1, keepdim=True)
    if x.shape[0] and float(norms.max()) > m:
        raise ValueError(
            f"max_norm (cosine_max_norm of the embedding wrappers) must bound every document's norm"
            f"{' |[d, -|d|^2/2]|' if geometry == 'euclidean' else ''}: got {m}, largest {float(norms.max()):.6g}"
        )
    x = x / m
    pad = torch.sqrt((1 - (x * x).sum(-1, keepdim=True)).clamp_min(0.0))  # (N, 1) unit-norm rows
    return torch.cat([x, pad], dim=-1).to(docs.dtype)


def cosine_compatible_queries(queries: torch.Tensor, geometry: str) -> torch.Tensor:
    """Query vectors to pair with :func:`cosine_compatible_documents`.

    Args:
        queries: ``(B, D) x float`` raw model outputs.
        geometry: ``"euclidean"`` or ``"inner_product"``.

    Returns:
        ``(B, D + extra_dims(geometry)) x float`` unit-norm rows (cosine only sees directions).
    """
    _check("queries", queries, geometry)
    x = queries.double()
    ones = torch.ones(x.shape[0], 1, dtype=x.dtype, device=x.device)
    zeros = torch.zeros_like(ones)
    x = torch.cat([x, ones, zeros], dim=-1) if geometry == "euclidean" else torch.cat([x, zeros], dim=-1)
    return torch.nn.functional.normalize(x, dim=-1).to(queries.dtype)
