"""Frozen-prefix cache of the Gaussian embedder: same outputs, same gradients, same training."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from rag_relax_plugins.embedders._prefix_cache import FrozenPrefixCache
from rag_relax_plugins.embedders.gaussian import GaussianEmbedder
from rag_relax_plugins.embedders.gaussian_config import GaussianConfig

TEXTS = [
    "cats purr softly",
    "a much longer sentence about the history of the Roman empire, its emperors and their many wars",
    "rain is expected tomorrow in the north",
    "x",
    "the stock market fell sharply after the announcement of new tariffs on steel",
]


def _model(freeze_layers: int = 4, *, no_dropout: bool = False) -> GaussianEmbedder:
    torch.manual_seed(0)
    model = GaussianEmbedder(GaussianConfig(output_dim=32, freeze="first_n", freeze_layers=freeze_layers, dropout=0.0), device="cpu")
    if no_dropout:  # makes training-mode forwards deterministic, so runs can be compared exactly
        for module in model.modules():
            if isinstance(module, nn.Dropout):
                module.p = 0.0
    return model


def _grads(model: GaussianEmbedder) -> list[torch.Tensor]:
    return [p.grad.clone() for p in model.parameters() if p.grad is not None]


def test_cached_forward_and_gradients_equal_uncached(minilm_path) -> None:
    model = _model().eval()
    ref = model(TEXTS)
    ref.pow(2).sum().backward()
    g_ref = _grads(model)
    model.zero_grad(set_to_none=True)
    cache = model.enable_prefix_cache()
    first = model(TEXTS[:2])  # fills two texts
    out = model(TEXTS)  # two hits, three misses, new order of lengths
    assert cache.hits == 2 and cache.misses == 5 and len(cache) == 5
    assert torch.allclose(first, ref[:2], atol=1e-5)
    assert torch.allclose(out, ref, atol=1e-5)
    out.pow(2).sum().backward()
    g = _grads(model)
    assert len(g) == len(g_ref) > 10  # layers 5-6 and the head get gradients
    scale = max(b.abs().max().item() for b in g_ref)  # some grads are ~0 in exact math (key biases): absolute scale
    for a, b in zip(g, g_ref, strict=True):
        assert torch.allclose(a, b, rtol=1e-3, atol=1e-5 * scale)
    auto = model.backbone[0].auto_model
    assert len(auto.encoder.layer) == 6 and auto.embeddings.__class__.__name__ != "_CachedStates"  # swaps undone
    assert auto.encoder.layer[3].attention.self.query.weight.grad is None  # frozen stays frozen


def test_cached_encode_equals_plain_encode_and_keeps_order(minilm_path) -> None:
    model = _model()
    plain = model.encode(TEXTS, batch_size=2)
    model.enable_prefix_cache()
    cached = model.encode(TEXTS, batch_size=2)
    again = model.encode(list(reversed(TEXTS)), batch_size=3)
    assert not cached.is_inference() and cached.shape == (5, 32)
    assert torch.allclose(cached, plain, atol=1e-5)
    assert torch.allclose(again, plain.flip(0), atol=1e-5)
    model.train()
    model(TEXTS).sum().backward()  # states cached during encode are usable for training


def test_lru_eviction_keeps_results_right(minilm_path) -> None:
    model = _model().eval()
    ref = model(TEXTS)
    cache = model.enable_prefix_cache(max_texts=2)
    out = model(TEXTS)
    assert len(cache) == 2
    assert torch.allclose(out, ref, atol=1e-5)
    assert torch.allclose(model(TEXTS[::-1]), ref.flip(0), atol=1e-5)


def test_enabling_twice_keeps_states_and_apply_freeze_drops_them(minilm_path) -> None:
    model = _model()
    cache = model.enable_prefix_cache()
    model.encode(TEXTS[:3])
    assert model.enable_prefix_cache() is cache and len(cache) == 3
    model.disable_prefix_cache()
    assert model.enable_prefix_cache() is not cache
    model.apply_freeze()
    assert model.prefix_cache is None


def test_bad_configurations_raise(minilm_path) -> None:
    with pytest.raises(ValueError, match="first_n"):
        GaussianEmbedder(GaussianConfig(output_dim=8, freeze="none"), device="cpu").enable_prefix_cache()
    with pytest.raises(ValueError, match="first_n"):
        GaussianEmbedder(GaussianConfig(output_dim=8, backbone="hashing:16", freeze="all"), device="cpu").enable_prefix_cache()
    model = _model()
    with pytest.raises(ValueError, match="num_frozen"):
        FrozenPrefixCache(model.backbone, 7)
    with pytest.raises(ValueError, match="num_frozen"):
        FrozenPrefixCache(model.backbone, 0)
    with pytest.raises(ValueError, match="max_texts"):
        FrozenPrefixCache(model.backbone, 2, max_texts=0)
    with pytest.raises(ValueError, match="chunk"):
        FrozenPrefixCache(model.backbone, 2, chunk=0)
    with pytest.raises(ValueError, match="at least one string"):  # was torch.cat of nothing
        FrozenPrefixCache(model.backbone, 2).sentence_embeddings([], torch.device("cpu"))
    with pytest.raises(ValueError, match="BERT-like"):
        FrozenPrefixCache([nn.Identity()], 2)


def test_training_with_cache_matches_training_without(minilm_path, tmp_path) -> None:
    from rag_relax_plugins.training.gaussian_train import TrainConfig, train

    pairs = tmp_path / "p.jsonl"
    rows = [{"query": f"what about {t.split()[0]}?", "positive": t, "negative": TEXTS[(i + 1) % 5]} for i, t in enumerate(TEXTS)]
    pairs.write_text("\n".join(json.dumps(r) for r in rows * 2), encoding="utf-8")
    losses = []
    for cached in (False, True):
        cfg = TrainConfig(train_file=str(pairs), val_file=str(pairs), output_dir=str(tmp_path / f"run{cached}"), output_dim=32,
                          batch_size=5, epochs=2, freeze_early_layers=4, dropout=0.0, show_progress=False, device="cpu",
                          save_checkpoints=False, cache_frozen_prefix=cached, learning_rate=1e-4)
        model = _model(no_dropout=True)
        out = train(cfg, model=model)
        assert model.prefix_cache is None  # train() drops the cache it made
        losses.append(out["history"]["step_loss"] + out["history"]["val_loss"])
    assert len(losses[0]) == 6
    assert torch.allclose(torch.tensor(losses[1]), torch.tensor(losses[0]), rtol=1e-4)
    with pytest.raises(ValueError, match="cache_frozen_prefix"):
        TrainConfig(train_file=str(pairs), cache_frozen_prefix=True)


def test_cache_fills_in_float32_under_autocast(minilm_path) -> None:
    model = _model().eval()
    plain = model.enable_prefix_cache()
    with torch.no_grad():
        model(TEXTS)
    ref = {t: plain._states[t].clone() for t in TEXTS}
    model.disable_prefix_cache()
    cache = model.enable_prefix_cache()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        model(TEXTS)  # a mixed-precision training step fills the cache
    for t in TEXTS:
        assert cache._states[t].dtype == torch.float32
        assert torch.equal(cache._states[t], ref[t])  # later float32 encodes reuse exact float32 states
