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


def _three_forms(q: torch.Tensor, d: torch.Tensor, d_mask: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """Score the aligned pairs ``q[i]``, ``d[i]`` in each layout (the packed one from the mask)."""
    dm = torch.ones(d.shape[:2], dtype=torch.bool) if d_mask is None else d_mask
    lengths = dm.sum(dim=1)
    offsets = torch.cat([torch.zeros(1, dtype=torch.long), torch.cumsum(lengths, 0)])
    packed = maxsim_packed(q, d[dm], offsets)  # (B, N): row i against every document
    return {
        "maxsim": maxsim(q, d, d_mask=d_mask).diagonal(),
        "maxsim_pairwise": maxsim_pairwise(q, d, d_mask=d_mask),
        "maxsim_packed": packed.diagonal(),
    }


@pytest.mark.parametrize("form", ["maxsim", "maxsim_pairwise", "maxsim_packed"])
def test_a_minus_inf_similarity_is_an_error_not_an_empty_document(form):
    """-inf from a valid token used to be taken for 'no valid token' and scored 0 (review 2026-12)."""
    q = torch.tensor([[[1.0, 0.0]]])
    d = torch.tensor([[[float("-inf"), 0.0]]])
    with pytest.raises(ValueError, match="NaN or inf"):
        _three_forms(q, d)[form]
    with pytest.raises(ValueError, match="NaN or inf"):  # masked: the -inf token is a valid one
        _three_forms(q, torch.tensor([[[float("-inf"), 0.0], [0.0, 0.0]]]), torch.tensor([[True, False]]))[form]
    # float16: finite tokens whose product overflows below -65504, as the positive overflow does
    qh = torch.tensor([[[300.0, 0.0]]], dtype=torch.float16)
    dh = torch.tensor([[[-300.0, 0.0]]], dtype=torch.float16)
    with pytest.raises(ValueError, match=r"overflows torch\.float16"):
        _three_forms(qh, dh)[form]
    with pytest.raises(ValueError, match=r"overflows torch\.float16"):
        _three_forms(qh, -dh)[form]


@pytest.mark.parametrize("form", ["maxsim", "maxsim_pairwise", "maxsim_packed"])
def test_documents_without_a_valid_token_still_score_zero(form):
    g = torch.Generator().manual_seed(0)
    q, d = torch.randn(3, 2, 4, generator=g), torch.randn(3, 5, 4, generator=g)
    dm = torch.tensor([[True, False, True, False, False], [False] * 5, [True] * 5])
    out = _three_forms(q, d, dm)[form]
    assert out[1].item() == 0.0
    want = torch.stack([(q[i] @ d[i][dm[i]].T).amax(dim=1).sum() for i in (0, 2)])
    torch.testing.assert_close(out[[0, 2]], want)



def test_nan_in_the_padding_of_an_empty_document_still_raises_in_maxsim():
    """The mask fix of 2026-12-03 zeroed every empty document by mask, which also hid a NaN in its
    padding (the fused bias keeps it): only a -inf best (the bias alone) is an empty score now."""
    q, d = torch.randn(1, 2, 4), torch.randn(2, 3, 4)
    d[1] = float("nan")
    dm = torch.tensor([[True, True, False], [False, False, False]])
    with pytest.raises(ValueError, match="NaN or inf"):
        maxsim(q, d, d_mask=dm)
    d[1] = 0.0  # finite padding: the empty document scores 0
    assert maxsim(q, d, d_mask=dm)[0, 1].item() == 0.0

@pytest.mark.parametrize("bad", [2.0, True, 0, "8", None])
def test_maxsim_chunk_size_is_checked_by_name(bad):
    q, d = torch.randn(1, 2, 3), torch.randn(4, 2, 3)
    with pytest.raises(ValueError, match="chunk_size must be an int >= 1"):
        maxsim(q, d, chunk_size=bad)


def test_maxsim_chunk_size_takes_numpy_integers():
    np = pytest.importorskip("numpy")
    q, d = torch.randn(1, 2, 3), torch.randn(4, 2, 3)
    torch.testing.assert_close(maxsim(q, d, chunk_size=np.int64(3)), maxsim(q, d, chunk_size=3))
