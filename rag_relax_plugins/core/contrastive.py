"""Contrastive losses for bi-encoders: InfoNCE with in-batch negatives, and triplet margin.

References:
    - InfoNCE: van den Oord et al., "Representation Learning with Contrastive Predictive Coding",
      2018; in-batch negatives as in Henderson et al. 2017 and sentence-transformers'
      MultipleNegativesRankingLoss.
    - Triplet margin: Schroff et al., "FaceNet", CVPR 2015.

Relations: InfoNCE is ListNet with a one-hot target over the in-batch candidates
(:mod:`rag_relax_plugins.core.ranking_losses`). ``mask=`` leaves known false negatives out of a
row's softmax (GISTEmbed's masking, Solatorio 2024, with the guide's verdict given as a mask); the
Gaussian trainer passes one built from text identity
(:func:`rag_relax_plugins.training.gaussian_objective.false_negative_mask`), and the MaxSim
trainer's ``group_info_nce`` masks a query's other positives the same way.

Example:
    >>> import torch
    >>> q, d = torch.randn(8, 16), torch.randn(8, 16)
    >>> loss = info_nce(q, d, temperature=0.05)
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

from rag_relax_plugins.core.validation import (
    check_finite,
    check_floating,
    check_mask,
    check_ndim,
    check_nonnegative,
    check_positive,
    check_same_dtype,
)

__all__ = ["info_nce", "triplet_margin"]


def info_nce(
    query: torch.Tensor,
    docs: torch.Tensor,
    *,
    temperature: float = 0.05,
    similarity: Literal["cosine", "dot", "neg_l2"] = "cosine",
    symmetric: bool = False,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """InfoNCE with in-batch negatives (and optional hard negatives).

    Row ``i``'s positive is ``docs[i]`` (or ``docs[i, 0]``); every other document in the batch
    (all positives and all hard negatives of other rows, and row ``i``'s own hard negatives) is a
    negative.

    Args:
        query: ``(B, D) x float``.
        docs: ``(B, D)`` positives, or ``(B, 1 + M, D)`` positive followed by ``M`` hard negatives.
        temperature: softmax temperature > 0.
        similarity: ``"cosine"``, ``"dot"`` or ``"neg_l2"`` (negative squared Euclidean distance,
            for models whose retrieval geometry is Euclidean; computed from the differences, not
            the mm-based expansion, so large-norm embeddings keep their precision).
        symmetric: also add the document-to-query direction (positives only).
        mask: ``(B, B * (1 + M)) x bool`` over the candidates in the order above (row ``j``'s
            positive, then its ``M`` hard negatives), ``True`` where a candidate is left out of
            row ``i``'s softmax (a false negative); never row ``i``'s own positive. With
            ``symmetric``, positive ``j`` leaves out query ``i`` where ``mask[i, j * (1 + M)]``.
            ``None`` (the default) gives the unmasked loss bit for bit; an all-``False`` mask
            gives the same value.

    Returns:
        Scalar mean loss.
    """
    check_floating("query", query)
    check_ndim("query", query, 2)
    check_floating("docs", docs)
    check_ndim("docs", docs, (2, 3))
    check_finite("query", query)
    check_finite("docs", docs)
    temperature = check_positive("temperature", temperature)
    check_same_dtype("docs", docs, "query", query, under_autocast=True)
    b = query.shape[0]
    if docs.shape[0] != b or docs.shape[-1] != query.shape[-1]:
        raise ValueError(f"docs must be (B, D) or (B, 1+M, D) matching query {tuple(query.shape)}, got {tuple(docs.shape)}")
    if b == 0:
        raise ValueError("query must hold at least one row")
    cand = docs if docs.dim() == 2 else docs.reshape(-1, docs.shape[-1])  # (B*(1+M), D)
    per_row = 1 if docs.dim() == 2 else docs.shape[1]
    logits = _sim(query, cand, similarity) / temperature  # (B, B*(1+M))
    target = torch.arange(b, device=query.device) * per_row
    if mask is not None:
        mask = check_mask("mask", mask, "the logits (B, B * (1 + M))", logits)
        rows = torch.arange(b, device=mask.device)  # checked where the mask lives: no accelerator sync for a CPU mask
        if mask[rows, rows * per_row].any():
            raise ValueError("mask must not hide a row's own positive")
        mask = mask.to(query.device)
        logits = logits.masked_fill(mask, float("-inf"))
    loss = F.cross_entropy(logits, target)
    if symmetric:
        pos = docs if docs.dim() == 2 else docs[:, 0]
        back = _sim(pos, query, similarity) / temperature  # (B, B): positive j against query i
        if mask is not None:
            back = back.masked_fill(mask[:, ::per_row].T, float("-inf"))  # (B, B), transposed positive columns
        loss = 0.5 * (loss + F.cross_entropy(back, torch.arange(b, device=query.device)))
    return loss


def _sim(a: torch.Tensor, b: torch.Tensor, similarity: str) -> torch.Tensor:
    if similarity == "cosine":
        return F.normalize(a, dim=-1) @ F.normalize(b, dim=-1).T
    if similarity == "dot":
        return a @ b.T
    if similarity == "neg_l2":
        # cdist's default mm formula |a|^2 + |b|^2 - 2 a.b (above 25 rows) cancels catastrophically
        # for large-norm embeddings; the direct differences are exact, and their gradient at zero
        # distance is 0 (cdist's backward guards the 1 / d), so identical vectors stay finite
        if a.device.type == "cpu" and a.dtype in (torch.float16, torch.bfloat16):  # no CPU cdist for them
            return -torch.cdist(a.float(), b.float(), compute_mode="donot_use_mm_for_euclid_dist").pow(2).to(a.dtype)
        return -torch.cdist(a, b, compute_mode="donot_use_mm_for_euclid_dist").pow(2)
    raise ValueError(f"similarity must be 'cosine', 'dot' or 'neg_l2', got {similarity!r}")


def triplet_margin(
    anchor: torch.Tensor,
    positive: torch.Tensor,
    negative: torch.Tensor,
    *,
    margin: float = 1.0,
    distance: Literal["euclidean", "cosine"] = "euclidean",
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Mean of ``max(0, d(a, p) - d(a, n) + margin)``.

    Args:
        anchor, positive, negative: ``(B, D) x float`` each.
        margin: finite, >= 0 (a numpy scalar is taken as a float).
        distance: ``"euclidean"`` (L2) or ``"cosine"`` (``1 - cos``).
        mask: ``(B,) x bool``, ``True`` where a triplet is left out (its negative is a false
            negative): the mean runs over the others (``0``, still in the graph, when every
            triplet is left out). ``None`` (the default) gives the unmasked loss bit for bit.
    """
    for name, t in (("anchor", anchor), ("positive", positive), ("negative", negative)):
        check_floating(name, t)
        check_ndim(name, t, 2)
        check_finite(name, t)
    if not (anchor.shape == positive.shape == negative.shape):
        raise ValueError(
            f"anchor, positive and negative must share a shape, got {tuple(anchor.shape)}, "
            f"{tuple(positive.shape)}, {tuple(negative.shape)}"
        )
    margin = check_nonnegative("margin", margin)
    if distance == "euclidean":
        dp = (anchor - positive).norm(dim=-1)
        dn = (anchor - negative).norm(dim=-1)
    elif distance == "cosine":
        dp = 1 - F.cosine_similarity(anchor, positive, dim=-1)
        dn = 1 - F.cosine_similarity(anchor, negative, dim=-1)
    else:
        raise ValueError(f"distance must be 'euclidean' or 'cosine', got {distance!r}")
    per = F.relu(dp - dn + margin)  # (B,)
    if mask is None:
        return per.mean() if per.numel() else per.sum()  # no triplet: 0 (in the graph), not NaN
    keep = ~check_mask("mask", mask, "the triplets (B,)", per).to(per.device)
    return (per * keep).sum() / keep.sum().clamp(min=1)
