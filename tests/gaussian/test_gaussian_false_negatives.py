"""A row's own positive text is never its negative in InfoNCE (training and validation).

Only repeats of that text are masked: another positive of the same query (a different text) stays
a negative, as in sentence-transformers' ``MultipleNegativesRankingLoss`` (a documented limitation,
pinned in ``test_mask_marks_repeats_of_the_row_positive``).
"""

from __future__ import annotations

import json
import math

import pytest
import torch

from rag_relax_plugins.embedders.gaussian import GaussianEmbedder
from rag_relax_plugins.training.gaussian_data import Pair, load_pairs
from rag_relax_plugins.training.gaussian_objective import (
    TrainConfig,
    contrastive_loss,
    false_negative_mask,
    training_loss,
)
from rag_relax_plugins.training.gaussian_train import _val_loss, make_batches, train

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_mask_marks_repeats_of_the_row_positive() -> None:
    queries = ["qa", "qb", "qa", "qc"]
    positives = ["pa1", "pb", "pa2", "pa1"]
    negatives = [["pb"], ["pa1"], ["x"], ["y"]]  # row 1's negative is row 0's positive, row 0's is row 1's
    mask = false_negative_mask(queries, positives, negatives)
    # columns: [pa1, pb | pb, pa1 | pa2, x | pa1, y]  (positive then negative of each row)
    expected = torch.tensor([
        [False, False, False, True, False, False, True, False],  # pa1 again: row 1's negative, row 3's positive
        [False, True, False, False, False, False, False, False],  # pb again: row 0's negative
        [False, False, False, False, False, False, False, False],  # pa2 appears once; qa's other positive stays
        [True, False, False, True, False, False, False, False],  # pa1: row 0's positive and row 1's negative
    ])
    assert torch.equal(mask, expected)
    assert false_negative_mask(["a", "b"], ["p", "q"], [["n"], ["m"]]) is None  # nothing to mask
    assert false_negative_mask(["a", "a"], ["p", "q"], None) is None
    no_neg = false_negative_mask(["a", "b"], ["p", "p"], None)  # a duplicate positive
    assert torch.equal(no_neg, torch.tensor([[False, True], [True, False]]))


def test_perfect_model_reaches_zero_loss_once_false_negatives_are_masked() -> None:
    b, dim = 4, 8
    d = 10 * torch.eye(b, dim)  # positives, far apart
    q = d.clone()  # a perfect model: each query sits on its positive
    neg = d.roll(-1, dims=0)  # each row's negative is the next row's positive
    texts = [f"p{i}" for i in range(b)]
    mask = false_negative_mask([f"q{i}" for i in range(b)], texts, [[texts[(i + 1) % b]] for i in range(b)])
    cfg = TrainConfig(train_file="x", temperature=1.0)
    plain = contrastive_loss(q, d, neg, cfg, "euclidean")
    masked = contrastive_loss(q, d, neg, cfg, "euclidean", mask=mask)
    assert plain.item() == pytest.approx(math.log(2), abs=1e-6)  # the positive appears twice: stuck at log 2
    assert masked.item() < 1e-6
    # an all-False mask is the unmasked loss, bit for bit
    assert torch.equal(contrastive_loss(q, d, neg, cfg, "euclidean", mask=torch.zeros(b, 2 * b, dtype=torch.bool)), plain)
    # the triplet loss drops triplets whose negative is masked
    tcfg = TrainConfig(train_file="x", loss="triplet", margin=1.0)
    assert contrastive_loss(q, d, d.clone(), tcfg, "euclidean").item() == pytest.approx(1.0)  # negative == positive
    same = false_negative_mask(["q"] * b, texts, [[t] for t in texts])
    assert contrastive_loss(q, d, d.clone(), tcfg, "euclidean", mask=same).item() == 0.0


@pytest.fixture
def colliding_pairs(tmp_path):
    rows = [{"query": f"question {i}?", "positive": f"passage {i} about topic {i}", "negative": f"passage {(i + 1) % 6} about topic {(i + 1) % 6}"}
            for i in range(6)]
    path = tmp_path / "t.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows), encoding="utf-8")
    return path


