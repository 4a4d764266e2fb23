"""How far each DMA layout's ``m_i = 0`` is from the prompt ``CausalLMReader.generate`` reads, on
SmolLM2, in one run: the figures docs/gumbel_reranker.md and readers/dma.py quote.

Per deleted document ``i``, the absolute answer-NLL differences (nats) between the layout with
``m_i = 0`` and generate()'s pruned prompt (the kept documents concatenated), for the
``independent`` and ``concatenated`` layouts; and, the exact case, between independent ``m_i = 0``
and the independent layout of the kept documents. Two settings: the 3-document example of the
reader tests (doc_tokens 8) and the first two HotpotQA distractor rows with paragraphs and an
answer, every paragraph deleted in turn (doc_tokens 48, as training uses).

Run: ``.venv/bin/python benchmarks/bench_dma_layout_gap.py`` (needs the ``lm`` extra and the
converted SmolLM2 cache; about 4 minutes on the 2-core CPU). Writes
``benchmarks/results/dma_layout_gap.json``. Bar: the exact case stays below 1e-4 nats; the gaps to
generate()'s prompt are a report.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import Bar, check_bars, print_table, write_results

QUESTION = "What is the capital of France?"
DOCS = ["Paris is the capital of France.", "The Moon orbits Earth.", "Berlin is in Germany."]


def deletion_gaps(reader: Any, question: str, docs: Sequence[str], answer: str) -> dict[str, list[float]]:
    """Per deleted document ``i``, the absolute answer-NLL differences (nats) between

    - ``independent_vs_generate``: independent ``m_i = 0`` and generate()'s pruned prompt,
    - ``concatenated_vs_generate``: concatenated ``m_i = 0`` and generate()'s pruned prompt,
    - ``independent_vs_pruned_independent``: independent ``m_i = 0`` and the independent layout
      of the other documents.
    """
    n = len(docs)
    masks = 1.0 - torch.eye(n)  # (N, N): row i deletes document i
    out: dict[str, list[float]] = {
        "independent_vs_generate": [], "concatenated_vs_generate": [], "independent_vs_pruned_independent": []
    }
    with torch.inference_mode():
        ind = reader.layout_nll(reader.layout(question, docs, answer, variant="independent"), masks)  # (N,)
        conc = reader.layout_nll(reader.layout(question, docs, answer, variant="concatenated"), masks)  # (N,)
        for i in range(n):
            keep = [d for j, d in enumerate(docs) if j != i]
            ones = torch.ones(n - 1)
            # the prompt generate() builds: build_layout(variant="concatenated") of the kept documents
            gen = float(reader.layout_nll(reader.layout(question, keep, answer, variant="concatenated"), ones)[0])
            pruned = float(reader.layout_nll(reader.layout(question, keep, answer, variant="independent"), ones)[0])
            out["independent_vs_generate"].append(abs(float(ind[i]) - gen))
            out["concatenated_vs_generate"].append(abs(float(conc[i]) - gen))
            out["independent_vs_pruned_independent"].append(abs(float(ind[i]) - pruned))
    return out


def hotpot_gaps(reader: Any, rows: int = 2) -> dict[str, list[float]]:
    """:func:`deletion_gaps` over the first ``rows`` HotpotQA rows with paragraphs and an answer."""
    from rag_relax_plugins.datasets.hotpotqa import load_hotpotqa_distractor

    examples = [ex for ex in load_hotpotqa_distractor(limit=4) if ex.paragraphs and ex.answer.strip()][:rows]
    gaps: dict[str, list[float]] = {}
    for ex in examples:
        for name, values in deletion_gaps(reader, ex.question, ex.paragraph_texts(), ex.answer).items():
            gaps.setdefault(name, []).extend(values)
    return gaps


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--no-write", action="store_true", help="print only; write no results file")
    args = ap.parse_args(argv)
    from rag_relax_plugins.readers.causal_lm import CausalLMReader

    torch.set_num_threads(1)
    torch.manual_seed(0)
    r8 = CausalLMReader(device="cpu", doc_tokens=8)
    r48 = CausalLMReader(model=r8.model, tokenizer=r8.tokenizer, device="cpu", doc_tokens=48)
    example = deletion_gaps(r8, QUESTION, DOCS, "Paris")
    hotpot = hotpot_gaps(r48)
    rows = [[name, ", ".join(f"{v:.2f}" for v in example[name]),
             f"median {statistics.median(hotpot[name]):.2f}, max {max(hotpot[name]):.2f} (n={len(hotpot[name])})"]
            for name in example]
    print_table(rows, ["answer-NLL gap (nats)", "3-document example, doc_tokens 8", "HotpotQA rows, doc_tokens 48"])
    if not args.no_write:
        summary = {name: {"median": statistics.median(v), "max": max(v), "n": len(v)} for name, v in hotpot.items()}
        print("wrote", write_results("dma_layout_gap", {"example": example, "hotpot": summary}))
    exact = max(example["independent_vs_pruned_independent"] + hotpot["independent_vs_pruned_independent"])
    return check_bars([Bar("independent m_i = 0 vs the pruned independent layout (nats)", exact, "<=", 1e-4)])


if __name__ == "__main__":
    raise SystemExit(main())
