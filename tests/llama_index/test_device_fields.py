"""The adapters' ``device`` fields take a ``torch.device`` too (stored as its name); they took
strings only, so ``device=torch.device("cuda")`` was a pydantic error."""

from __future__ import annotations

import pytest
import torch


def _adapters():
    from rag_relax_plugins.langchain import GumbelReranker, MaxSimReranker
    from rag_relax_plugins.llama_index import GumbelRerank, MaxSimRerank

    return [MaxSimReranker, GumbelReranker, MaxSimRerank, GumbelRerank]


@pytest.fixture(scope="module")
def saved(minilm_path: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    from rag_relax_plugins.rerankers.gumbel import GumbelReranker
    from rag_relax_plugins.rerankers.maxsim import MaxSimConfig, MaxSimReranker

    root = tmp_path_factory.mktemp("saved")
    MaxSimReranker(MaxSimConfig(backbone=minilm_path, projection_dim=8, max_seq_length=32), device="cpu").save(root / "m")
    GumbelReranker(backbone=minilm_path, max_length=32, device="cpu").save_pretrained(root / "g")
    return {"maxsim": str(root / "m"), "gumbel": str(root / "g")}


@pytest.mark.parametrize("index", range(4))
def test_a_torch_device_is_stored_as_its_name(index: int, saved: dict[str, str]) -> None:
    cls = _adapters()[index]
    path = saved["maxsim" if "MaxSim" in cls.__name__ else "gumbel"]
    adapter = cls(model_path=path, device=torch.device("cpu"))
    assert adapter.device == "cpu"
    with pytest.raises(ValueError):
        cls(model_path=path, device=3)


def test_the_llama_index_embedding_takes_a_torch_device() -> None:
    from rag_relax_plugins.embedders.gaussian import GaussianEmbedder
    from rag_relax_plugins.embedders.gaussian_config import GaussianConfig
    from rag_relax_plugins.llama_index import GaussianEmbedding

    model = GaussianEmbedder(GaussianConfig(backbone="hashing:32", output_dim=8, dropout=0.0), device="cpu")
    assert GaussianEmbedding(model=model, device=torch.device("cpu")).device == "cpu"
