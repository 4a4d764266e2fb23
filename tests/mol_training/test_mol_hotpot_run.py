"""HotpotQA run with the hashing test double: feature cache, cosine baseline, MoL head training."""

from __future__ import annotations

import pytest
import torch

from rag_relax_plugins.datasets.hotpotqa import HotpotExample
from rag_relax_plugins.embedders.hashing import HashingEncoder
from rag_relax_plugins.training.mol_data import hotpot_open_split
from rag_relax_plugins.training.mol_recipes import RecipeConfig
from rag_relax_plugins.training.mol_runs import encode_hotpot, hotpot_cosine_metrics, run_hotpot
from rag_relax_plugins.training.mol_train import MoLTrainConfig

TOPICS = ["volcano lava eruption", "honey bees colony", "chess opening grandmaster", "coffee beans roast",
          "rain flood valley", "stock market investors", "python programming language", "eiffel tower paris"]


def _examples() -> list[HotpotExample]:
    out = []
    for i in range(16):
        topic = TOPICS[i % len(TOPICS)]
        gold = (f"Gold {i}", (f"All about {topic}, part {i}.",))
        other = (f"Other {i}", (f"Unrelated text number {i} on {TOPICS[(i + 3) % len(TOPICS)]}.",))
        out.append(HotpotExample(f"q{i}", f"What about {topic} {i}?", "x", "bridge", "easy",
                                 (gold, other), ((f"Gold {i}", 0),)))
    return out


class _Counting(HashingEncoder):
    calls = 0

    def encode(self, texts, **kw):  # type: ignore[no-untyped-def, override]
        type(self).calls += 1
        return super().encode(texts, **kw)


def test_feature_cache_is_reused_only_for_the_same_texts(tmp_path):
    split = hotpot_open_split(_examples())
    enc = _Counting(dim=64)
    cache = tmp_path / "f.safetensors"
    a = encode_hotpot(split, enc, cache=cache)
    calls = _Counting.calls
    b = encode_hotpot(split, enc, cache=cache)
    assert _Counting.calls == calls + 1  # served from the cache (one call: the 2-text probe)
    torch.testing.assert_close(a.docs, b.docs)
    other = hotpot_open_split(_examples(), split_seed=1)
    encode_hotpot(other, enc, cache=cache)
    assert _Counting.calls == calls + 4  # different texts: encoded again (3 calls)


def test_run_hotpot_trains_a_head_and_reports_cosine(tmp_path):
    split = hotpot_open_split(_examples())
    feats = encode_hotpot(split, HashingEncoder(dim=32))
    cosine = hotpot_cosine_metrics(feats)
    assert 0.0 < cosine["recall@10"] <= 1.0
    cfg = MoLTrainConfig(epochs=3, batch_size=4, lr=1e-3, num_negatives=4, device="cpu", show_progress=False)
    recipe = RecipeConfig(num_query_embeddings=2, num_item_embeddings=2)
    rep = run_hotpot(cfg, recipe, features=feats, save_to=tmp_path / "model", warm_start_noise=0.0)
    assert rep["cosine_metrics"] == cosine
    assert rep["steps"] == 6 and set(rep["metrics"]) == {"recall@10", "ndcg@10"}
    assert (tmp_path / "model" / "similarity.safetensors").is_file()
    # a near-zero learning rate keeps the identity warm start: the head then ranks like cosine
    still = run_hotpot(MoLTrainConfig(epochs=1, batch_size=4, lr=1e-12, device="cpu", show_progress=False),
                       recipe, features=feats, warm_start_noise=0.0)
    assert still["metrics"] == pytest.approx(cosine)
    dot = run_hotpot(cfg, RecipeConfig(similarity="dot"), features=feats)
    assert dot["metrics"] == cosine and dot["steps"] == 0


def test_feature_cache_is_not_reused_for_another_encoder(tmp_path):
    # review 2026-12-02: `train-mol --dataset hotpotqa --model other` reused MiniLM's features
    split = hotpot_open_split(_examples())
    cache = tmp_path / "f.safetensors"
    a = encode_hotpot(split, _Counting(dim=64), cache=cache)
    calls = _Counting.calls
    other_seed = encode_hotpot(split, _Counting(dim=64, seed=5), cache=cache)  # another setting
    assert _Counting.calls == calls + 3 and not torch.allclose(a.docs, other_seed.docs)


class _Retrained(_Counting):
    """Same class and settings, other vectors: weights changed in the same model folder."""

    def encode(self, texts, **kw):  # type: ignore[no-untyped-def]
        return torch.nn.functional.normalize(super().encode(texts, **kw) + 0.5, dim=-1)


def test_feature_cache_is_not_reused_when_the_weights_changed(tmp_path):
    split = hotpot_open_split(_examples())
    cache = tmp_path / "f.safetensors"
    encode_hotpot(split, _Counting(dim=64), cache=cache)
    fresh = encode_hotpot(split, _Retrained(dim=64), cache=cache)
    torch.testing.assert_close(fresh.docs, _Retrained(dim=64).encode(split.doc_texts, normalize=True).float())


def test_corrupt_feature_cache_is_encoded_again(tmp_path, caplog):
    """A truncated cache file was a SafetensorError traceback from train-mol; it is a cache."""
    split = hotpot_open_split(_examples())
    cache = tmp_path / "f.safetensors"
    a = encode_hotpot(split, HashingEncoder(dim=64), cache=cache)
    cache.write_bytes(cache.read_bytes()[:100])
    with caplog.at_level("WARNING"):
        b = encode_hotpot(split, HashingEncoder(dim=64), cache=cache)
    assert "not a readable feature cache" in caplog.text
    torch.testing.assert_close(a.docs, b.docs)
    c = encode_hotpot(split, HashingEncoder(dim=64), cache=cache)  # the rewritten file serves again
    torch.testing.assert_close(a.docs, c.docs)


@pytest.mark.parametrize("noise", [float("nan"), float("inf"), -0.5])
def test_a_bad_warm_start_noise_is_refused_before_encoding(tmp_path, noise):
    """nan / inf went through, and the run failed after encoding the corpus with "scores contains
    NaN" (review); nothing is read or encoded now."""
    cfg = MoLTrainConfig(epochs=1, batch_size=4, device="cpu", show_progress=False)
    with pytest.raises(ValueError, match="warm_start_noise must be a finite number >= 0"):
        run_hotpot(cfg, RecipeConfig(), data=tmp_path / "missing.jsonl", warm_start_noise=noise)


def test_an_interrupted_feature_cache_write_leaves_no_temporary_file(tmp_path, monkeypatch):
    """The cache was written to a temp file then renamed outside any clean-up (review)."""
    import rag_relax_plugins._io as io_module

    def interrupted(src, dst):  # type: ignore[no-untyped-def]
        raise KeyboardInterrupt

    split = hotpot_open_split(_examples())
    monkeypatch.setattr(io_module.os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        encode_hotpot(split, HashingEncoder(dim=32), cache=tmp_path / "f.safetensors")
    monkeypatch.undo()
    assert list(tmp_path.iterdir()) == []
