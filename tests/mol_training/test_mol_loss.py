"""Sampled softmax with in-batch + uniform negatives, logQ correction and accidental-hit masking."""

from __future__ import annotations

import math

import pytest
import torch

from rag_relax_plugins.core.contrastive import info_nce
from rag_relax_plugins.training.mol_loss import (
    mixed_log_q,
    sampled_softmax_loss,
    sampled_softmax_loss_reference,
)


def _case(seed: int = 0, b: int = 5, s: int = 4, n: int = 7, dtype: torch.dtype = torch.float32):
    g = torch.Generator().manual_seed(seed)
    pos = torch.randint(0, n, (b,), generator=g)
    neg = torch.randint(0, n, (s,), generator=g)
    cand = torch.cat([pos, neg])
    scores = torch.randn(b, b + s, generator=g, dtype=dtype)
    return scores, pos, cand


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_reference_with_duplicates_logq_and_exclude(seed):
    scores, pos, cand = _case(seed)
    pos[1] = pos[0]  # a duplicate positive: accidental hit in-batch
    cand[:5] = pos
    cand[6] = pos[2]  # a sampled negative equal to a positive
    probs = torch.rand(7, generator=torch.Generator().manual_seed(seed))
    probs = probs / probs.sum()
    log_q = mixed_log_q(cand, probs, batch_size=5, num_uniform=4)
    exclude = torch.zeros(5, 9, dtype=torch.bool)
    exclude[3, 4] = True
    got = sampled_softmax_loss(scores, pos, cand, log_q=log_q, temperature=0.7, exclude=exclude)
    ref = sampled_softmax_loss_reference(scores, pos, cand, log_q=log_q, temperature=0.7, exclude=exclude)
    torch.testing.assert_close(got, ref)


def test_accidental_hit_is_masked():
    scores = torch.tensor([[0.0, 5.0], [0.0, 0.0]])
    same = torch.tensor([3, 3])
    # both columns hold item 3: row 0's column 1 is not a negative, so the loss of row 0 is 0
    loss = sampled_softmax_loss(scores[:1, :], same[:1], same.clone(), temperature=1.0)
    assert loss.item() == pytest.approx(0.0)
    full = sampled_softmax_loss(scores, same, same.clone())
    assert full.item() == pytest.approx(0.0, abs=1e-7)
    distinct = sampled_softmax_loss(scores, torch.tensor([3, 4]), torch.tensor([3, 4]))
    assert distinct.item() > 1.0


def test_equals_info_nce_without_negatives_or_correction():
    g = torch.Generator().manual_seed(3)
    q, d = torch.randn(6, 8, generator=g), torch.randn(6, 8, generator=g)
    ids = torch.arange(6)
    ours = sampled_softmax_loss(q @ d.T, ids, ids, temperature=0.5)
    torch.testing.assert_close(ours, info_nce(q, d, temperature=0.5, similarity="dot"))


def test_gradcheck_float64():
    scores, pos, cand = _case(4, dtype=torch.float64)
    cand[:5] = pos
    log_q = torch.randn(9, dtype=torch.float64)
    x = scores.clone().requires_grad_(True)
    assert torch.autograd.gradcheck(
        lambda s: sampled_softmax_loss(s, pos, cand, log_q=log_q, temperature=0.3), (x,)
    )


def test_mixed_log_q_values():
    probs = torch.tensor([0.5, 0.25, 0.25, 0.0])
    got = mixed_log_q(torch.tensor([0, 1, 3]), probs, batch_size=4, num_uniform=8)
    want = torch.log(torch.tensor([4 * 0.5 + 2.0, 4 * 0.25 + 2.0, 2.0]))
    torch.testing.assert_close(got, want)
    sampleable = mixed_log_q(torch.tensor([0, 1, 3]), probs, batch_size=4, num_uniform=8, num_sampleable=len(probs) - 1)
    torch.testing.assert_close(sampleable, torch.log(4 * probs[[0, 1, 3]] + 8 / (len(probs) - 1)))
    with pytest.raises(ValueError, match="num_sampleable"):
        mixed_log_q(torch.tensor([0]), probs, batch_size=4, num_uniform=8, num_sampleable=len(probs) + 1)
    no_uniform = mixed_log_q(torch.tensor([3]), probs, batch_size=4, num_uniform=0)
    assert no_uniform.item() == pytest.approx(math.log(1e-12))


def test_logq_changes_the_loss_in_the_expected_direction():
    scores = torch.zeros(2, 3)
    ids = torch.tensor([0, 1, 2])
    base = sampled_softmax_loss(scores, ids[:2], ids)
    # a popular negative (large q) is down-weighted: the loss goes down
    log_q = torch.tensor([0.0, 0.0, 3.0])
    assert sampled_softmax_loss(scores, ids[:2], ids, log_q=log_q) < base


@pytest.mark.parametrize(
    ("kwargs", "err", "match"),
    [
        ({"scores": torch.zeros(3, 2)}, ValueError, "scores must have shape"),
        ({"scores": torch.zeros(2, 3, dtype=torch.long)}, TypeError, "scores"),
        ({"scores": torch.tensor([[0.0, float("nan"), 0.0], [0.0, 0.0, 0.0]])}, ValueError, "NaN"),
        ({"positive_ids": torch.tensor([0, 1], dtype=torch.int32)}, TypeError, "positive_ids"),
        ({"candidate_ids": torch.tensor([1, 0, 2])}, ValueError, "candidate_ids"),
        ({"log_q": torch.zeros(2)}, ValueError, "log_q"),
        ({"temperature": 0.0}, ValueError, "temperature"),
        ({"exclude": torch.zeros(2, 3)}, TypeError, "exclude"),
    ],
)
def test_validation_names_the_argument(kwargs, err, match):
    args = {
        "scores": torch.zeros(2, 3),
        "positive_ids": torch.tensor([0, 1]),
        "candidate_ids": torch.tensor([0, 1, 2]),
    }
    args.update(kwargs)
    pos = {k: args.pop(k) for k in ("scores", "positive_ids", "candidate_ids")}
    with pytest.raises(err, match=match):
        sampled_softmax_loss(pos["scores"], pos["positive_ids"], pos["candidate_ids"], **args)


def test_mixed_log_q_validation():
    with pytest.raises(ValueError, match="candidate_ids"):
        mixed_log_q(torch.tensor([5]), torch.ones(3) / 3, batch_size=2, num_uniform=1)
    with pytest.raises(ValueError, match="batch_size"):
        mixed_log_q(torch.tensor([0]), torch.ones(3) / 3, batch_size=0, num_uniform=1)
