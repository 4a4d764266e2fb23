"""Gaussian embedder model: head init, freezing, persistence, geometry, retriever, transforms."""

from __future__ import annotations

import functools
import json

import pytest
import torch

from rag_relax_plugins.embedders.gaussian import (
    GaussianEmbedder,
    ProjectionHead,
    geometry_scores,
    relevance_from_scores,
)
from rag_relax_plugins.embedders.gaussian_config import GaussianConfig
from rag_relax_plugins.embedders.gaussian_retriever import GaussianRetriever
from rag_relax_plugins.embedders.gaussian_transforms import (
    cosine_compatible_documents,
    cosine_compatible_queries,
    extra_dims,
)

TEXTS = ["cats purr softly", "the stock market fell", "rain is expected tomorrow", "bees make honey"]


def _g(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@functools.lru_cache(maxsize=1)
def _minilm_first_n() -> GaussianEmbedder:
    return GaussianEmbedder(GaussianConfig(output_dim=32, freeze="first_n", freeze_layers=2), device="cpu")


@pytest.mark.parametrize("out_dim", [16, 24])
def test_identity_init_preserves_geometry(out_dim: int) -> None:
    head = ProjectionHead(16, 32, out_dim, dropout=0.0).double().eval()
    x = torch.nn.functional.normalize(torch.randn(10, 16, dtype=torch.float64, generator=_g()), dim=-1)
    y = head(x)
    if out_dim == 16:
        assert torch.allclose(y, 4.0 * x, atol=1e-10)  # sqrt(16) * x
    else:  # semi-orthogonal with orthonormal columns: an isometry up to the sqrt(in) scale
        assert torch.allclose(torch.cdist(y, y), 4.0 * torch.cdist(x, x), atol=1e-9)
    with pytest.raises(ValueError, match="hidden_dim"):
        ProjectionHead(16, 20, 16, dropout=0.0)
    with pytest.raises(ValueError, match="init"):
        ProjectionHead(16, 32, 16, dropout=0.0, init="zeros")


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="output_dim"):
        GaussianConfig(output_dim=0)
    with pytest.raises(TypeError, match="output_dim"):
        GaussianConfig(output_dim=True)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="dropout"):
        GaussianConfig(dropout=1.0)
    with pytest.raises(ValueError, match="freeze"):
        GaussianConfig(freeze="half")
    with pytest.raises(ValueError, match="format_version"):
        GaussianConfig.from_dict({"format_version": 99})
    with pytest.raises(ValueError, match="unknown keys"):
        GaussianConfig.from_dict({"output_dim": 8, "colour": "red"})
    cfg = GaussianConfig(output_dim=8, geometry="inner_product")
    assert GaussianConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg


def test_hub_id_is_refused_without_network() -> None:
    with pytest.raises(FileNotFoundError, match="hub id"):
        GaussianEmbedder(GaussianConfig(backbone="sentence-transformers/all-MiniLM-L6-v2"), device="cpu")


def test_freeze_first_n_and_eval_of_frozen_parts(minilm_path) -> None:
    model = _minilm_first_n()
    auto = model.backbone[0].auto_model
    assert not any(p.requires_grad for p in auto.embeddings.parameters())
    assert not any(p.requires_grad for layer in auto.encoder.layer[:2] for p in layer.parameters())
    assert all(p.requires_grad for layer in auto.encoder.layer[2:] for p in layer.parameters())
    model.train()
    assert not auto.encoder.layer[0].training and auto.encoder.layer[3].training and model.head.training
    out = model(TEXTS[:2])
    out.sum().backward()
    assert auto.encoder.layer[5].attention.self.query.weight.grad is not None
    assert auto.encoder.layer[0].attention.self.query.weight.grad is None
    model.zero_grad(set_to_none=True)
    with pytest.raises(ValueError, match="freeze_layers"):
        GaussianEmbedder(GaussianConfig(freeze="first_n", freeze_layers=7), device="cpu", backbone=model.backbone)


def test_encode_deterministic_and_save_load_trained_backbone(minilm_path, tmp_path) -> None:
    model = _minilm_first_n()
    model.train()
    a = model.encode(TEXTS, batch_size=2)
    assert model.training  # encode restores the mode
    assert a.shape == (4, 32) and a.dtype == torch.float32 and not a.is_inference()
    assert torch.equal(a, model.encode(TEXTS, batch_size=2))  # deterministic inference
    assert torch.allclose(a, model.encode(TEXTS, batch_size=3), atol=1e-5)  # padding changes only rounding
    model.save(tmp_path / "m")
    saved = json.loads((tmp_path / "m" / "config.json").read_text())
    assert saved["backbone_subfolder"] == "backbone" and (tmp_path / "m" / "backbone").is_dir()
    assert not list((tmp_path / "m").rglob("*.bin")) and not list(tmp_path.glob(".m.*"))
    loaded = GaussianEmbedder.load(tmp_path / "m", device="cpu")
    assert torch.allclose(loaded.encode(TEXTS), a, atol=1e-5)
    refrozen = GaussianEmbedder.load(tmp_path / "m", device="cpu", freeze="all")
    assert not any(p.requires_grad for p in refrozen.backbone.parameters())
    with pytest.raises(ValueError, match="output_dim"):
        GaussianEmbedder.load(tmp_path / "m", device="cpu", output_dim=8)
    with pytest.raises(TypeError, match="texts"):
        model.encode("a single string")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="batch_size"):
        model.encode(TEXTS, batch_size=0)