def _cfg(tmp_path, train_file, **kw):
    base = dict(train_file=str(train_file), output_dir=str(tmp_path / "run"), backbone="hashing:32", output_dim=8, dropout=0.0,
                batch_size=6, epochs=1, max_steps=1, num_slices=8, show_progress=False, device="cpu", save_checkpoints=False)
    return TrainConfig(**{**base, **kw})


def _losses(model, batch, cfg):
    q, d, n = (x for x in (model([p.query for p in batch]), model([p.positive for p in batch]), model([p.negative for p in batch])))
    mask = false_negative_mask([p.query for p in batch], [p.positive for p in batch], [[p.negative] for p in batch])
    masked = training_loss(q, d, n, cfg, 0, geometry="euclidean", mask=mask)[0].item()
    plain = training_loss(q, d, n, cfg, 0, geometry="euclidean")[0].item()
    return masked, plain


def test_training_and_validation_use_the_mask(tmp_path, colliding_pairs) -> None:
    cfg = _cfg(tmp_path, colliding_pairs)
    model = GaussianEmbedder(cfg.model_config(), device="cpu").train()
    pairs = load_pairs(colliding_pairs)
    batch = make_batches(pairs, cfg.batch_size, cfg.seed, 0)[0]
    with torch.no_grad():
        masked, plain = _losses(model, batch, cfg)
    assert masked < plain - 1e-3  # the mask changes the loss on this batch
    first = train(cfg)["history"]["step_loss"][0]  # loss of the first batch, before any update
    assert first == pytest.approx(masked, rel=1e-5)
    assert _val_loss(model, pairs, cfg, torch.device("cpu")) == pytest.approx(masked, rel=1e-5)


def test_validation_loss_keeps_a_trailing_single_pair(tmp_path) -> None:
    pairs = [Pair(f"query number {i}", f"passage {i} about subject {i}") for i in range(3)]
    cfg = TrainConfig(train_file="x", batch_size=2, backbone="hashing:64", output_dim=16, num_slices=8)
    model = GaussianEmbedder(cfg.model_config(), device="cpu")
    got = _val_loss(model, pairs, cfg, torch.device("cpu"))
    model.eval()
    with torch.no_grad():
        q, d = model([p.query for p in pairs]), model([p.positive for p in pairs])
        want = training_loss(q, d, None, cfg, 0, geometry="euclidean")[0].item()  # all 3 pairs in one batch
    assert got == pytest.approx(want, rel=1e-5)
    two = make_batches(pairs, 2, cfg.seed, 0)[0]
    assert got != pytest.approx(_val_loss(model, two, cfg, torch.device("cpu")), rel=1e-4)  # the third pair counts


def test_history_names_the_selection_loss(tmp_path, colliding_pairs) -> None:
    out = train(_cfg(tmp_path, colliding_pairs, epochs=2, max_steps=None))
    no_val = out["history"]
    assert no_val["val_loss"] == []  # no validation file: no validation loss
    assert no_val["selection_loss"] == no_val["train_loss"] and len(no_val["train_loss"]) == 2
    assert out["best_epoch"] == 1 + no_val["selection_loss"].index(min(no_val["selection_loss"]))
    out = train(_cfg(tmp_path, colliding_pairs, epochs=2, max_steps=None, val_file=str(colliding_pairs),
                     output_dir=str(tmp_path / "v")))
    with_val = out["history"]
    assert with_val["selection_loss"] == with_val["val_loss"] != with_val["train_loss"]
    assert out["best_epoch"] == 1 + with_val["val_loss"].index(min(with_val["val_loss"]))


@pytest.mark.parametrize("loss", ["infonce", "triplet"])
def test_a_wrong_mask_is_refused_even_when_all_false(loss: str) -> None:
    """The all-False shortcut ran before the mask was checked: a mask of the wrong shape passed."""
    from rag_relax_plugins.training.gaussian_objective import TrainConfig, contrastive_loss

    q, d = torch.randn(4, 8), torch.randn(4, 8)
    cfg = TrainConfig(train_file="x", loss=loss)
    with pytest.raises(ValueError, match="mask must have the shape"):
        contrastive_loss(q, d, None, cfg, "euclidean", mask=torch.zeros(3, 3, dtype=torch.bool))
    with pytest.raises(TypeError, match="mask must be a bool tensor"):
        contrastive_loss(q, d, None, cfg, "euclidean", mask=torch.zeros(4, 4))
