"""The public names of the adapter subpackages are pinned, and each one resolves to a class."""

from __future__ import annotations

import importlib

import pytest

EXPECTED = {
    "rag_relax_plugins.langchain": ["GaussianEmbeddings", "GumbelReranker", "MaxSimReranker", "MoLVectorStore"],
    "rag_relax_plugins.llama_index": ["GaussianEmbedding", "GumbelRerank", "MaxSimRerank", "MoLVectorStore"],
}


@pytest.mark.parametrize("package", sorted(EXPECTED))
def test_all_is_pinned_and_every_name_resolves(package: str) -> None:
    mod = importlib.import_module(package)
    assert mod.__all__ == EXPECTED[package]
    assert sorted(mod._EXPORTS) == EXPECTED[package]
    for name in mod.__all__:
        obj = getattr(mod, name)
        assert isinstance(obj, type) and obj.__name__ == name
    with pytest.raises(AttributeError, match="no attribute"):
        mod.NotAThing
