"""Documented behaviour that hand mutants of the core modules changed unnoticed (review 2026-12-05).

Each test failed on one mutant (named in its comment) and passes on the code: tie order in long
rows, the single-query metric functions, loss reductions and ``sigma``, MMR normalisation and
``tau``, which column is the positive, isotropy details, and a few documented refusals.
"""

from __future__ import annotations

import math
import random
from unittest import mock

import pytest
import torch
import torch.nn.functional as F

from rag_relax_plugins.core import metrics as M
from rag_relax_plugins.core import ranking_losses as R
from rag_relax_plugins.core.contrastive import info_nce
from rag_relax_plugins.core.fusion import comb_sum, reciprocal_rank_fusion
from rag_relax_plugins.core.gumbel import attention_log_mask, hard_topk_mask, sample_gumbel
from rag_relax_plugins.core.isotropy import (
    covariance_isotropy_penalty,
    effective_rank,
    sample_slices,
    sigreg,
    variance_regularization,
)
from rag_relax_plugins.core.maxsim import maxsim_packed
from rag_relax_plugins.core.mmr import mmr_select_by_embeddings, mmr_select_mol
from rag_relax_plugins.core.mol import MoLConfig, MoLSimilarity

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_rankings_from_scores_breaks_long_ties_by_column() -> None:
    # an unstable sort agrees with the stable one up to ~16 items on CPU, not at 64+
    s = torch.zeros(2, 200)
    s[1, 150:] = 1.0
    assert M.rankings_from_scores(s) == [list(range(200)), list(range(150, 200)) + list(range(150))]
    assert M.rankings_from_scores(s, k=5) == [[0, 1, 2, 3, 4], [150, 151, 152, 153, 154]]


def test_hard_topk_mask_ties_go_to_the_lower_index_in_long_rows() -> None:
    s = torch.zeros(3, 300)
    s[1, ::2] = 1.0
    out = hard_topk_mask(s, 100)
    assert torch.equal(out[0], (torch.arange(300) < 100).float())
    assert torch.equal(out[1], ((torch.arange(300) % 2 == 0) & (torch.arange(300) < 200)).float())


def test_sample_gumbel_is_finite_when_the_uniform_draw_hits_zero() -> None:
    for u in (0.0, 1.0 - 2**-24):  # torch.rand gives exactly 0 with probability 2^-24
        with mock.patch("torch.rand", return_value=torch.full((4,), u)):
            g = sample_gumbel((4,), like=torch.zeros(4))
        assert bool(torch.isfinite(g).all()), (u, g)


def test_attention_log_mask_default_floor_is_half_the_dtype_minimum() -> None:
    for dtype in (torch.float32, torch.float16, torch.bfloat16, torch.float64):
        out = attention_log_mask(torch.tensor([0.0, 1.0], dtype=dtype))
        assert float(out[0]) == float(torch.finfo(dtype).min) / 2 and float(out[1]) == 0.0


def test_single_query_functions_agree_with_evaluate_per_query() -> None:
    # hit_rate_at_k cut at k - 1 and precision_at_k dividing by min(k, len) both survived
    rng = random.Random(5)
    for _ in range(200):
        docs = [f"d{i}" for i in range(30)]
        rng.shuffle(docs)
        ranking = docs[: rng.randint(1, 25)]
        qrels = {d: rng.choice([0, 1, 2, 3]) for d in rng.sample(docs, rng.randint(1, 10))}
        for k in (1, 2, 3, 5, 10, 40):
            per = M.evaluate_per_query([ranking], [qrels], [f"recall@{k}", f"precision@{k}", f"hit_rate@{k}",
                                                            f"mrr@{k}", f"ndcg@{k}", f"ndcg_linear@{k}", f"map@{k}"])
            assert per[f"recall@{k}"][0] == pytest.approx(M.recall_at_k(ranking, qrels, k))
            assert per[f"precision@{k}"][0] == pytest.approx(M.precision_at_k(ranking, qrels, k))
            assert per[f"hit_rate@{k}"][0] == M.hit_rate_at_k(ranking, qrels, k)
            assert per[f"mrr@{k}"][0] == pytest.approx(M.reciprocal_rank(ranking, qrels, k))
            assert per[f"ndcg@{k}"][0] == pytest.approx(M.ndcg_at_k(ranking, qrels, k))
            assert per[f"ndcg_linear@{k}"][0] == pytest.approx(M.ndcg_at_k(ranking, qrels, k, gain="linear"))
            assert per[f"map@{k}"][0] == pytest.approx(M.average_precision_at_k(ranking, qrels, k))


