"""Batches where only some pairs have a hard negative use the ones they have.

Before 2026-12-05 a batch used hard negatives only when every pair in it had one (``train``
warned that most were then unused). Now an absent negative is a placeholder column that no row
sees (InfoNCE), and a row without a negative takes another row's positive (triplet loss), as a
batch without any negative does. Each loss is checked against a per-row loop reference.
"""

from __future__ import annotations

import json
import math

import pytest
import torch

from rag_relax_plugins.training.gaussian_data import Pair, load_pairs
from rag_relax_plugins.training.gaussian_objective import (
    TrainConfig,
    contrastive_loss,
    false_negative_mask,
    isotropy_loss,
    training_loss,
)
from rag_relax_plugins.training.gaussian_train import _embed, make_batches, train

pytestmark = pytest.mark.usefixtures("one_torch_thread")

B, M, D = 6, 2, 5


def _sim(a: torch.Tensor, b: torch.Tensor, geometry: str) -> torch.Tensor:
    return -((a - b) ** 2).sum() if geometry == "euclidean" else (a * b).sum()


def _infonce_reference(q, d, neg, present, mask, geometry, temp) -> torch.Tensor:
    """Row i: softmax over every positive and every present negative not masked for row i."""
    per_row = 1 + neg.shape[1]
    losses = []
    for i in range(q.shape[0]):
        logits = []
        for j in range(q.shape[0]):
            cands = [(j * per_row, d[j])] + [(j * per_row + 1 + m, neg[j, m]) for m in range(neg.shape[1]) if present[j, m]]
            logits += [_sim(q[i], c, geometry) / temp for col, c in cands if col == i * per_row or mask is None or not mask[i, col]]
        own = _sim(q[i], d[i], geometry) / temp
        losses.append(torch.logsumexp(torch.stack(logits), 0) - own)
    return torch.stack(losses).mean()


def _triplet_reference(q, d, neg, present, mask, geometry, margin) -> torch.Tensor:
    """Present negatives give a triplet each; a row with none takes the previous row's positive."""
    b, per_row = q.shape[0], 1 + neg.shape[1]
    dist = (lambda a, c: torch.linalg.vector_norm(a - c)) if geometry == "euclidean" else (lambda a, c: -(a * c).sum())
    terms = []
    for i in range(b):
        slots = [(j, neg[i, j], i * per_row + 1 + j) for j in range(neg.shape[1]) if present[i, j]]
        if not slots:
            slots = [(0, d[(i - 1) % b], ((i - 1) % b) * per_row)]
        terms += [torch.relu(margin + dist(q[i], d[i]) - dist(q[i], n)) for _, n, col in slots if mask is None or not mask[i, col]]
    return torch.stack(terms).mean()


@pytest.mark.parametrize("geometry", ["euclidean", "inner_product"])
@pytest.mark.parametrize("loss", ["infonce", "triplet"])
@pytest.mark.parametrize("with_mask", [False, True])
def test_partial_negatives_match_the_loop_reference(geometry, loss, with_mask) -> None:
    g = torch.Generator().manual_seed(0)
    q, d, neg = torch.randn(B, D, generator=g, dtype=torch.float64), torch.randn(B, D, generator=g, dtype=torch.float64), \
        torch.randn(B, M, D, generator=g, dtype=torch.float64)
    present = torch.tensor([[True, False], [False, False], [True, True], [False, True], [False, False], [True, False]])
    mask = None
    if with_mask:
        mask = torch.zeros(B, B * (1 + M), dtype=torch.bool)
        mask[0, 3] = mask[2, 1] = mask[3, 0] = mask[5, 6] = True  # some positives / negatives of other rows
    cfg = TrainConfig(train_file="x", loss=loss, temperature=0.7, margin=1.5)
    got = contrastive_loss(q, d, neg, cfg, geometry, mask=mask, neg_present=present)
    if loss == "infonce":
        want = _infonce_reference(q, d, neg, present, mask, geometry, 0.7)
    else:
        want = _triplet_reference(q, d, neg, present, mask, "euclidean" if geometry == "euclidean" else "ip", 1.5)
    assert got.item() == pytest.approx(want.item(), rel=1e-10, abs=1e-12)
    # the placeholders' values do not matter, and get no gradient
    other = neg.clone().requires_grad_(True)
    with torch.no_grad():
        other[~present] = 1e3
    again = contrastive_loss(q, d, other, cfg, geometry, mask=mask, neg_present=present)
    assert again.item() == pytest.approx(got.item(), rel=1e-10, abs=1e-12)
    again.backward()
    assert other.grad[~present].abs().max().item() == 0.0


@pytest.mark.parametrize("loss", ["infonce", "triplet"])
def test_all_present_is_the_full_loss_bit_for_bit(loss) -> None:
    g = torch.Generator().manual_seed(1)
    q, d, neg = (torch.randn(B, D, generator=g) for _ in range(3))
    cfg = TrainConfig(train_file="x", loss=loss)
    full = training_loss(q, d, neg, cfg, 0)[0]
    assert torch.equal(full, training_loss(q, d, neg, cfg, 0, neg_present=torch.ones(B, dtype=torch.bool))[0])
    assert torch.equal(full, training_loss(q, d, neg, cfg, 0, neg_present=torch.ones(B, 1, dtype=torch.bool))[0])


