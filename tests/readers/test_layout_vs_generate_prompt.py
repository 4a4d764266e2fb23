"""How far ``m_i = 0`` in each DMA layout is from deleting document ``i`` from the prompt
:meth:`CausalLMReader.generate` reads (the concatenated prompt of the other documents, contiguous
positions): the measurement docs/gumbel_reranker.md and readers/dma.py quote.

What is exact (to float32 noise) is deleting document ``i`` from the *independent* layout itself;
neither layout's ``m_i = 0`` equals the prompt ``generate`` reads. The fast test measures the 3-document
example of test_smollm_reader.py (doc_tokens 8); the slow one the first HotpotQA training rows of the
shared data (doc_tokens 48, as training uses). The measurement itself is
``benchmarks/bench_dma_layout_gap.py``, which records the figures.
"""

from __future__ import annotations

import statistics
import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from bench_dma_layout_gap import DOCS, deletion_gaps, hotpot_gaps

Q = "What is the capital of France?"

pytestmark = [pytest.mark.models, pytest.mark.usefixtures("one_torch_thread")]


def test_independent_zero_mask_is_the_pruned_independent_layout_not_generates_prompt(reader: Any) -> None:
    gaps = deletion_gaps(reader, Q, DOCS, "Paris")
    assert max(gaps["independent_vs_pruned_independent"]) < 1e-4  # exact: measured below 3e-6
    # generate()'s prompt is another one: 0.69, 0.21 and 0.35 nats here (concatenated: 0.52, 0.28, 0.13)
    assert [round(g, 2) for g in gaps["independent_vs_generate"]] == pytest.approx([0.69, 0.21, 0.35], abs=0.02)
    assert [round(g, 2) for g in gaps["concatenated_vs_generate"]] == pytest.approx([0.52, 0.28, 0.13], abs=0.02)


@pytest.mark.slow
def test_gaps_on_hotpot_rows(reader: Any) -> None:
    """Two HotpotQA rows, every one of their 10 paragraphs deleted in turn (20 deletions), doc_tokens 48."""
    from rag_relax_plugins.readers.causal_lm import CausalLMReader

    r48 = CausalLMReader(model=reader.model, tokenizer=reader.tokenizer, device="cpu", doc_tokens=48)
    try:
        gaps = hotpot_gaps(r48)
    except FileNotFoundError as exc:
        pytest.skip(f"no HotpotQA data: {exc}")
    for name, values in gaps.items():
        print(f"{name}: n={len(values)} median {statistics.median(values):.3f} max {max(values):.3g}")
    assert max(gaps["independent_vs_pruned_independent"]) < 1e-4
    assert 0.2 < statistics.median(gaps["independent_vs_generate"]) < 0.5  # measured 0.34 (max 0.58)
    assert statistics.median(gaps["concatenated_vs_generate"]) < 0.2  # measured 0.10 (max 0.36)