def test_lambda_loss_sigma_scales_the_score_differences() -> None:
    g = torch.Generator().manual_seed(0)
    s, r = torch.randn(3, 6, generator=g, dtype=torch.float64), torch.randint(0, 4, (3, 6), generator=g).double()
    a = R.lambda_loss(s, r, sigma=2.5)
    torch.testing.assert_close(a, R.lambda_loss(2.5 * s, r, sigma=1.0))  # the weights depend on ranks only
    assert not torch.allclose(a, R.lambda_loss(s, r, sigma=1.0))


def test_every_loss_reduction_sum_is_the_sum_of_the_rows() -> None:
    g = torch.Generator().manual_seed(1)
    s, r = torch.randn(4, 6, generator=g, dtype=torch.float64), torch.randint(0, 3, (4, 6), generator=g).double()
    r[:, 0], r[:, 1] = 2.0, 0.0
    for fn in (R.list_net_loss, R.approx_ndcg_loss, R.lambda_loss, R.neural_ndcg_loss, R.soft_spearman_loss):
        torch.testing.assert_close(fn(s, r, reduction="sum"), fn(s, r, reduction="none").sum())
        torch.testing.assert_close(fn(s, r, reduction="mean"), fn(s, r, reduction="none").mean())


def test_ndcg_losses_refuse_grades_whose_gain_overflows() -> None:
    # 2^128 - 1 is inf in float32: approx / neural NDCG and lambda loss returned NaN, silently
    s = torch.randn(1, 4, generator=torch.Generator().manual_seed(2))
    for fn in (R.approx_ndcg_loss, R.neural_ndcg_loss, R.lambda_loss):
        assert torch.isfinite(fn(s, torch.tensor([[100.0, 1.0, 0.0, 0.0]])))
        with pytest.raises(ValueError, match=r"relevance is too large for the NDCG gain 2\^rel - 1 in torch.float32"):
            fn(s, torch.tensor([[128.0, 1.0, 0.0, 0.0]]))
        assert torch.isfinite(fn(s.double(), torch.tensor([[128.0, 1.0, 0.0, 0.0]], dtype=torch.float64)))
        masked = torch.tensor([[True, True, True, False]])  # a masked item's grade does not count
        x = s.clone().requires_grad_(True)
        loss = fn(x, torch.tensor([[1.0, 1.0, 0.0, 500.0]]), mask=masked)
        loss.backward()  # inf gain * 0 gave NaN gradients behind a finite loss (diff review)
        assert x.grad is not None and bool(torch.isfinite(x.grad).all())
        y = s.clone().requires_grad_(True)
        same = fn(y, torch.tensor([[1.0, 1.0, 0.0, 3.0]]), mask=masked)
        same.backward()
        assert loss.item() == pytest.approx(same.item()) and torch.allclose(x.grad, y.grad)


def test_mmr_select_mol_rescales_the_relevance_by_tau() -> None:
    emb = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.6, 0.8]])
    phi = torch.tensor([20.0, 19.0, 18.0])
    assert mmr_select_mol(phi, emb, 2, 0.5, tau=0.05).tolist() == [0, 2]
    assert mmr_select_by_embeddings(phi, emb, 2, 0.5).tolist() == [0, 1]


def test_mmr_by_embeddings_redundancy_ignores_the_norms() -> None:
    emb = torch.tensor([[1.0, 0.0], [0.1, 0.0], [0.6, 0.8]])  # row 1 is row 0's direction: cosine 1
    assert mmr_select_by_embeddings(torch.tensor([1.0, 0.9, 0.9]), emb, 2, 0.5).tolist() == [0, 2]


