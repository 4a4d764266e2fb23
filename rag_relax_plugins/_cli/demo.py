"""``rag-relax demo``: rerank HotpotQA distractor paragraphs with the offline MiniLM."""

from __future__ import annotations

import argparse
import sys
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rag_relax_plugins.evals.hotpot_rerank import HotpotRerankResult

NAME = "demo"
HELP = "rerank HotpotQA distractor paragraphs with the offline MiniLM; print Recall@2/@5 and MRR"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data",
        default=None,
        help="distractor JSONL file or data folder (default: $RAG_RELAX_DATA or ../shared/data)",
    )
    parser.add_argument(
        "--limit", type=int, default=None, help="use the first N questions (default: all)"
    )
    parser.add_argument(
        "--batch-size", type=int, default=64, help="texts per forward pass (default: 64)"
    )
    parser.add_argument("--device", default=None, help="cpu, cuda, mps (default: best available)")
    parser.add_argument(
        "--model", default=None, help="local sentence-transformers folder (default: offline MiniLM)"
    )
    parser.add_argument(
        "--max-seq-length",
        type=int,
        default=None,
        help="truncate paragraphs to N word pieces (default: the model's, 256)",
    )
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def format_table(
    result: HotpotRerankResult,
    model_name: str,
    device: str,
    seconds: float,
    max_seq_length: int | None = None,
) -> str:
    """The demo's text table."""
    names = list(next(iter(result.metrics.values())))
    labels = {
        "data order": "order in the data",
        "random": "random order (seed 0)",
        "encoder": f"{model_name} cosine",
    }
    heads = [n.replace("recall", "Recall").replace("mrr", "MRR") for n in names]
    width = max(len(v) for v in labels.values())
    lines = [
        f"HotpotQA distractor reranking: {result.num_questions} questions, {result.num_paragraphs} unique paragraphs",
        f"scored on {result.num_evaluated} questions with a gold paragraph in the context "
        + "(gold paragraphs present: "
        + ", ".join(f"{k}: {v}" for k, v in sorted(result.gold_present.items()))
        + ")",
        "",
        f"{'order':<{width}}  " + "  ".join(f"{h:>9}" for h in heads),
        "-" * (width + 2 + 11 * len(heads)),
    ]
    for key, per in result.metrics.items():
        lines.append(
            f"{labels.get(key, key):<{width}}  " + "  ".join(f"{per[n]:>9.3f}" for n in names)
        )
    lines += [
        "",
        f"device {device}; max_seq_length {max_seq_length}; encoding {result.encode_seconds:.1f} s; total {seconds:.1f} s",
    ]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from rag_relax_plugins.datasets.hotpotqa import load_hotpotqa_distractor

    start = time.perf_counter()
    examples = load_hotpotqa_distractor(args.data, limit=args.limit)
    if not examples:
        raise ValueError("no questions to rerank (is --limit 0?)")

    from rag_relax_plugins.embedders.sentence_transformer import SentenceTransformerEncoder
    from rag_relax_plugins.evals.hotpot_rerank import rerank_hotpot

    encoder = SentenceTransformerEncoder(
        args.model,
        device=args.device,
        max_seq_length=args.max_seq_length,
        batch_size=args.batch_size,
    )
    result = rerank_hotpot(
        examples, encoder, batch_size=args.batch_size, show_progress=not args.no_progress
    )
    name = "MiniLM" if args.model is None else encoder.model_path.name
    sys.stdout.write(
        format_table(
            result, name, str(encoder.device), time.perf_counter() - start, encoder.max_seq_length
        )
        + "\n"
    )
    return 0
