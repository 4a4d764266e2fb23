"""LangChain adapters (needs the ``langchain`` extra: ``pip install "rag-relax-plugins[langchain]"``).

Classes are imported lazily so that ``import rag_relax_plugins.langchain`` fails early and
clearly when langchain-core is missing, and costs nothing else.
"""

from __future__ import annotations

import importlib
from typing import Any

from rag_relax_plugins._errors import require

require("langchain_core", "langchain")

# public name -> module that defines it
_EXPORTS: dict[str, str] = {
    "GaussianEmbeddings": "rag_relax_plugins.langchain.embeddings",
    "MoLVectorStore": "rag_relax_plugins.langchain.vectorstore",
    "GumbelReranker": "rag_relax_plugins.langchain.compressors",
    "MaxSimReranker": "rag_relax_plugins.langchain.compressors",
}

__all__ = ["GaussianEmbeddings", "GumbelReranker", "MaxSimReranker", "MoLVectorStore"]  # pinned by a test: same names as _EXPORTS


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