def test_save_frozen_refers_to_package_and_is_atomic(tmp_path) -> None:
    model = GaussianEmbedder(GaussianConfig(backbone="hashing:32", output_dim=8, dropout=0.0), device="cpu")
    model.save(tmp_path / "m")
    model.save(tmp_path / "m")  # overwrite in place
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == [".rag_relax_save.json", "config.json", "head.safetensors"]
    assert [p.name for p in tmp_path.iterdir()] == ["m"]
    (tmp_path / "m" / "head.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match=r"head\.safetensors"):
        GaussianEmbedder.load(tmp_path / "m")


def test_geometry_scores_and_relevance() -> None:
    q = torch.randn(3, 5, dtype=torch.float64, generator=_g())
    d = torch.randn(7, 5, dtype=torch.float64, generator=_g(1))
    brute = torch.tensor([[-float((a - b).norm()) for b in d] for a in q], dtype=torch.float64)
    assert torch.allclose(geometry_scores(q, d, "euclidean"), brute)
    assert torch.allclose(geometry_scores(q, d, "inner_product"), (q[:, None] * d[None]).sum(-1))
    for geo in ("euclidean", "inner_product"):
        s = geometry_scores(q, d, geo)
        r = relevance_from_scores(s, geo, 5)
        assert ((r >= 0) & (r <= 1)).all()
        assert torch.equal(s.argsort(dim=1), r.argsort(dim=1))
    assert relevance_from_scores(torch.zeros(1), "euclidean", 5).item() == 1.0
    with pytest.raises(ValueError, match="geometry"):
        geometry_scores(q, d, "cosine")
    with pytest.raises(ValueError, match="last dimension"):
        geometry_scores(q, d[:, :4], "euclidean")


@pytest.mark.parametrize("geometry", ["euclidean", "inner_product"])
def test_cosine_transforms_rank_exactly_like_geometry(geometry: str) -> None:
    q = 3 * torch.randn(20, 8, dtype=torch.float64, generator=_g(2))
    d = 3 * torch.randn(300, 8, dtype=torch.float64, generator=_g(3))
    dq, dd = cosine_compatible_queries(q, geometry), cosine_compatible_documents(d, geometry, 1e3)
    assert dq.shape == (20, 8 + extra_dims(geometry)) and dd.shape == (300, 8 + extra_dims(geometry))
    assert torch.allclose(dd.norm(dim=-1), torch.ones(300, dtype=torch.float64))
    cos = dq @ dd.T
    exact = geometry_scores(q, d, geometry)
    assert torch.equal(cos.argsort(dim=1, descending=True), exact.argsort(dim=1, descending=True))
    with pytest.raises(ValueError, match="max_norm"):
        cosine_compatible_documents(d, geometry, 1.0)


def test_retriever() -> None:
    model = GaussianEmbedder(GaussianConfig(backbone="hashing:128", output_dim=128, dropout=0.0), device="cpu")
    ret = GaussianRetriever(model, batch_size=2)
    with pytest.raises(ValueError, match="empty"):
        ret.retrieve("x")
    ret.add_documents(TEXTS[:2])
    ret.add_documents(TEXTS[2:])
    assert len(ret) == 4 and ret.vectors.shape == (4, 128)
    hits = ret.retrieve("bees and honey", top_k=10)
    assert len(hits) == 4 and hits[0][0] == "bees make honey"
    assert [s for _, s in hits] == sorted((s for _, s in hits), reverse=True)
    exact = model.score(model.encode(["bees and honey"]), model.encode(TEXTS))[0]
    assert hits[0][1] == pytest.approx(float(exact.max()), abs=1e-4)
    batch = ret.retrieve_batch(["bees and honey", "cats purring"], top_k=1)
    assert batch[0][0][0] == "bees make honey" and batch[1][0][0] == "cats purr softly"
    with pytest.raises(ValueError, match="top_k"):
        ret.retrieve("x", top_k=0)
    with pytest.raises(TypeError, match="query"):
        ret.retrieve(["x"])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="at least one"):
        ret.add_documents([])
    with pytest.raises(TypeError, match="model"):
        GaussianRetriever(object())


@pytest.mark.slow
def test_minilm_partially_frozen_training_smoke(minilm_path, tmp_path) -> None:
    from rag_relax_plugins.training.gaussian_train import TrainConfig, train

    pairs = tmp_path / "p.jsonl"
    rows = [{"query": f"what about {t.split()[0]}?", "positive": t} for t in TEXTS * 2]
    pairs.write_text("\n".join(json.dumps(r) for r in rows), encoding="utf-8")
    out = train(TrainConfig(train_file=str(pairs), output_dir=str(tmp_path / "run"), output_dim=32, batch_size=4, max_steps=2,
                            freeze_early_layers=4, show_progress=False, device="cpu", save_checkpoints=False))
    assert out["steps"] == 2 and all(torch.isfinite(torch.tensor(out["history"]["step_loss"])))
    model = GaussianEmbedder.load(tmp_path / "run" / "final_model", device="cpu")
    assert model.config.freeze == "first_n" and model.encode(TEXTS).shape == (4, 32)


@pytest.mark.parametrize("setup", ["hashing", "minilm", "minilm_prefix_cache"])
def test_forward_of_an_empty_list_is_empty_on_every_backbone(setup: str) -> None:
    """forward([]) gave (0, D) on the hashing backbone but a ValueError from inside transformers
    ("You must specify exactly one of input_ids or inputs_embeds") on MiniLM."""
    if setup == "hashing":
        model = GaussianEmbedder(GaussianConfig(backbone="hashing:32", output_dim=8), device="cpu")
    else:
        model = GaussianEmbedder(GaussianConfig(output_dim=8, freeze="first_n", freeze_layers=3), device="cpu")
        if setup == "minilm_prefix_cache":
            model.enable_prefix_cache()
    out = model([])
    assert out.shape == (0, 8) and out.dtype == torch.float32
    assert model.backbone_features([]).shape == (0, model.head.in_dim)
    assert model(["one text"]).shape == (1, 8)  # the model still works after it