def test_maxsim_packed_refuses_decreasing_offsets_by_name() -> None:
    with pytest.raises(ValueError, match="non-decreasing"):
        maxsim_packed(torch.randn(1, 2, 4), torch.randn(4, 4), torch.tensor([0, 3, 1, 4]))


def test_mol_default_positive_of_per_query_candidates_is_column_zero() -> None:
    torch.manual_seed(0)
    sim = MoLSimilarity(MoLConfig(query_dim=6, item_dim=6, num_query_embeddings=2, num_item_embeddings=2,
                                  component_dim=4, mi_loss_weight=1.0, softmax_dropout=0.0)).train()
    q, x = torch.randn(3, 6), torch.randn(3, 5, 6)
    _, aux = sim(q, x)
    _, aux0 = sim(q, x, positives=torch.zeros(3, dtype=torch.long))
    _, aux1 = sim(q, x, positives=torch.arange(3))
    torch.testing.assert_close(aux["mol_mi"], aux0["mol_mi"])
    assert not torch.allclose(aux["mol_mi"], aux1["mol_mi"])


def test_symmetric_info_nce_uses_the_positive_not_a_hard_negative() -> None:
    g = torch.Generator().manual_seed(2)
    q, docs = torch.randn(4, 8, generator=g), torch.randn(4, 3, 8, generator=g)
    back = F.cross_entropy(F.normalize(docs[:, 0], dim=-1) @ F.normalize(q, dim=-1).T / 0.1, torch.arange(4))
    torch.testing.assert_close(info_nce(q, docs, temperature=0.1, symmetric=True),
                               0.5 * (info_nce(q, docs, temperature=0.1) + back))


def test_fusion_refuses_a_negative_weight() -> None:
    with pytest.raises(ValueError, match=">= 0"):
        comb_sum([{"a": 1.0}, {"b": 2.0}], weights=[1.0, -1.0])
    with pytest.raises(ValueError, match=">= 0"):
        reciprocal_rank_fusion([["a"], ["b"]], weights=[-0.5, 1.0])


def test_effective_rank_centres_the_rows_first() -> None:
    x = torch.tensor([[5.0, 0.0], [5.0, 1.0], [5.0, -1.0]], dtype=torch.float64)
    assert float(effective_rank(x)) == pytest.approx(1.0)


def test_covariance_penalty_adds_the_squared_mean() -> None:
    x = torch.randn(64, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    shift = torch.tensor([0.5, -1.0, 0.0, 2.0], dtype=torch.float64)
    m = x.mean(0)
    gap = covariance_isotropy_penalty(x + shift) - covariance_isotropy_penalty(x)
    assert float(gap) == pytest.approx(float(((m + shift) ** 2).sum() - (m**2).sum()))


def test_variance_regularization_uses_the_sample_variance() -> None:
    x = torch.tensor([[0.0, 0.0], [1.0, 2.0]], dtype=torch.float64)
    assert float(variance_regularization(x)) == pytest.approx((1.0 - math.sqrt(0.5 + 1e-4)) / 2)


def test_variance_regularization_refuses_bad_targets_and_eps() -> None:
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="target_std"):
            variance_regularization(torch.randn(4, 3), target_std=bad)
    for bad in (-1.0, float("nan")):  # a negative eps gave NaN
        with pytest.raises(ValueError, match=r"eps must be >= 0"):
            variance_regularization(torch.randn(4, 3), eps=bad)


def test_sigreg_seed_none_means_zero_and_zero_slices_are_refused() -> None:
    x = torch.randn(32, 5, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(sample_slices(5, 8, seed=None), sample_slices(5, 8, seed=0))
    torch.testing.assert_close(sigreg(x, seed=None), sigreg(x, seed=0))
    assert not torch.allclose(sigreg(x, seed=1), sigreg(x, seed=0))
    with pytest.raises(ValueError, match=r"slices must have shape \(D=5, S\) with S >= 1, got \(5, 0\)"):
        sigreg(x, slices=torch.zeros(5, 0))  # was a NaN
