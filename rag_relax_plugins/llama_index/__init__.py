"""LlamaIndex adapters (needs the ``llamaindex`` extra: ``pip install "rag-relax-plugins[llamaindex]"``).

Classes are imported lazily; importing this subpackage checks that llama-index-core is present.
"""

from __future__ import annotations

import importlib
from typing import Any

from rag_relax_plugins._errors import require

require("llama_index.core", "llamaindex")

# public name -> module that defines it
_EXPORTS: dict[str, str] = {
    "GaussianEmbedding": "rag_relax_plugins.llama_index.embeddings",
    "MoLVectorStore": "rag_relax_plugins.llama_index.vector_store",
    "GumbelRerank": "rag_relax_plugins.llama_index.postprocessors",
    "MaxSimRerank": "rag_relax_plugins.llama_index.postprocessors",
}

__all__ = ["GaussianEmbedding", "GumbelRerank", "MaxSimRerank", "MoLVectorStore"]  # pinned by a test: same names as _EXPORTS


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
