"""Sampled softmax for retrieval training: in-batch negatives, uniform negatives, logQ correction.

The loss trains a scorer ``s(q, x)`` (a Mixture-of-Logits similarity or a dot product) from
``(query, positive item)`` pairs. Each row's candidates are the batch's positives (in-batch
negatives) plus ``S`` items drawn uniformly from the catalogue and shared by the batch ("mixed
negative sampling"). Because in-batch negatives are drawn in proportion to item popularity,
their logits are corrected by the log of each candidate's expected count in the sample (logQ
correction), and a candidate that *is* the row's positive item but sits in another column
(an accidental hit) is masked out.

References:
    - Sampled softmax with logQ correction: Bengio & Senecal, "Adaptive Importance Sampling to
      Accelerate Training of a Neural Probabilistic Language Model", IEEE TNN 2008; Yi et al.,
      "Sampling-Bias-Corrected Neural Modeling for Large Corpus Item Recommendations", RecSys 2019.
    - Mixed negative sampling: Yang et al., "Mixed Negative Sampling for Learning Two-tower Neural
      Networks in Recommendations", WWW 2020.
    - The same loss is used to train Mixture-of-Logits in Ding & Zhai, "Retrieval with Learned
      Similarities", WWW 2025 (arXiv 2407.15462), with the load-balancing term L_MI added
      by :mod:`rag_relax_plugins.training.mol_train`.

Relations: with no sampled negatives, no logQ and unique positives this is InfoNCE
(:func:`rag_relax_plugins.core.contrastive.info_nce` with ``similarity="dot"``) on the scores.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from rag_relax_plugins.core.validation import (
    check_count,
    check_finite,
    check_floating,
    check_ndim,
    check_positive,
)

__all__ = ["mixed_log_q", "sampled_softmax_loss", "sampled_softmax_loss_reference"]


def _check_ids(name: str, ids: torch.Tensor, n: int) -> None:
    if not isinstance(ids, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(ids).__name__}")
    if ids.dtype != torch.long:
        raise TypeError(f"{name} must be a long tensor, got dtype {ids.dtype}")
    if ids.dim() != 1 or ids.shape[0] != n:
        raise ValueError(f"{name} must have shape ({n},), got {tuple(ids.shape)}")


def sampled_softmax_loss(
    scores: torch.Tensor,
    positive_ids: torch.Tensor,
    candidate_ids: torch.Tensor,
    *,
    log_q: torch.Tensor | None = None,
    temperature: float = 1.0,
    exclude: torch.Tensor | None = None,
) -> torch.Tensor:
    """Mean sampled-softmax loss where row ``i``'s positive is column ``i``.

    Logits are ``scores / temperature - log_q``; for row ``i`` every column ``j != i`` whose
    candidate id equals ``positive_ids[i]`` is masked (accidental hit).

    Args:
        scores: ``(B, M) x float`` with ``M >= B``; columns ``0..B-1`` are the batch's positives
            (column ``i`` is row ``i``'s), the rest sampled negatives.
        positive_ids: ``(B,) x long`` item id of each row's positive.
        candidate_ids: ``(M,) x long`` item id of each column; ``candidate_ids[:B]`` must equal
            ``positive_ids``.
        log_q: ``(M,) x float`` log expected count of each candidate in the sample (see
            :func:`mixed_log_q`), or ``None`` for no correction.
        temperature: divides the scores (> 0).
        exclude: optional ``(B, M) x bool``, True where a column must not act as a negative for
            the row (e.g. another relevant item of the same query); the diagonal is ignored.

    Returns:
        Scalar mean loss over the ``B`` rows.

    Raises:
        TypeError / ValueError: naming the argument, for wrong dtypes, shapes or NaN/inf.
    """
    check_floating("scores", scores)
    check_ndim("scores", scores, 2)
    check_finite("scores", scores)
    b, m = scores.shape
    if b < 1 or m < b:
        raise ValueError(f"scores must have shape (B, M) with 1 <= B <= M, got {tuple(scores.shape)}")
    _check_ids("positive_ids", positive_ids, b)
    _check_ids("candidate_ids", candidate_ids, m)
    if not torch.equal(candidate_ids[:b], positive_ids):
        raise ValueError("candidate_ids[:B] must equal positive_ids (column i is row i's positive)")
    temperature = check_positive("temperature", temperature)
    logits = scores / temperature
    if log_q is not None:
        check_floating("log_q", log_q)
        if log_q.shape != (m,):
            raise ValueError(f"log_q must have shape ({m},), got {tuple(log_q.shape)}")
        check_finite("log_q", log_q)
        logits = logits - log_q.to(logits.dtype)[None, :]
    # (B, M) True where a column holds the row's positive item outside its own column
    hit = candidate_ids[None, :] == positive_ids[:, None]
    own = torch.zeros_like(hit)
    own[:, :b] = torch.eye(b, dtype=torch.bool, device=hit.device)
    if exclude is not None:
        if not isinstance(exclude, torch.Tensor) or exclude.dtype != torch.bool:
            raise TypeError("exclude must be a bool tensor or None")
        if exclude.shape != (b, m):
            raise ValueError(f"exclude must have shape ({b}, {m}), got {tuple(exclude.shape)}")
        hit = hit | exclude
    logits = logits.masked_fill(hit & ~own, float("-inf"))
    target = torch.arange(b, device=scores.device)
    return F.cross_entropy(logits, target)


def sampled_softmax_loss_reference(
    scores: torch.Tensor,
    positive_ids: torch.Tensor,
    candidate_ids: torch.Tensor,
    *,
    log_q: torch.Tensor | None = None,
    temperature: float = 1.0,
    exclude: torch.Tensor | None = None,
) -> torch.Tensor:
    """Row-by-row reference of :func:`sampled_softmax_loss` (tests only; slow, no validation)."""
    b, m = scores.shape
    total = scores.new_zeros(())
    for i in range(b):
        terms = []
        for j in range(m):
            if j != i and int(candidate_ids[j]) == int(positive_ids[i]):
                continue
            if j != i and exclude is not None and bool(exclude[i, j]):
                continue
            logit = scores[i, j] / temperature
            if log_q is not None:
                logit = logit - log_q[j]
            terms.append(logit)
        pos = scores[i, i] / temperature - (log_q[i] if log_q is not None else 0.0)
        total = total + torch.logsumexp(torch.stack(terms), dim=0) - pos
    return total / b


def mixed_log_q(
    candidate_ids: torch.Tensor,
    item_probs: torch.Tensor,
    *,
    batch_size: int,
    num_uniform: int,
    num_sampleable: int | None = None,
) -> torch.Tensor:
    """Log expected count of each candidate under mixed (in-batch + uniform) sampling.

    An item ``j`` appears among the ``B`` in-batch positives ``B * p(j)`` times in expectation
    (``p`` = its share of training positives) and among ``S`` uniform draws over the ``N'`` items
    that may be drawn ``S / N'`` times, so ``q(j) = B p(j) + S / N'`` (Yang et al. 2020).

    Args:
        candidate_ids: ``(M,) x long`` ids in ``[0, N)``.
        item_probs: ``(N,) x float`` sampling probability of each item as a positive (sums to 1).
        batch_size: ``B`` (>= 1).
        num_uniform: ``S`` (>= 0).
        num_sampleable: ``N'``, the number of ids the uniform draws come from (the catalogue
            minus the ids never drawn, e.g. padding); default ``N = len(item_probs)``.

    Returns:
        ``(M,) x float`` ``log q``; items with ``q = 0`` get ``log(1e-12)``.
    """
    check_floating("item_probs", item_probs)
    check_ndim("item_probs", item_probs, 1)
    batch_size = check_count("batch_size", batch_size, 1)
    num_uniform = check_count("num_uniform", num_uniform, 0)
    n = item_probs.shape[0]
    if num_sampleable is None:
        num_sampleable = n
    num_sampleable = check_count("num_sampleable", num_sampleable, 1, n)
    if not isinstance(candidate_ids, torch.Tensor) or candidate_ids.dtype != torch.long:
        raise TypeError("candidate_ids must be a long tensor")
    check_ndim("candidate_ids", candidate_ids, 1)
    if candidate_ids.numel() and (int(candidate_ids.min()) < 0 or int(candidate_ids.max()) >= n):
        raise ValueError(f"candidate_ids must lie in [0, {n}), got values outside")
    q = batch_size * item_probs[candidate_ids] + num_uniform / num_sampleable
    return torch.log(q.clamp_min(1e-12)).to(item_probs.dtype) if q.numel() else q

