"""Options that must act or be refused: objective weights, conflicting train options, split negatives."""

from __future__ import annotations

import json

import pytest
import torch

from rag_relax_plugins.core.isotropy import PredictorHead
from rag_relax_plugins.embedders.gaussian import GaussianEmbedder
from rag_relax_plugins.embedders.gaussian_config import GaussianConfig
from rag_relax_plugins.training.gaussian_data import (
    add_negatives,
    load_pairs,
    prepare_data,
    synthesize_pairs,
)
from rag_relax_plugins.training.gaussian_objective import TrainConfig, training_loss
from rag_relax_plugins.training.gaussian_train import train

WORDS = ("cats", "dogs", "stocks", "rain", "python", "paris", "bees", "lava")
DOCS = [f"Topic {w} is discussed here. It has facts about {w} and more {w}." for w in WORDS]


def _loss(pred: PredictorHead | None = None, **kw):
    g = torch.Generator().manual_seed(0)
    q, d, n = (torch.randn(6, 4, generator=g) * 2 for _ in range(3))
    cfg = TrainConfig(train_file="-", num_slices=8, **kw)
    return training_loss(q, d, n, cfg, 3, predictor=pred)


def test_objective_parts_present_and_every_weight_acts() -> None:
    torch.manual_seed(0)
    pred = PredictorHead(4)
    total, parts = _loss(pred, lambda_reg=1.0, target_std=5.0)
    assert set(parts) == {"contrastive", "isotropy", "variance", "predictor"}
    assert all(v > 0 for v in parts.values())
    assert total.item() == pytest.approx(sum(parts.values()), rel=1e-6)
    assert set(_loss()[1]) == {"contrastive", "isotropy"}  # defaults: no variance term, no predictor
    for name, kw in (("isotropy", {"lambda_isotropy": 0.1}), ("variance", {"lambda_reg": 2.0}),
                     ("predictor", {"lambda_predictor": 0.2})):
        doubled, dparts = _loss(pred, **{"lambda_reg": 1.0, "target_std": 5.0, **kw})
        assert dparts[name] == pytest.approx(2 * parts[name], rel=1e-5), name  # weighted, not by 0
        assert doubled.item() == pytest.approx(total.item() + parts[name], rel=1e-5), name
    assert "isotropy" not in _loss(lambda_isotropy=0.0)[1] and "isotropy" not in _loss(isotropy="none")[1]
    total.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in pred.parameters())


@pytest.fixture
def pairs_file(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text("\n".join(json.dumps(p.to_dict()) for p in synthesize_pairs(DOCS)))
    return path


def _cfg(tmp_path, pairs_file, name, **kw) -> TrainConfig:
    base = dict(train_file=str(pairs_file), output_dir=str(tmp_path / name), batch_size=4, num_slices=8,
                show_progress=False, device="cpu", save_checkpoints=False)
    return TrainConfig(**{**base, **kw})


def test_options_the_model_would_ignore_are_refused(tmp_path, pairs_file) -> None:
    GaussianEmbedder(GaussianConfig(backbone="hashing:32", output_dim=8), device="cpu").save(tmp_path / "init")
    init = str(tmp_path / "init")
    with pytest.raises(ValueError, match="backbone='hashing:64' differs"):
        train(_cfg(tmp_path, pairs_file, "a", init_model=init, backbone="hashing:64"))
    train(_cfg(tmp_path, pairs_file, "a2", init_model=init, backbone="hashing:32"))  # the same one is fine
    model = GaussianEmbedder(GaussianConfig(backbone="hashing:32", output_dim=8, dropout=0.0), device="cpu")
    for kw, match in (({"dropout": 0.5}, "dropout=0.5"), ({"output_dim": 16}, "output_dim=16"),
                      ({"geometry": "inner_product"}, "geometry"), ({"freeze_early_layers": -1}, "freeze_early_layers=-1"),
                      ({"backbone": "hashing:64"}, "backbone")):
        with pytest.raises(ValueError, match=match):
            train(_cfg(tmp_path, pairs_file, "b", **kw), model=model)
    # defaults the user did not set, or values equal to the model's, are not conflicts
    out = train(_cfg(tmp_path, pairs_file, "c", output_dim=8, geometry="euclidean", backbone="hashing:32"), model=model)
    assert out["steps"] > 0 and model.head.net[2].p == 0.0


def test_prepared_negatives_stay_within_their_split(tmp_path) -> None:
    src = tmp_path / "docs.txt"
    src.write_text("\n\n".join(f"Doc {i} sentence one about item{i}. Doc {i} sentence two about item{i} too." for i in range(60)))
    paths = prepare_data(src, tmp_path / "out", negatives=True, fractions=(0.7, 0.15, 0.15), seed=0)
    train_p, val_p, test_p = (load_pairs(paths[k]) for k in ("train", "val", "test"))
    for split in (train_p, val_p, test_p):
        positives = {p.positive for p in split}
        assert all(p.negative is not None and p.negative != p.positive for p in split)
        assert {p.negative for p in split} <= positives  # drawn from the split's own documents
    held_out = {p.positive for p in val_p + test_p}
    assert not held_out & {p.negative for p in train_p}
    ev = json.loads(paths["eval"].read_text())
    assert len(ev["corpus"]) == 60  # every document, once


def test_add_negatives_pool_and_single_pair() -> None:
    pairs = synthesize_pairs(DOCS[:3])
    out = add_negatives(pairs, seed=1)
    assert [p.query for p in out] == [p.query for p in pairs]
    assert all(p.negative in {q.positive for q in pairs} - {p.positive} for p in out)
    assert add_negatives(pairs[:1])[0].negative is None  # no other document to draw
    single = add_negatives(pairs[:1], pool=pairs)[0]
    assert single.negative in {pairs[1].positive, pairs[2].positive}


def test_an_unrecorded_base_backbone_is_the_offline_minilm(minilm_path: str) -> None:
    # a save written before base_backbone was recorded loads it as None ("taken as the MiniLM
    # package"): resuming it with backbone=<the MiniLM folder> was refused as another backbone,
    # naming 'offline MiniLM' (compatibility review)
    from rag_relax_plugins.training.gaussian_setup import same_backbone

    assert same_backbone(None, minilm_path) and same_backbone(minilm_path, None) and same_backbone(None, None)
    assert not same_backbone(None, "hashing:16") and not same_backbone("/elsewhere", None)
