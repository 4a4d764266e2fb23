from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from rag_relax_plugins.core.maxsim import maxsim, maxsim_packed, maxsim_pairwise


def ref_maxsim(q, q_mask, d, d_mask, weights=None, cosine=False):
    """Loop over queries, documents, and query tokens."""
    b, n = q.shape[0], d.shape[0]
    out = torch.zeros(b, n, dtype=q.dtype)
    for i in range(b):
        for j in range(n):
            total = 0.0
            for t in range(q.shape[1]):
                if not q_mask[i, t]:
                    continue
                best = None
                for u in range(d.shape[1]):
                    if not d_mask[j, u]:
                        continue
                    a, c = q[i, t], d[j, u]
                    s = float(a @ c) if not cosine else float(a @ c / (a.norm() * c.norm()))
                    best = s if best is None else max(best, s)
                w = 1.0 if weights is None else float(weights[i, t])
                total += w * (best if best is not None else 0.0)
            out[i, j] = total
    return out


def _rand(seed, b=2, lq=4, n=5, ld=6, dim=3, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(b, lq, dim, generator=g, dtype=dtype)
    d = torch.randn(n, ld, dim, generator=g, dtype=dtype)
    qm = torch.rand(b, lq, generator=g) > 0.3
    dm = torch.rand(n, ld, generator=g) > 0.3
    qm[:, 0] = True
    dm[:, 0] = True
    return q, qm, d, dm


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("cosine", [False, True])
def test_padded_matches_reference(seed, cosine):
    q, qm, d, dm = _rand(seed)
    w = torch.rand(q.shape[:2], dtype=q.dtype)
    out = maxsim(q, d, q_mask=qm, d_mask=dm, similarity="cosine" if cosine else "dot", query_weights=w, chunk_size=2)
    torch.testing.assert_close(out, ref_maxsim(q, qm, d, dm, w, cosine))


def test_padding_never_wins_and_empty_docs_score_zero():
    q = torch.ones(1, 1, 2)
    d = torch.tensor([[[-1.0, -1.0], [100.0, 100.0]], [[5.0, 5.0], [0.0, 0.0]]])
    dm = torch.tensor([[True, False], [False, False]])
    out = maxsim(q, d, d_mask=dm)
    assert out.tolist() == [[-2.0, 0.0]]


def test_pairwise_and_packed_agree_with_padded():
    q, qm, d, dm = _rand(7, b=3, n=3)
    full = maxsim(q, d, q_mask=qm, d_mask=dm)
    torch.testing.assert_close(maxsim_pairwise(q, d, q_mask=qm, d_mask=dm), full.diagonal())
    lengths = dm.sum(1)
    # pack: keep each document's valid tokens, back to back
    tokens = torch.cat([d[i][dm[i]] for i in range(d.shape[0])])
    offsets = torch.cat([torch.zeros(1, dtype=torch.long), lengths.cumsum(0)])
    torch.testing.assert_close(maxsim_packed(q, tokens, offsets, q_mask=qm), full)
    torch.testing.assert_close(
        maxsim_packed(q, tokens, offsets, q_mask=qm, similarity="cosine"),
        maxsim(q, d, q_mask=qm, d_mask=dm, similarity="cosine"),
    )


def test_packed_handles_empty_document():
    q = torch.ones(1, 2, 2)
    tokens = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    offsets = torch.tensor([0, 1, 1, 2])
    assert maxsim_packed(q, tokens, offsets).tolist() == [[2.0, 0.0, 4.0]]


def test_gradcheck_all_forms():
    q, qm, d, dm = _rand(3, b=2, lq=3, n=2, ld=3, dim=2)
    q.requires_grad_()
    d.requires_grad_()
    assert torch.autograd.gradcheck(lambda a, b: maxsim(a, b, q_mask=qm, d_mask=dm, similarity="cosine"), (q, d))
    assert torch.autograd.gradcheck(lambda a, b: maxsim_pairwise(a, b, q_mask=qm, d_mask=dm), (q, d))
    tokens = torch.randn(5, 2, dtype=torch.float64, requires_grad=True)
    offsets = torch.tensor([0, 2, 5])
    assert torch.autograd.gradcheck(lambda a, t: maxsim_packed(a, t, offsets, q_mask=qm), (q, tokens))


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 10_000), st.integers(1, 6), st.integers(1, 7))
def test_extra_padding_does_not_change_scores(seed, lq, ld):
    q, qm, d, dm = _rand(seed, lq=lq, ld=ld)
    base = maxsim(q, d, q_mask=qm, d_mask=dm)
    pad_d = torch.cat([d, torch.randn(d.shape[0], 3, d.shape[2], dtype=d.dtype) * 100], dim=1)
    pad_dm = torch.cat([dm, torch.zeros(dm.shape[0], 3, dtype=torch.bool)], dim=1)
    torch.testing.assert_close(maxsim(q, pad_d, q_mask=qm, d_mask=pad_dm), base)


def test_bad_input():
    q, d = torch.randn(1, 2, 3), torch.randn(4, 5, 3)
    with pytest.raises(ValueError, match="share the embedding dimension"):
        maxsim(q, torch.randn(4, 5, 2))
    with pytest.raises(ValueError, match="q must be 3-D"):
        maxsim(torch.randn(2, 3), d)
    with pytest.raises(TypeError, match="d_mask must be a bool tensor"):
        maxsim(q, d, d_mask=torch.ones(4, 5))
    with pytest.raises(ValueError, match="d_mask must have shape"):
        maxsim(q, d, d_mask=torch.ones(4, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="NaN or inf"):
        maxsim(q, d.clone().fill_(float("nan")))
    with pytest.raises(TypeError, match="floating-point"):
        maxsim(q.long(), d)
    with pytest.raises(ValueError, match="similarity"):
        maxsim(q, d, similarity="l2")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="doc_offsets"):
        maxsim_packed(q, torch.randn(5, 3), torch.tensor([0, 2, 4]))
    with pytest.raises(ValueError, match="query_weights"):
        maxsim(q, d, query_weights=torch.ones(1, 3))
