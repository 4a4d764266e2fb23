"""ColBERT late interaction (MaxSim).

Khattab & Zaharia, "ColBERT: Efficient and Effective Passage Search via Contextualized Late
Interaction over BERT" (SIGIR 2020): the score of a document for a query is the sum, over query
tokens, of the best similarity to any document token,
``S(q, d) = sum_i w_i * max_j sim(q_i, d_j)``.

Three layouts are provided:

- :func:`maxsim`: padded queries ``(B, Lq, D)`` against padded documents ``(N, Ld, D)`` -> ``(B, N)``;
- :func:`maxsim_pairwise`: aligned pairs ``(B, Lq, D)`` x ``(B, Ld, D)`` -> ``(B,)`` (training);
- :func:`maxsim_packed`: documents stored back to back ``(T, D)`` with offsets -> ``(B, N)``.

Padding never wins a max: padded document tokens get a ``-inf`` bias fused into the matrix
product, and a document with no valid token (by its mask or its offsets, not by the value
``-inf``) scores 0. Padded query tokens contribute nothing, if finite: the query mask is a weight
of 0, so NaN / inf there make the scores non-finite (``ValueError``) in all three forms.
All forms are differentiable; :func:`maxsim` chunks over documents to bound memory.

Non-finite token embeddings are detected on the (small) output rather than by scanning the token
tensors, which would cost more than the scoring itself; the error names both inputs. A similarity of
``-inf`` from a valid token (an inf in the tokens, or a float16 product below -65504) is caught
this way too, as ``+inf`` is: it made the score 0 before (review 2026-12). The (small)
``query_weights`` are checked directly.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

from rag_relax_plugins.core.validation import (
    check_count,
    check_finite,
    check_floating,
    check_ndim,
    check_same_dtype,
)

__all__ = ["maxsim", "maxsim_packed", "maxsim_pairwise"]

Similarity = Literal["dot", "cosine"]


def _check_tokens(name: str, x: torch.Tensor, mask_name: str, mask: torch.Tensor | None) -> torch.Tensor:
    check_floating(name, x)
    check_ndim(name, x, 3)
    if mask is None:
        return torch.ones(x.shape[:2], dtype=torch.bool, device=x.device)
    if not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool:
        raise TypeError(f"{mask_name} must be a bool tensor, got {getattr(mask, 'dtype', type(mask).__name__)}")
    if mask.shape != x.shape[:2]:
        raise ValueError(f"{mask_name} must have shape {tuple(x.shape[:2])}, got {tuple(mask.shape)}")
    return mask


def _prep_query(
    q: torch.Tensor, q_mask: torch.Tensor, query_weights: torch.Tensor | None, similarity: str
) -> tuple[torch.Tensor, torch.Tensor]:
    if similarity not in ("dot", "cosine"):
        raise ValueError(f"similarity must be 'dot' or 'cosine', got {similarity!r}")
    if similarity == "cosine":
        q = F.normalize(q, dim=-1)
    weights = q_mask.to(q.dtype)
    if query_weights is not None:
        check_floating("query_weights", query_weights)
        if query_weights.shape != q_mask.shape:
            raise ValueError(
                f"query_weights must have shape {tuple(q_mask.shape)}, got {tuple(query_weights.shape)}"
            )
        check_finite("query_weights", query_weights)  # (B, Lq): small, unlike the token tensors
        weights = weights * query_weights.to(q.dtype)  # the output keeps the tokens' dtype
    return q, weights


def maxsim(
    q: torch.Tensor,
    d: torch.Tensor,
    *,
    q_mask: torch.Tensor | None = None,
    d_mask: torch.Tensor | None = None,
    similarity: Similarity = "dot",
    query_weights: torch.Tensor | None = None,
    chunk_size: int = 2048,
) -> torch.Tensor:
    """Late-interaction scores of every query against every document.

    Args:
        q: ``(B, Lq, D) x float`` query token embeddings.
        d: ``(N, Ld, D) x float`` document token embeddings.
        q_mask: ``(B, Lq) x bool``, True at real query tokens (all True when ``None``).
        d_mask: ``(N, Ld) x bool``, True at real document tokens.
        similarity: ``"dot"`` or ``"cosine"`` (tokens L2-normalised first).
        query_weights: optional ``(B, Lq) x float`` per-query-token weights.
        chunk_size: documents scored per chunk, an int ``>= 1`` (bounds the ``(B, Lq, chunk, Ld)``
            buffer).

    Returns:
        ``(B, N) x float`` scores; 0 for a document without any valid token.

    Raises:
        TypeError: non-float tokens, masks not bool, ``d`` of another dtype than ``q``.
        ValueError: wrong shapes, ``chunk_size`` not an int ``>= 1``, or a non-finite score (NaN
            or inf in the tokens, or a similarity that overflows the dtype).
    """
    qm = _check_tokens("q", q, "q_mask", q_mask)
    dm = _check_tokens("d", d, "d_mask", d_mask)
    if q.shape[-1] != d.shape[-1]:
        raise ValueError(f"q and d must share the embedding dimension, got {q.shape[-1]} and {d.shape[-1]}")
    check_same_dtype("d", d, "q", q)
    chunk_size = check_count("chunk_size", chunk_size, 1)
    q, weights = _prep_query(q, qm, query_weights, similarity)
    if similarity == "cosine":
        d = F.normalize(d, dim=-1)
    b, lq, dim = q.shape
    ld = d.shape[1]
    if ld == 0:  # every document is empty: score 0 (as for an all-padding document)
        return q.new_zeros(b, d.shape[0])
    out = []
    q_t = q.reshape(b * lq, dim).T  # (D, B*Lq)
    all_valid = bool(dm.all())
    for start in range(0, d.shape[0], chunk_size):
        dc = d[start : start + chunk_size]
        n = dc.shape[0]
        # (n*Ld, D) @ (D, B*Lq) -> (n*Ld, B*Lq): one GEMM over every token of the chunk
        flat = dc.reshape(n * ld, dim)
        if all_valid:
            sim = flat @ q_t
        else:
            mc = dm[start : start + chunk_size].reshape(n * ld, 1)
            bias = torch.zeros(mc.shape, dtype=q.dtype, device=q.device).masked_fill_(~mc, float("-inf"))
            sim = torch.addmm(bias, flat, q_t)  # padded tokens get -inf, fused into the GEMM
        best = sim.view(n, ld, b * lq).amax(dim=1)  # (n, B*Lq): best document token per query token
        if not all_valid:  # documents without a valid token score 0 (their best is the bias, -inf)
            empty = ~dm[start : start + chunk_size].any(dim=1, keepdim=True)
            best = best.masked_fill(empty & (best == float("-inf")), 0.0)  # NaN in its padding stays NaN
        # (n, B, Lq) weighted sum over query tokens -> (B, n)
        out.append((best.view(n, b, lq) * weights.unsqueeze(0)).sum(-1).transpose(0, 1))
    scores = torch.cat(out, dim=1) if out else q.new_zeros(b, 0)
    _check_output(scores)
    return scores


def _check_output(scores: torch.Tensor) -> None:
    if not bool(torch.isfinite(scores).all()):
        raise ValueError(
            f"q or d contains NaN or inf values, or a similarity overflows {scores.dtype} "
            "(the scores are not finite)"
        )


def maxsim_pairwise(
    q: torch.Tensor,
    d: torch.Tensor,
    *,
    q_mask: torch.Tensor | None = None,
    d_mask: torch.Tensor | None = None,
    similarity: Similarity = "dot",
    query_weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """Late-interaction score of aligned (query, document) pairs.

    Args:
        q: ``(B, Lq, D) x float``; d: ``(B, Ld, D) x float``; masks ``(B, Lq)`` / ``(B, Ld)`` bool.

    Returns:
        ``(B,) x float`` scores; 0 for a document without any valid token.

    Raises:
        ValueError: as :func:`maxsim` (a non-finite score included).
    """
    qm = _check_tokens("q", q, "q_mask", q_mask)
    dm = _check_tokens("d", d, "d_mask", d_mask)
    if q.shape[0] != d.shape[0] or q.shape[-1] != d.shape[-1]:
        raise ValueError(f"q and d must have the same batch and dimension, got {tuple(q.shape)} and {tuple(d.shape)}")
    check_same_dtype("d", d, "q", q)
    q, weights = _prep_query(q, qm, query_weights, similarity)  # validates even for empty documents
    if d.shape[1] == 0:  # empty documents score 0
        return q.new_zeros(q.shape[0])
    if similarity == "cosine":
        d = F.normalize(d, dim=-1)
    sim = torch.bmm(q, d.transpose(1, 2)).masked_fill(~dm.unsqueeze(1), float("-inf"))  # (B, Lq, Ld)
    best = sim.amax(dim=-1)  # (B, Lq)
    best = best.masked_fill(~dm.any(dim=1, keepdim=True) & (best == float("-inf")), 0.0)  # empty documents: 0
    scores = (best * weights).sum(-1)
    _check_output(scores)
    return scores


def maxsim_packed(
    q: torch.Tensor,
    doc_tokens: torch.Tensor,
    doc_offsets: torch.Tensor,
    *,
    q_mask: torch.Tensor | None = None,
    similarity: Similarity = "dot",
    query_weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """Late interaction against documents packed back to back without padding.

    Args:
        q: ``(B, Lq, D) x float`` query tokens.
        doc_tokens: ``(T, D) x float`` all document tokens, document after document.
        doc_offsets: ``(N + 1,) x long``, document ``n`` owns rows ``offsets[n]:offsets[n+1]``;
            ``offsets[0] == 0`` and ``offsets[-1] == T``; empty documents allowed (score 0).
        q_mask, similarity, query_weights: as in :func:`maxsim`.

    Returns:
        ``(B, N) x float`` scores; 0 for an empty document.

    Raises:
        ValueError: bad offsets or shapes, or a non-finite score (as :func:`maxsim`).
    """
    qm = _check_tokens("q", q, "q_mask", q_mask)
    check_floating("doc_tokens", doc_tokens)
    check_ndim("doc_tokens", doc_tokens, 2)
    if not isinstance(doc_offsets, torch.Tensor):
        raise TypeError(f"doc_offsets must be a torch.Tensor, got {type(doc_offsets).__name__}")
    if doc_offsets.dtype not in (torch.int64, torch.int32) or doc_offsets.dim() != 1 or doc_offsets.numel() < 1:
        raise ValueError("doc_offsets must be a 1-D integer tensor of N + 1 offsets")
    lengths = doc_offsets[1:] - doc_offsets[:-1]
    if int(doc_offsets[0]) != 0 or int(doc_offsets[-1]) != doc_tokens.shape[0] or bool((lengths < 0).any()):
        raise ValueError(
            f"doc_offsets must start at 0, be non-decreasing and end at T={doc_tokens.shape[0]}"
        )
    if q.shape[-1] != doc_tokens.shape[-1]:
        raise ValueError(f"q and doc_tokens must share the dimension, got {q.shape[-1]} and {doc_tokens.shape[-1]}")
    check_same_dtype("doc_tokens", doc_tokens, "q", q)
    q, weights = _prep_query(q, qm, query_weights, similarity)
    if similarity == "cosine":
        doc_tokens = F.normalize(doc_tokens, dim=-1)
    b, lq, dim = q.shape
    n_docs = lengths.numel()
    if n_docs == 0 or doc_tokens.shape[0] == 0:  # no documents, or only empty ones
        return q.new_zeros(b, n_docs)
    sim = doc_tokens @ q.reshape(b * lq, dim).T  # (T, B*Lq): one GEMM over all tokens
    # segment max over each document's rows -> (N, B*Lq); empty documents keep -inf.
    # scatter_reduce("amax") over a token -> document index is ~10x faster than
    # torch.segment_reduce on CPU here (2 ms vs 24 ms for 150k tokens x 32).
    owner = torch.repeat_interleave(torch.arange(n_docs, device=sim.device), lengths.to(sim.device))  # (T,)
    best = sim.new_full((n_docs, b * lq), float("-inf")).scatter_reduce(
        0, owner.unsqueeze(1).expand_as(sim), sim, reduce="amax", include_self=True
    )
    empty = (lengths == 0).to(best.device).unsqueeze(1)
    best = best.masked_fill(empty & (best == float("-inf")), 0.0)  # empty documents: 0
    scores = (best.view(n_docs, b, lq) * weights.unsqueeze(0)).sum(-1).T
    _check_output(scores)
    return scores
