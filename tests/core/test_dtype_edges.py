"""Half precision, mixed dtypes and 'meta' tensors at the core ops (review 2026-12-05).

Each case was a silent wrong figure (bfloat16 SIGReg, float16 MI loss and covariance penalty,
NaN Gaussian scores) or an obscure torch error (mixed dtypes, 'meta' tensors, a bad ``dim``).
"""

from __future__ import annotations

import pytest
import torch

from rag_relax_plugins.core.contrastive import info_nce
from rag_relax_plugins.core.gumbel import gumbel_softmax
from rag_relax_plugins.core.isotropy import covariance_isotropy_penalty, epps_pulley, sigreg
from rag_relax_plugins.core.mol import MoLConfig, MoLSimilarity, mol_mi_loss
from rag_relax_plugins.core.softsort import soft_rank
from rag_relax_plugins.embedders.gaussian_geometry import geometry_scores

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_sigreg_of_bfloat16_embeddings_is_not_biased_by_the_row_count() -> None:
    # N * |phi_N - phi|^2 with phi_N kept in bfloat16: 1.09 for 0.70 at N = 70,000
    x = torch.randn(70_000, 8, generator=torch.Generator().manual_seed(0)).bfloat16()
    got = sigreg(x, num_slices=4)
    assert got.dtype == torch.bfloat16
    want = sigreg(x.double(), num_slices=4).item()  # the same values, computed in float64
    assert abs(got.item() - want) < 0.01
    z = x[:, :2]
    assert torch.allclose(epps_pulley(z).double(), epps_pulley(z.double()), rtol=1e-2)


def test_covariance_penalty_of_many_float16_rows_is_finite() -> None:
    x = torch.randn(70_000, 8, generator=torch.Generator().manual_seed(1))
    got = covariance_isotropy_penalty(x.half())  # xc.T @ xc passed 65504: inf
    assert got.dtype == torch.float16
    assert got.item() == pytest.approx(covariance_isotropy_penalty(x.half().float()).item(), rel=1e-2, abs=1e-4)


def test_mi_loss_of_float16_weights_with_an_underflowed_weight_is_finite() -> None:
    w = torch.softmax(torch.tensor([[0.0, 20.0, 1.0], [3.0, 0.0, 0.0]]), dim=-1)
    half = w.half().requires_grad_(True)
    loss = mol_mi_loss(half)  # eps 1e-9 is 0 in float16: 0 * log 0 = NaN
    loss.backward()
    assert loss.dtype == torch.float16 and torch.isfinite(half.grad).all()
    assert loss.item() == pytest.approx(mol_mi_loss(w.half().float()).item(), abs=2e-3)


def test_gaussian_geometry_scores_check_their_inputs() -> None:
    q, d = torch.randn(2, 6), torch.randn(5, 6)
    for geometry in ("euclidean", "inner_product"):
        want = geometry_scores(q, d, geometry)
        half = geometry_scores(q.half(), d.half(), geometry)  # cdist has no CPU half kernel
        assert half.dtype == torch.float16 and torch.allclose(half.float(), want, atol=0.05, rtol=1e-2)
        bad = q.clone()
        bad[1, 2] = float("nan")
        with pytest.raises(ValueError, match="NaN or inf"):
            geometry_scores(bad, d, geometry)
        with pytest.raises(TypeError, match=r"docs must have the dtype of queries \(torch.float32\), got torch.float64"):
            geometry_scores(q, d.double(), geometry)
        with pytest.raises(TypeError, match="queries must be a floating-point tensor"):
            geometry_scores(q.long(), d.long(), geometry)


def test_mol_features_of_another_dtype_are_refused_by_name_unless_autocast() -> None:
    sim = MoLSimilarity(MoLConfig(query_dim=8, item_dim=8, num_query_embeddings=2, num_item_embeddings=2,
                                  component_dim=4)).eval()
    q, x = torch.randn(3, 8), torch.randn(5, 8)
    with pytest.raises(TypeError, match=r"query_features must have the similarity's dtype torch.float32, got torch.float64"):
        sim.encode_queries(q.double())
    with pytest.raises(TypeError, match="item_features must have the similarity's dtype"):
        sim.encode_items(x.bfloat16())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert sim.encode_queries(q.bfloat16()) is not None  # autocast casts for the matmuls itself


@pytest.mark.filterwarnings("ignore::UserWarning", "ignore::DeprecationWarning")
def test_a_dynamically_quantized_mol_similarity_still_scores() -> None:
    # the dtype check read query_proj.weight.dtype: a method on a quantized Linear (diff review)
    from rag_relax_plugins.index import MoLIndex

    torch.manual_seed(0)
    sim = MoLSimilarity(MoLConfig(query_dim=8, item_dim=8, num_query_embeddings=2, num_item_embeddings=2,
                                  component_dim=4)).eval()
    quantize = getattr(getattr(torch.ao, "quantization", None), "quantize_dynamic", None)
    if quantize is None:
        pytest.skip("this torch has no torch.ao.quantization.quantize_dynamic")
    quantized = quantize(sim, {torch.nn.Linear}, dtype=torch.qint8)
    index = MoLIndex(quantized, device="cpu")
    index.add([f"d{i}" for i in range(20)], torch.randn(20, 8))
    scores, ids = index.search(torch.randn(2, 8), 3)
    assert len(ids) == 2 and all(len(row) == 3 for row in ids) and bool(torch.isfinite(scores).all())
    with pytest.raises(TypeError, match=r"query_features must have the similarity's dtype torch\.float32"):
        quantized.encode_queries(torch.randn(2, 8, dtype=torch.float64))  # a quantized Linear takes float32


def test_info_nce_refuses_mixed_dtypes_by_name() -> None:
    q, d = torch.randn(4, 6), torch.randn(4, 6)
    for similarity in ("cosine", "dot", "neg_l2"):
        with pytest.raises(TypeError, match=r"docs must have the dtype of query \(torch.float32\), got torch.float64"):
            info_nce(q, d.double(), similarity=similarity)


def test_meta_tensors_are_refused_clearly() -> None:
    meta = torch.empty(2, 5, device="meta")
    for op in (soft_rank, gumbel_softmax, sigreg):
        with pytest.raises(ValueError, match="is on the 'meta' device"):
            op(meta)


def test_gumbel_softmax_names_a_bad_dim() -> None:
    logits = torch.randn(2, 3)
    with pytest.raises(ValueError, match=r"dim must be an int in \[-2, 1\] for logits of shape \(2, 3\), got 5"):
        gumbel_softmax(logits, dim=5)  # was IndexError: tuple index out of range
    with pytest.raises(ValueError, match="dim must be an int"):
        gumbel_softmax(logits, dim=True)
    assert gumbel_softmax(logits, dim=-2).sum(0).allclose(torch.ones(3))
    import numpy as np

    for dim in (np.int64(-1), np.int32(1), torch.tensor(1)):  # integers torch takes (diff review)
        assert gumbel_softmax(logits, dim=dim).sum(1).allclose(torch.ones(2))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="dim must be an int"):
        gumbel_softmax(logits, dim="x")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="at least one class"):
        gumbel_softmax(torch.tensor(1.0), dim=-1)  # 0-d: the class message, whatever dim
