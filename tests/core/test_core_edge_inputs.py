"""Regression tests for the core review s17: half precision, cdist precision, numpy scalars,
empty batches, MoL with one pair, MoL input checks."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from rag_relax_plugins.core import metrics
from rag_relax_plugins.core.contrastive import info_nce
from rag_relax_plugins.core.gumbel import hard_topk_mask, relaxed_topk
from rag_relax_plugins.core.mol import MoLConfig, MoLSimilarity
from rag_relax_plugins.core.ranking_losses import (
    approx_ndcg_loss,
    lambda_loss,
    neural_ndcg_loss,
)
from rag_relax_plugins.core.softsort import neural_sort
from rag_relax_plugins.core.validation import check_k, check_positive

# ----------------------------------------------------------------- 1. half precision


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_neural_sort_half_precision_matches_float32(dtype: torch.dtype) -> None:
    # (n + 1 - 2i) s - A_s 1 reaches ~1e5 here: float16 overflowed to inf and gave 2350 NaN entries
    s = torch.randn(1, 50, generator=torch.Generator().manual_seed(0)) * 100
    s = s.to(dtype)  # the same (rounded) scores for both runs
    got = neural_sort(s, tau=0.01)
    assert got.dtype == dtype
    assert bool(torch.isfinite(got).all())
    want = neural_sort(s.float(), tau=0.01)
    torch.testing.assert_close(got.float(), want, atol=1e-2, rtol=0)


@pytest.mark.parametrize("scale, tau", [(100.0, 0.01), (1000.0, 1.0)])
def test_neural_ndcg_float16_large_scores_match_float32(scale: float, tau: float) -> None:
    g = torch.Generator().manual_seed(0)
    s = (torch.randn(2, 40, generator=g) * scale).half()
    r = torch.randint(0, 3, (2, 40), generator=g).half()
    got = neural_ndcg_loss(s, r, temperature=tau)
    assert got.dtype == torch.float16
    want = neural_ndcg_loss(s.float(), r.float(), temperature=tau)
    assert float(got) == pytest.approx(float(want), abs=2e-3)


@pytest.mark.parametrize("loss", [approx_ndcg_loss, neural_ndcg_loss, lambda_loss])
def test_ndcg_losses_float16_gain_of_relevance_20_does_not_overflow(loss: Callable[..., torch.Tensor]) -> None:
    # 2^20 - 1 is above float16's max (65504): the gain was inf and the loss NaN
    s = torch.tensor([[1.0, 2.0, 3.0]], requires_grad=True)
    r = torch.tensor([[20.0, 0.0, 1.0]])
    s16 = s.detach().half().requires_grad_(True)
    got = loss(s16, r.half())
    assert got.dtype == torch.float16 and bool(torch.isfinite(got))
    want = loss(s, r)
    assert float(got.detach()) == pytest.approx(float(want.detach()), rel=2e-3)
    got.backward()
    assert s16.grad is not None and bool(torch.isfinite(s16.grad).all())


# ----------------------------------------------------------------- 2. neg_l2 precision


def test_info_nce_neg_l2_keeps_precision_for_large_norm_embeddings() -> None:
    # above 25 rows cdist used |a|^2 + |b|^2 - 2 a.b, which cancels for norms ~160 and squared
    # distances ~0.01: float32 gave 3.03 against float64's 0.086
    g = torch.Generator().manual_seed(0)
    q = torch.randn(32, 256, generator=g) * 10
    pos = q + 0.005 * torch.randn(32, 256, generator=g)
    neg = q + 0.006 * torch.randn(32, 256, generator=g)
    docs = torch.stack([pos, neg], 1)
    got = info_nce(q, docs, similarity="neg_l2", temperature=1e-3)
    want = info_nce(q.double(), docs.double(), similarity="neg_l2", temperature=1e-3)
    assert float(got) == pytest.approx(float(want), rel=1e-3)


def test_info_nce_neg_l2_identical_vectors_give_finite_gradients_above_25_rows() -> None:
    q = torch.randn(40, 8, generator=torch.Generator().manual_seed(1), requires_grad=True)
    d = q.detach().clone().requires_grad_(True)
    info_nce(q, d, similarity="neg_l2", symmetric=True).backward()
    assert q.grad is not None and d.grad is not None
    assert bool(torch.isfinite(q.grad).all()) and bool(torch.isfinite(d.grad).all())


# ----------------------------------------------------------------- 3. numpy scalars


def test_check_k_and_check_positive_accept_numpy_scalars_as_python_numbers() -> None:
    k = check_k("k", np.int64(3), 5)
    assert k == 3 and type(k) is int
    t = check_positive("tau", np.float32(0.5))
    assert t == 0.5 and type(t) is float
    assert type(check_positive("tau", np.int32(2))) is float
    with pytest.raises(TypeError, match="k must be an int"):
        check_k("k", True)
    with pytest.raises(TypeError, match="k must be an int"):
        check_k("k", np.float64(2.0))
    with pytest.raises(TypeError, match="tau must be a number"):
        check_positive("tau", np.bool_(True))
    with pytest.raises(ValueError, match="k must be <= 5"):
        check_k("k", np.int64(6), 5)
    with pytest.raises(ValueError, match="tau must be a finite number > 0"):
        check_positive("tau", np.float32("nan"))


def test_ops_accept_numpy_k_and_tau() -> None:
    s = torch.tensor([0.3, 2.0, -1.0, 1.0])
    torch.testing.assert_close(hard_topk_mask(s, np.int64(2)), torch.tensor([0.0, 1.0, 0.0, 1.0]))
    m = relaxed_topk(s, np.int64(2), mode="subset", tau=np.float32(0.5), add_noise=False)
    assert float(m.sum()) == pytest.approx(2.0, abs=1e-5)
    r = torch.tensor([[2.0, 0.0, 1.0, 3.0]])
    got = approx_ndcg_loss(s.unsqueeze(0), r, k=np.int64(2), temperature=np.float32(0.1))
    assert float(got) == pytest.approx(float(approx_ndcg_loss(s.unsqueeze(0), r, k=2)))
    q, d = torch.randn(3, 4), torch.randn(3, 4)
    assert float(info_nce(q, d, temperature=np.float32(0.1))) == pytest.approx(float(info_nce(q, d, temperature=0.1)), rel=1e-6)


def test_metrics_accept_numpy_k_and_return_python_floats() -> None:
    ranking, qrels = ["a", "b", "c"], {"b": 1.0, "z": 2.0}
    got = metrics.precision_at_k(ranking, qrels, np.int64(2))
    assert got == 0.5 and type(got) is float
    assert metrics.recall_at_k(ranking, qrels, np.int64(1)) == 0.0
    assert metrics.ndcg_at_k(ranking, qrels, np.int64(3)) == pytest.approx(
        metrics.ndcg_at_k(ranking, qrels, 3)
    )
    with pytest.raises(TypeError, match="k must be an int"):
        metrics.recall_at_k(ranking, qrels, True)
    with pytest.raises(ValueError, match="k must be >= 1"):
        metrics.recall_at_k(ranking, qrels, np.int64(0))


# ----------------------------------------------------------------- 4. empty batch


@pytest.mark.parametrize("mode", ["l2x", "subset", "straight_through"])
def test_relaxed_topk_empty_batch_gives_empty_mask(mode: str) -> None:
    s = torch.zeros(0, 5, requires_grad=True)
    out = relaxed_topk(s, 2, mode=mode)  # type: ignore[arg-type]
    assert out.shape == (0, 5) and out.dtype == s.dtype
    out.sum().backward()
    assert s.grad is not None and s.grad.shape == (0, 5)
    masked = relaxed_topk(s, 2, mode=mode, mask=torch.zeros(0, 5, dtype=torch.bool))  # type: ignore[arg-type]
    assert masked.shape == (0, 5)
    with pytest.raises(ValueError, match="k must be <= 5"):
        relaxed_topk(s, 6, mode=mode)  # type: ignore[arg-type]


def test_hard_topk_mask_empty_batch_gives_empty_mask() -> None:
    out = hard_topk_mask(torch.zeros(0, 5), 2)
    assert out.shape == (0, 5)
    with pytest.raises(ValueError, match="k must be <= 5"):
        hard_topk_mask(torch.zeros(0, 5), 6)


# ----------------------------------------------------------------- 5./6. MoL


def _mol(p_q: int, p_x: int, **kw: object) -> MoLSimilarity:
    torch.manual_seed(0)
    cfg = MoLConfig(
        query_dim=8,
        item_dim=6,
        num_query_embeddings=p_q,
        num_item_embeddings=p_x,
        component_dim=5,
        gate_hidden_dim=7,
        **kw,  # type: ignore[arg-type]
    )
    return MoLSimilarity(cfg)


def test_mol_single_pair_train_mode_with_softmax_dropout_is_scaled_dot_product() -> None:
    # dropping the only gate weight gave scores of 0 or <f, g> / ((1 - p) tau)
    sim = _mol(1, 1, tau=0.05, softmax_dropout=0.5).train()
    q, x = torch.randn(4, 8), torch.randn(9, 6)
    torch.manual_seed(1)
    scores, _ = sim(q, x)
    f = F.normalize(sim.query_proj(q), dim=-1)
    g = F.normalize(sim.item_proj(x), dim=-1)
    torch.testing.assert_close(scores, f @ g.T / 0.05)


def test_mol_softmax_dropout_still_applies_with_several_pairs() -> None:
    sim = _mol(2, 2, softmax_dropout=0.5)
    q, x = torch.randn(4, 8), torch.randn(9, 6)
    eval_scores, _ = sim.eval()(q, x)
    sim.train()
    torch.manual_seed(1)
    train_scores, _ = sim(q, x)
    assert not torch.allclose(train_scores, eval_scores)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
@pytest.mark.parametrize("which", ["query_features", "item_features"])
def test_mol_forward_rejects_non_finite_features(which: str, bad: float) -> None:
    sim = _mol(2, 3).eval()
    q, x = torch.randn(4, 8), torch.randn(9, 6)
    (q if which == "query_features" else x)[1, 2] = bad
    with pytest.raises(ValueError, match=f"{which} contains NaN or inf"):
        sim(q, x)


@pytest.mark.parametrize("dtype", [torch.int32, torch.int64, torch.int16, torch.uint8])
def test_mol_positives_accept_any_integer_dtype(dtype: torch.dtype) -> None:
    sim = _mol(2, 3).train()
    q, x = torch.randn(3, 8), torch.randn(5, 6)
    pos = torch.tensor([4, 0, 2])
    _, want = sim(q, x, positives=pos)
    _, got = sim(q, x, positives=pos.to(dtype))
    torch.testing.assert_close(got["mol_mi"], want["mol_mi"])


def test_mol_positives_error_names_the_dtype() -> None:
    sim = _mol(2, 3).train()
    q, x = torch.randn(3, 8), torch.randn(5, 6)
    with pytest.raises(ValueError, match=r"integer tensor, got \(3,\) torch.float32"):
        sim(q, x, positives=torch.tensor([0.0, 1.0, 2.0]))
    with pytest.raises(ValueError, match=r"got \(2,\) torch.int64"):
        sim(q, x, positives=torch.tensor([0, 1]))
    with pytest.raises(ValueError, match=r"torch\.bool"):
        sim(q, x, positives=torch.tensor([True, False, True]))


def test_the_mask_hint_only_where_there_is_a_mask() -> None:
    """A NaN feature given to the MoL index was answered with "pass a mask for invalid positions",
    but neither MoLIndex.add nor search takes a mask; ops with a mask argument keep the hint."""
    from rag_relax_plugins.core.gumbel import relaxed_topk
    from rag_relax_plugins.core.mol import MoLConfig, MoLSimilarity
    from rag_relax_plugins.index import MoLIndex

    idx = MoLIndex(MoLSimilarity(MoLConfig(query_dim=4, item_dim=4)), device="cpu")
    bad = torch.tensor([[1.0, float("nan"), 0.0, 0.0]])
    with pytest.raises(ValueError, match="contains NaN or inf values") as raised:
        idx.add(["a"], bad)
    assert "mask" not in str(raised.value)
    with pytest.raises(ValueError, match="scores contains NaN or inf values; pass a mask for invalid positions"):
        relaxed_topk(bad, 1)


# ------------------------------------------------------- 2026-12-04 review of the core (s26)


def test_sigmoid_topk_mask_half_precision_threshold_does_not_overflow() -> None:
    """The threshold 0.5 (a + b) of two fp16 scores summing past 65504 was inf: an all-0 mask."""
    from rag_relax_plugins.core.softsort import sigmoid_topk_mask

    scores = torch.tensor([40000.0, 30000.0, 0.0])
    half = sigmoid_topk_mask(scores.half(), 1, 100.0)
    assert half.dtype == torch.float16
    torch.testing.assert_close(half.float(), sigmoid_topk_mask(scores, 1, 100.0), atol=1e-3, rtol=0)
    assert half[0] > 0.99


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_info_nce_neg_l2_runs_in_half_precision_on_cpu(dtype: torch.dtype) -> None:
    """cdist has no CPU kernel for half types: NotImplementedError (cosine and dot worked)."""
    g = torch.Generator().manual_seed(0)
    q, d = torch.randn(6, 8, generator=g), torch.randn(6, 8, generator=g)
    loss = info_nce(q.to(dtype), d.to(dtype), similarity="neg_l2", temperature=4.0)
    assert loss.dtype == dtype
    torch.testing.assert_close(loss.float(), info_nce(q, d, similarity="neg_l2", temperature=4.0), atol=0.05, rtol=0.05)


def test_empty_batches_give_zero_not_nan() -> None:
    """triplet_margin with B = 0 and no mask, and the MoL MI loss over 0 pairs, returned NaN."""
    from rag_relax_plugins.core.contrastive import triplet_margin
    from rag_relax_plugins.core.mol import mol_mi_loss

    empty = torch.zeros(0, 4, requires_grad=True)
    loss = triplet_margin(empty, empty, empty)
    assert loss.item() == 0.0 and loss.requires_grad
    assert mol_mi_loss(torch.zeros(0, 3)).item() == 0.0
    sim = MoLSimilarity(MoLConfig(query_dim=5, item_dim=5, num_query_embeddings=2, num_item_embeddings=2,
                                  component_dim=4)).train()
    scores, aux = sim(torch.zeros(0, 5), torch.randn(3, 5))
    assert scores.shape == (0, 3) and aux["mol_mi"].item() == 0.0


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_effective_rank_of_half_precision_embeddings(dtype: torch.dtype) -> None:
    """No CPU SVD for half types: NotImplementedError."""
    from rag_relax_plugins.core.isotropy import effective_rank

    x = torch.randn(50, 8, generator=torch.Generator().manual_seed(0))
    r = effective_rank(x.to(dtype))
    assert r.dtype == dtype
    assert abs(r.item() - effective_rank(x).item()) < 0.1


def test_one_metric_under_two_spellings_is_refused() -> None:
    """"mrr@1" and "mrr@01" passed the "named twice" check (it compared the strings)."""
    with pytest.raises(ValueError, match=r"got 'mrr@1' and 'mrr@01', the same metric"):
        metrics.evaluate([["a"]], [{"a": 1}], ["mrr@1", "mrr@01"])


def test_rankings_from_scores_legacy_k_may_be_a_numpy_int() -> None:
    """The legacy call rankings_from_scores(scores, k) took only a Python int as k."""
    scores = torch.tensor([[0.1, 0.9, 0.5]])
    assert metrics.rankings_from_scores(scores, np.int64(2)) == metrics.rankings_from_scores(scores, 2) == [[1, 2]]


def test_a_grade_too_large_for_the_exponential_gain_is_a_clear_error() -> None:
    """A grade of 1100 raised a bare OverflowError from 2.0 ** grade, a traceback in `evaluate` (review)."""
    with pytest.raises(ValueError, match="too large for ndcg's exponential gain"):
        metrics.evaluate([["a"]], [{"a": 1100}], ["ndcg@10"])
    assert metrics.evaluate([["a"]], [{"a": 1100}], ["ndcg_linear@10"])["ndcg_linear@10"] == 1.0


@pytest.mark.parametrize("name", ["covariance_isotropy_penalty", "variance_regularization", "effective_rank",
                                  "epps_pulley"])
@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_isotropy_ops_refuse_non_finite_embeddings_as_sigreg_does(name: str, bad: float) -> None:
    """They returned NaN (effective_rank may fail inside the SVD) where sigreg refused (review)."""
    from rag_relax_plugins.core import isotropy

    x = torch.randn(8, 4, generator=torch.Generator().manual_seed(0))
    x[3, 1] = bad
    with pytest.raises(ValueError, match=r"contains NaN or inf values"):
        getattr(isotropy, name)(x)
    assert torch.isfinite(getattr(isotropy, name)(x.nan_to_num(0.0, 0.0, 0.0))).all()


def test_empty_or_misnamed_inputs_of_three_ops_get_clear_errors() -> None:
    """gumbel_softmax with no class failed in argmax (hard) or returned rows summing to 0;
    mmr_select_by_embeddings blamed 'similarity' for a NaN embedding; isotonic_decreasing of
    (B, 0) raised "slice step cannot be zero" (review)."""
    from rag_relax_plugins.core.gumbel import gumbel_softmax
    from rag_relax_plugins.core.isotonic import isotonic_decreasing
    from rag_relax_plugins.core.mmr import mmr_select_by_embeddings

    for hard in (False, True):
        with pytest.raises(ValueError, match=r"logits must hold at least one class along dim -1, got shape \(2, 0\)"):
            gumbel_softmax(torch.zeros(2, 0), hard=hard)
    with pytest.raises(ValueError, match=r"logits must hold at least one class along dim 0"):
        gumbel_softmax(torch.zeros(0, 3), dim=0)
    assert gumbel_softmax(torch.zeros(0, 3)).shape == (0, 3)  # no row: nothing to normalise
    with pytest.raises(ValueError, match=r"^embeddings contains NaN or inf values"):
        mmr_select_by_embeddings(torch.randn(3), torch.tensor([[1.0, float("inf")], [0.0, 1.0], [1.0, 0.0]]), 2)
    for reg in ("l2", "kl"):
        sol = isotonic_decreasing(torch.zeros(3, 0), torch.zeros(3, 0), reg)
        assert sol.values.shape == (3, 0) and sol.num_blocks == 0


def test_mol_components_of_huge_or_tiny_features_keep_their_direction() -> None:
    """F.normalize squared in float32: a feature of norm 1e20 gave a zero component and one of
    norm 1e-25 a component of length 1e-13, so the cosine head scored the same direction 0
    (review). Ordinary features give the same unit vectors as before, up to rounding."""
    sim = MoLSimilarity.cosine(4)
    x = torch.tensor([[1.0, 0, 0, 0], [1e20, 0, 0, 0], [1e-25, 0, 0, 0], [0.6, 0.8, 0, 0], [0, 0, 0, 0]])
    scores = sim.score_all(sim.encode_queries(x[:2]), sim.encode_items(x)) * sim.config.tau  # (2, 5) cosines
    assert torch.allclose(scores, torch.tensor([[1.0, 1.0, 1.0, 0.6, 0.0]] * 2), atol=1e-6)
    g = torch.randn(50, 4, generator=torch.Generator().manual_seed(0), requires_grad=True)
    comps = sim.encode_items(g).components
    assert torch.allclose(comps, F.normalize(g, dim=-1).unsqueeze(1), atol=1e-7)
    (direction,) = torch.autograd.grad(comps.sum(), g)
    (reference,) = torch.autograd.grad(F.normalize(g, dim=-1).sum(), g)
    assert torch.allclose(direction, reference, atol=1e-6)


def test_mol_gradients_stay_finite_for_a_zero_feature_row() -> None:
    """The component normalisation divided a zero vector by finfo.tiny: an infinite gradient, and
    NaN on the projection weights of the cosine head through a zero (padding) feature row (review)."""
    sim = MoLSimilarity.cosine(8).train()
    items = torch.randn(4, 8, generator=torch.Generator().manual_seed(0))
    items[2] = 0.0
    scores = sim.score_all(sim.encode_queries(items[:2]), sim.encode_items(items))
    F.cross_entropy(scores, torch.tensor([0, 1])).backward()
    assert all(torch.isfinite(p.grad).all() for p in sim.parameters() if p.grad is not None)
