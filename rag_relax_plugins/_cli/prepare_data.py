"""``rag-relax prepare-data``: pairs from CSV/JSON/raw documents, split, and an evaluation file."""

from __future__ import annotations

import argparse
import logging

NAME = "prepare-data"
HELP = "prepare train/val/test pairs and an eval.json (corpus, queries, qrels) for the Gaussian embedder"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", help="CSV (query,positive[,negative]), JSON/JSONL pairs, a .txt of documents, or a folder of .txt")
    parser.add_argument("--output", "-o", required=True, help="output folder")
    parser.add_argument("--kind", choices=["auto", "pairs", "documents"], default="auto",
                        help="auto: .txt and folders are documents, other files pairs; documents: also a "
                             ".jsonl with 'text' or any prose file (.md ...; not .json/.csv/.tsv/.gz)")
    parser.add_argument("--split", default="0.8,0.1,0.1",
                        help="train,val,test fractions (default 0.8,0.1,0.1); with a test fraction of 0, "
                             "eval.json holds the validation queries")
    parser.add_argument("--negatives", action="store_true", help="documents: add a random other document as negative")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--overwrite", action="store_true", help="replace train/val/test.jsonl and eval.json in OUTPUT")


def run(args: argparse.Namespace) -> int:
    from rag_relax_plugins.training.gaussian_data import prepare_data

    try:
        parts = tuple(float(x) for x in args.split.split(","))
    except ValueError as exc:
        raise ValueError(f"--split must be three comma-separated numbers, got {args.split!r}") from exc
    if len(parts) != 3:
        raise ValueError(f"--split must be three comma-separated numbers, got {args.split!r}")
    paths = prepare_data(args.input, args.output, kind=args.kind, fractions=parts, negatives=args.negatives, seed=args.seed,
                         overwrite=args.overwrite)  # type: ignore[arg-type]
    for name, path in paths.items():
        logging.getLogger(__name__).info("wrote %s: %s", name, path)
    return 0
