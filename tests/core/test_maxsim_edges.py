"""MaxSim edge cases: empty documents, dtype mismatch, argument types, chunking, padded gradients."""

from __future__ import annotations

import pytest
import torch

from rag_relax_plugins.core.maxsim import maxsim, maxsim_packed, maxsim_pairwise


def test_zero_length_documents_score_zero():
    q = torch.randn(2, 3, 4)
    assert maxsim(q, torch.randn(5, 0, 4)).tolist() == [[0.0] * 5] * 2
    assert maxsim_pairwise(q, torch.randn(2, 0, 4)).tolist() == [0.0, 0.0]
    assert maxsim_packed(q, torch.randn(0, 4), torch.tensor([0])).shape == (2, 0)
    assert maxsim_packed(q, torch.randn(0, 4), torch.tensor([0, 0, 0])).tolist() == [[0.0, 0.0]] * 2
    assert maxsim(q, torch.randn(0, 6, 4)).shape == (2, 0)
    # arguments are checked even when every document is empty
    with pytest.raises(ValueError, match="similarity must be"):
        maxsim_pairwise(q, torch.randn(2, 0, 4), similarity="bogus")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="query_weights must have shape"):
        maxsim_pairwise(q, torch.randn(2, 0, 4), query_weights=torch.ones(7, 7))


def test_float64_query_weights_keep_the_tokens_dtype():
    q, d = torch.randn(2, 3, 4), torch.randn(5, 6, 4)
    w = torch.rand(2, 3, dtype=torch.float64)
    out = maxsim(q, d, query_weights=w)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, maxsim(q, d, query_weights=w.float()))
    assert maxsim_pairwise(q, d[:2], query_weights=w).dtype == torch.float32


def test_dtype_mismatch_and_offset_type_are_type_errors():
    q = torch.randn(1, 2, 3)
    with pytest.raises(TypeError, match="d must have the dtype of q"):
        maxsim(q, torch.randn(4, 5, 3, dtype=torch.float64))
    with pytest.raises(TypeError, match="d must have the dtype of q"):
        maxsim_pairwise(q, torch.randn(1, 5, 3, dtype=torch.float64))
    with pytest.raises(TypeError, match="doc_tokens must have the dtype of q"):
        maxsim_packed(q, torch.randn(4, 3, dtype=torch.float64), torch.tensor([0, 4]))
    with pytest.raises(TypeError, match=r"doc_offsets must be a torch\.Tensor"):
        maxsim_packed(q, torch.randn(4, 3), [0, 4])  # type: ignore[arg-type]


@pytest.mark.parametrize("chunk", [1, 2, 3, 7, 100])
def test_chunking_does_not_change_scores(chunk):
    g = torch.Generator().manual_seed(0)
    q, d = torch.randn(3, 4, 5, generator=g), torch.randn(7, 6, 5, generator=g)
    dm = torch.rand(7, 6, generator=g) > 0.4
    torch.testing.assert_close(maxsim(q, d, d_mask=dm, chunk_size=chunk), maxsim(q, d, d_mask=dm, chunk_size=1000))


def test_padded_tokens_get_no_gradient():
    g = torch.Generator().manual_seed(1)
    q = torch.randn(2, 3, 4, generator=g, requires_grad=True)
    d = torch.randn(5, 6, 4, generator=g, requires_grad=True)
    qm = torch.tensor([[True, True, False], [True, False, False]])
    dm = torch.ones(5, 6, dtype=torch.bool)
    dm[:, 4:] = False
    maxsim(q, d, q_mask=qm, d_mask=dm).sum().backward()
    assert float(d.grad[:, 4:].abs().sum()) == 0.0
    assert float(q.grad[~qm].abs().sum()) == 0.0
    assert float(d.grad[:, :4].abs().sum()) > 0.0


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_query_weights_are_named(bad):
    # the output check blamed "q or d" for a NaN/inf weight (review 2026-12-02)
    q, d = torch.randn(2, 3, 4), torch.randn(2, 5, 4)
    w = torch.ones(2, 3)
    w[1, 2] = bad
    offsets = torch.tensor([0, 5, 10])
    calls = (
        lambda qw: maxsim(q, d, query_weights=qw),
        lambda qw: maxsim_pairwise(q, d, query_weights=qw),
        lambda qw: maxsim_packed(q, d.reshape(10, 4), offsets, query_weights=qw),
    )
    for call in calls:
        with pytest.raises(ValueError, match="query_weights contains NaN or inf"):
            call(w)
    # finite weights: the documented weighted sum over query tokens
    ok = torch.rand(2, 3, generator=torch.Generator().manual_seed(0))
    sim = torch.einsum("bqd,ntd->bnqt", q, d).amax(-1)  # (B, N, Lq)
    torch.testing.assert_close(calls[0](ok), (sim * ok.unsqueeze(1)).sum(-1))