def test_no_present_negative_is_the_loss_without_negatives_and_one_adds_its_column() -> None:
    g = torch.Generator().manual_seed(2)
    q, d, neg = (torch.randn(B, D, generator=g, dtype=torch.float64) for _ in range(3))
    none, one = torch.zeros(B, dtype=torch.bool), torch.zeros(B, dtype=torch.bool)
    one[3] = True
    for loss in ("infonce", "triplet"):
        c = TrainConfig(train_file="x", temperature=0.9, loss=loss)
        # no present negative: the batch's positives alone (InfoNCE), previous rows' positives (triplet)
        assert contrastive_loss(q, d, neg, c, "euclidean", neg_present=none).item() == pytest.approx(
            contrastive_loss(q, d, None, c, "euclidean").item(), rel=1e-12)
        got = contrastive_loss(q, d, neg, c, "euclidean", neg_present=one).item()
        ref = _infonce_reference if loss == "infonce" else None
        if ref is not None:  # every row meets row 3's negative as one more candidate
            assert got == pytest.approx(ref(q, d, neg[:, None], one[:, None], None, "euclidean", 0.9).item(), rel=1e-12)
        else:  # row 3's triplet uses its own negative, the others the previous row's positive
            assert got == pytest.approx(_triplet_reference(q, d, neg[:, None], one[:, None], None, "euclidean", 1.0).item(),
                                        rel=1e-12)
        assert got != pytest.approx(contrastive_loss(q, d, None, c, "euclidean").item(), rel=1e-9)


def test_the_regularisers_see_only_present_negatives() -> None:
    g = torch.Generator().manual_seed(3)
    q, d, neg = (torch.randn(B, D, generator=g) for _ in range(3))
    present = torch.tensor([True, False, True, False, False, True])
    cfg = TrainConfig(train_file="x", isotropy="covariance", lambda_isotropy=1.0)
    parts = training_loss(q, d, neg, cfg, 0, neg_present=present)[1]
    want = isotropy_loss(torch.cat([q, d, neg[present]]), cfg, 0).item()
    assert parts["isotropy"] == pytest.approx(want, rel=1e-6)


def test_neg_present_is_checked() -> None:
    q, d, neg = torch.randn(B, D), torch.randn(B, D), torch.randn(B, D)
    cfg = TrainConfig(train_file="x")
    with pytest.raises(ValueError, match="neg_present needs neg"):
        contrastive_loss(q, d, None, cfg, "euclidean", neg_present=torch.ones(B, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"neg_present must have the shape of \(B, M\) \(6, 1\), got \(5,\)"):
        contrastive_loss(q, d, neg, cfg, "euclidean", neg_present=torch.ones(5, dtype=torch.bool))
    with pytest.raises(TypeError, match="neg_present must be a bool tensor"):
        contrastive_loss(q, d, neg, cfg, "euclidean", neg_present=torch.ones(B))


def test_false_negative_mask_reads_an_absent_negative_as_no_text() -> None:
    mask = false_negative_mask(["a", "b", "c"], ["p", "q", "r"], [["q"], [None], [None]])
    assert mask is not None and mask.shape == (3, 6)
    assert mask.nonzero().tolist() == [[1, 1]]  # row 1's positive "q" repeated as row 0's negative


def _pairs_file(tmp_path, with_negative) -> str:
    rows = [{"query": f"question {i} about item {i}?", "positive": f"passage {i} on subject {i}."} for i in range(8)]
    for i in with_negative:
        rows[i]["negative"] = f"unrelated filler text number {i}."
    path = tmp_path / "pairs.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows), encoding="utf-8")
    return str(path)


def test_training_uses_the_negatives_some_pairs_have(tmp_path) -> None:
    # 3 of 8 pairs with a negative: one batch of 8, whose first step loss is the reference's
    cfg = TrainConfig(train_file=_pairs_file(tmp_path, [1, 4, 6]), output_dir=str(tmp_path / "run"), backbone="hashing:32",
                      output_dim=8, dropout=0.0, batch_size=8, epochs=1, max_steps=1, num_slices=8, isotropy="none",
                      show_progress=False, device="cpu", save_checkpoints=False, seed=5)
    pairs = load_pairs(cfg.train_file)
    batch = make_batches(pairs, cfg.batch_size, cfg.seed, 0)[0]
    first = train(cfg)["history"]["step_loss"][0]
    from rag_relax_plugins.embedders.gaussian import GaussianEmbedder

    model = GaussianEmbedder(cfg.model_config(), device="cpu").train()
    with torch.no_grad():
        q, d, n, mask, present = _embed(model, batch)
        assert n is not None and present is not None and int(present.sum()) == 3
        assert torch.equal(n[~present], torch.zeros(5, 8))
        present2 = present[:, None]
        temp = 0.1 * 8
        want = _infonce_reference(q.double(), d.double(), n.double()[:, None], present2, mask, "euclidean", temp).item()
        without = training_loss(q, d, None, cfg, 0)[0].item()
    assert first == pytest.approx(want, rel=1e-5)
    assert not math.isclose(first, without, rel_tol=1e-4)  # the three negatives count


def test_embed_returns_no_presence_when_all_or_none_have_a_negative() -> None:
    cfg = TrainConfig(train_file="x", backbone="hashing:32", output_dim=8, num_slices=8)
    from rag_relax_plugins.embedders.gaussian import GaussianEmbedder

    model = GaussianEmbedder(cfg.model_config(), device="cpu")
    every = [Pair(f"q{i}", f"p{i}", f"n{i}") for i in range(3)]
    none = [Pair(f"q{i}", f"p{i}") for i in range(3)]
    with torch.no_grad():
        assert _embed(model, every)[2] is not None and _embed(model, every)[4] is None
        assert _embed(model, none)[2] is None and _embed(model, none)[4] is None
