"""rag-relax-plugins: learned, differentiable retrieval and reranking for RAG.

Importing this package is cheap: it loads no torch, no LangChain, no LlamaIndex and no
DeepEval. Import what you need from the subpackages:

- ``rag_relax_plugins.core``: differentiable ranking ops, losses, metrics, fusion (torch).
- ``rag_relax_plugins.embedders`` / ``index`` / ``rerankers`` / ``readers`` / ``training``.
- ``rag_relax_plugins.langchain`` and ``rag_relax_plugins.llama_index``: framework adapters.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
