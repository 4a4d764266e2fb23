"""Maximal marginal relevance: against the pure-Python reference, limit cases, validation."""

from __future__ import annotations

import pytest
import torch

from rag_relax_plugins.core.mmr import mmr_select, mmr_select_reference


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("lam", [0.0, 0.3, 0.5, 1.0])
def test_matches_reference(seed: int, lam: float) -> None:
    g = torch.Generator().manual_seed(seed)
    n = 12
    rel = torch.randn(n, generator=g, dtype=torch.float64)
    emb = torch.nn.functional.normalize(torch.randn(n, 5, generator=g, dtype=torch.float64), dim=-1)
    sim = emb @ emb.T
    got = mmr_select(rel, sim, 7, lam).tolist()
    assert got == mmr_select_reference(rel.tolist(), sim.tolist(), 7, lam)
    assert len(set(got)) == 7


def test_lambda_one_is_top_k_by_relevance() -> None:
    rel = torch.tensor([0.1, 0.9, 0.5, 0.7])
    sim = torch.ones(4, 4)
    assert mmr_select(rel, sim, 3, 1.0).tolist() == [1, 3, 2]


def test_duplicate_is_pushed_down() -> None:
    # candidates 0 and 1 are identical; 2 is different and slightly less relevant
    rel = torch.tensor([0.9, 0.89, 0.8])
    sim = torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    assert mmr_select(rel, sim, 2, 0.5).tolist() == [0, 2]


def test_k_capped_and_empty() -> None:
    rel = torch.tensor([0.2, 0.1])
    assert mmr_select(rel, torch.eye(2), 5).tolist() == [0, 1]
    assert mmr_select(torch.zeros(0), torch.zeros(0, 0), 3).numel() == 0


def test_ties_go_to_lower_index() -> None:
    assert mmr_select(torch.ones(3), torch.zeros(3, 3), 3).tolist() == [0, 1, 2]


def test_validation_names_the_argument() -> None:
    with pytest.raises(ValueError, match="similarity"):
        mmr_select(torch.zeros(3), torch.zeros(2, 2), 1)
    with pytest.raises(ValueError, match="lambda_mult"):
        mmr_select(torch.zeros(2), torch.zeros(2, 2), 1, 1.5)
    with pytest.raises(ValueError, match="k"):
        mmr_select(torch.zeros(2), torch.zeros(2, 2), 0)
    with pytest.raises(TypeError, match="relevance"):
        mmr_select(torch.zeros(2, dtype=torch.long), torch.zeros(2, 2), 1)
    with pytest.raises(ValueError, match="relevance"):
        mmr_select(torch.tensor([float("nan"), 0.0]), torch.zeros(2, 2), 1)


def test_by_embeddings_uses_cosine() -> None:
    from rag_relax_plugins.core.mmr import mmr_select_by_embeddings

    emb = torch.tensor([[1.0, 0.0], [2.0, 0.0], [0.0, 1.0]])  # rows 0 and 1 point the same way
    rel = torch.tensor([0.9, 0.89, 0.8])
    assert mmr_select_by_embeddings(rel, emb, 2, 0.5).tolist() == [0, 2]
    assert mmr_select_by_embeddings(rel, emb, 2, 1.0).tolist() == [0, 1]
    with pytest.raises(ValueError, match="embeddings"):
        mmr_select_by_embeddings(rel, emb[:2], 2)


def test_by_embeddings_checks_relevance_first() -> None:
    """A wrongly shaped relevance was blamed on embeddings; a list raised AttributeError."""
    from rag_relax_plugins.core.mmr import mmr_select_by_embeddings, mmr_select_mol

    with pytest.raises(ValueError, match="relevance must be 1-D, got shape \\(1, 3\\)"):
        mmr_select_by_embeddings(torch.rand(1, 3), torch.randn(3, 2), 2)
    with pytest.raises(TypeError, match=r"relevance must be a torch\.Tensor, got list"):
        mmr_select_by_embeddings([0.1, 0.2], torch.randn(2, 2), 1)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="relevance must be a floating-point tensor"):
        mmr_select_by_embeddings(torch.tensor([1, 2]), torch.randn(2, 2), 1)
    with pytest.raises(ValueError, match="embeddings must have one row per candidate \\(3\\)"):
        mmr_select_by_embeddings(torch.rand(3), torch.randn(2, 2), 1)  # still named when it is embeddings
    with pytest.raises(ValueError, match="scores must be 1-D"):
        mmr_select_mol(torch.rand(1, 3), torch.randn(3, 2), 2, tau=0.5)
