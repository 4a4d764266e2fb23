"""The embedding wrappers refuse options a passed model would leave unused (they were ignored)."""

from __future__ import annotations

import functools

import pytest

from rag_relax_plugins.embedders.gaussian import GaussianEmbedder
from rag_relax_plugins.embedders.gaussian_config import GaussianConfig


@functools.lru_cache(maxsize=1)
def _model() -> GaussianEmbedder:
    return GaussianEmbedder(GaussianConfig(backbone="hashing:32", output_dim=8, dropout=0.0), device="cpu")


def _wrappers():
    from rag_relax_plugins.langchain import GaussianEmbeddings
    from rag_relax_plugins.llama_index import GaussianEmbedding

    return [GaussianEmbeddings, GaussianEmbedding]


@pytest.mark.parametrize("index", [0, 1])
def test_model_path_beside_model_is_refused(index: int, tmp_path) -> None:
    with pytest.raises(ValueError, match="model_path or model, not both"):
        _wrappers()[index](str(tmp_path), model=_model())


@pytest.mark.parametrize("index", [0, 1])
def test_a_device_other_than_the_models_is_refused(index: int, monkeypatch) -> None:
    import torch

    import rag_relax_plugins.core.device as device

    monkeypatch.setattr(device, "resolve_device", torch.device)  # no CUDA here: as if there were
    with pytest.raises(ValueError, match="the model is on cpu"):
        _wrappers()[index](model=_model(), device="cuda")


@pytest.mark.parametrize("index", [0, 1])
def test_the_models_own_device_is_accepted(index: int) -> None:
    emb = _wrappers()[index](model=_model(), device="cpu")
    want = _model().encode(["a text"])[0].tolist()
    got = emb.embed_query("a text") if index == 0 else emb.get_query_embedding("a text")
    assert got == pytest.approx(want, abs=1e-6)  # the passed model itself, on its device
