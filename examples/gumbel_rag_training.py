"""G-Rerank on real data, short run: train a reranker from SmolLM2's answer loss, then use it for RAG.

    .venv/bin/python examples/gumbel_rag_training.py                 # ~4 questions, CPU, minutes
    .venv/bin/python examples/gumbel_rag_training.py --rows 400 --epochs 1 --device cuda

Steps: load HotpotQA distractor rows (first 400 = train split, last 100 = test), train the MiniLM
cross-encoder reranker with the frozen SmolLM2 reader (answer NLL through the DMA mask; no
relevance labels), compare Recall@2 on a few test questions before/after, then answer one test
question with the reader reading the reranker's top-2 paragraphs. The first run converts SmolLM2
once (about a minute); later runs load the cache in about a second.
"""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

from rag_relax_plugins.datasets.hotpotqa import load_hotpotqa_distractor
from rag_relax_plugins.readers.causal_lm import CausalLMReader
from rag_relax_plugins.rerankers.gumbel import GumbelReranker
from rag_relax_plugins.training.grerank import GRerankConfig, train_grerank
from rag_relax_plugins.training.grerank_eval import evaluate_reranker, hotpot_split


def _count(text: str) -> int:
    """An argument count >= 1 (``--rows -3`` sliced from the end: 397 questions, hours on a CPU)."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an int >= 1, got {value}")
    return value


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=_count, default=4, help="training questions (at most 400)")
    ap.add_argument("--test-rows", type=_count, default=5, help="test questions with a gold paragraph")
    ap.add_argument("--epochs", type=_count, default=1)
    ap.add_argument("--device", default=None)
    # RAG_RELAX_EXAMPLE_OUT redirects the run's folder (the tests write it to a temporary folder)
    out = Path(os.environ.get("RAG_RELAX_EXAMPLE_OUT") or "runs") / "example_grerank"
    ap.add_argument("--output", default=str(out), help=f"run folder (default {out})")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO)

    train, test = hotpot_split(load_hotpotqa_distractor(), 400)
    train, test = train[: args.rows], [ex for ex in test if ex.gold_indices][: args.test_rows]
    reranker = GumbelReranker("cross", max_length=128, device=args.device)
    reader = CausalLMReader(doc_tokens=48, device=args.device)
    before = evaluate_reranker(reranker, test)["all"]
    cfg = GRerankConfig(
        output_dir=args.output,
        epochs=args.epochs,
        grad_accum_steps=2,
        device=args.device,
        save_every_steps=5,
    )
    result = train_grerank(cfg, examples=train, reranker=reranker, reader=reader)
    after = evaluate_reranker(reranker, test)["all"]
    print(
        f"trained on {len(train)} questions, {result.seconds_per_example:.1f} s/question; model in {result.model_dir}"
    )
    print(
        f"Recall@2 on {len(test)} test questions: before {before['recall@2']:.3f}, after {after['recall@2']:.3f}"
    )

    ex = test[0]
    top = reranker.rerank(ex.question, ex.paragraph_texts(), top_n=2)
    context = [ex.paragraph_texts()[r.index] for r in top]
    print("Q:", ex.question)
    print(
        "reader answer:",
        reader.generate(ex.question, context, max_new_tokens=16),
        "| gold:",
        ex.answer,
    )


if __name__ == "__main__":
    main()
