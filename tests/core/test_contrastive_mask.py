"""``mask=`` of ``info_nce`` / ``triplet_margin``: candidates (or triplets) left out of the loss."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from rag_relax_plugins.core.contrastive import info_nce, triplet_margin


def _data(b: int = 4, m: int = 2, d: int = 5, dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.randn(b, d, generator=g, dtype=dtype), torch.randn(b, 1 + m, d, generator=g, dtype=dtype)


@pytest.mark.parametrize("similarity", ["cosine", "dot", "neg_l2"])
def test_info_nce_all_false_mask_is_the_unmasked_loss_exactly(similarity) -> None:
    q, docs = _data()
    plain = info_nce(q, docs, temperature=0.3, similarity=similarity)
    none = info_nce(q, docs, temperature=0.3, similarity=similarity, mask=None)
    empty = info_nce(q, docs, temperature=0.3, similarity=similarity, mask=torch.zeros(4, 12, dtype=torch.bool))
    assert torch.equal(plain, none) and torch.equal(plain, empty)


@pytest.mark.parametrize("similarity", ["cosine", "dot", "neg_l2"])
def test_info_nce_mask_leaves_candidates_out_of_the_softmax(similarity) -> None:
    q, docs = _data()
    mask = torch.zeros(4, 12, dtype=torch.bool)
    mask[0, 4] = mask[0, 5] = mask[2, 1] = True
    got = info_nce(q, docs, temperature=0.3, similarity=similarity, mask=mask)
    cand = docs.reshape(-1, 5)
    if similarity == "cosine":
        sim = F.normalize(q, dim=-1) @ F.normalize(cand, dim=-1).T
    elif similarity == "dot":
        sim = q @ cand.T
    else:
        sim = -torch.cdist(q, cand).pow(2)
    rows = []
    for i in range(4):  # reference: drop the masked columns of each row
        keep = ~mask[i]
        logits = sim[i][keep] / 0.3
        target = int(keep[: 3 * i].sum())  # the positive's position among the kept columns
        rows.append(torch.logsumexp(logits, 0) - logits[target])
    assert got == pytest.approx(float(torch.stack(rows).mean()), rel=1e-6)


def test_info_nce_mask_two_dim_docs_and_gradcheck() -> None:
    q, docs = _data(dtype=torch.float64)
    pos = docs[:, 0].clone()
    mask = torch.zeros(4, 4, dtype=torch.bool)
    mask[1, 3] = True
    q.requires_grad_(True)
    pos.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a, b: info_nce(a, b, temperature=0.5, similarity="neg_l2", mask=mask), (q, pos))
    assert torch.autograd.gradcheck(lambda a, b: info_nce(a, b, temperature=0.5, symmetric=True, mask=mask), (q, pos))


def test_info_nce_symmetric_mask_applies_to_the_reverse_direction_too() -> None:
    q, docs = _data()
    pos = docs[:, 0]
    mask = torch.zeros(4, 4, dtype=torch.bool)
    mask[1, 3] = True  # positive 3 left out for query 1: query 1 is left out for positive 3
    got = info_nce(q, pos, temperature=0.3, symmetric=True, mask=mask)
    fwd = info_nce(q, pos, temperature=0.3, mask=mask)
    rev = info_nce(pos, q, temperature=0.3, mask=mask.T.contiguous())
    assert got == pytest.approx(float(0.5 * (fwd + rev)), rel=1e-6)


def test_info_nce_mask_validation() -> None:
    q, docs = _data()
    with pytest.raises(ValueError, match="mask"):
        info_nce(q, docs, mask=torch.zeros(4, 11, dtype=torch.bool))
    with pytest.raises(TypeError, match="mask must be a bool tensor"):
        info_nce(q, docs, mask=torch.zeros(4, 12))
    own = torch.zeros(4, 12, dtype=torch.bool)
    own[2, 6] = True  # row 2's own positive
    with pytest.raises(ValueError, match="own positive"):
        info_nce(q, docs, mask=own)


@pytest.mark.parametrize("distance", ["euclidean", "cosine"])
def test_triplet_mask_drops_triplets(distance) -> None:
    g = torch.Generator().manual_seed(1)
    a, p, n = (torch.randn(6, 3, generator=g) for _ in range(3))
    mask = torch.tensor([False, True, False, False, True, False])
    got = triplet_margin(a, p, n, margin=2.0, distance=distance, mask=mask)
    keep = ~mask
    ref = triplet_margin(a[keep], p[keep], n[keep], margin=2.0, distance=distance)
    assert got == pytest.approx(float(ref), rel=1e-6)
    plain = triplet_margin(a, p, n, margin=2.0, distance=distance)
    assert torch.equal(plain, triplet_margin(a, p, n, margin=2.0, distance=distance, mask=None))
    nothing = triplet_margin(a, p, n, margin=2.0, distance=distance, mask=torch.zeros(6, dtype=torch.bool))
    assert float(nothing) == pytest.approx(float(plain), rel=1e-6)
    a.requires_grad_(True)
    every = triplet_margin(a, p, n, margin=2.0, distance=distance, mask=torch.ones(6, dtype=torch.bool))
    assert float(every.detach()) == 0.0
    every.backward()  # still part of the graph
    assert a.grad is not None and not a.grad.any()
    with pytest.raises(ValueError, match="mask"):
        triplet_margin(a, p, n, mask=torch.zeros(5, dtype=torch.bool))
    with pytest.raises(TypeError, match="mask must be a bool tensor"):
        triplet_margin(a, p, n, mask=torch.zeros(6))
