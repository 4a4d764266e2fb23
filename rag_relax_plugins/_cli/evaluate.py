"""``rag-relax evaluate``: IR metrics and embedding diagnostics of a saved Gaussian embedder."""

from __future__ import annotations

import argparse
import sys
from typing import Any

NAME = "evaluate"
OUTPUT_KIND = "file"  # --output is a JSON file (the other commands write folders)
HELP = "evaluate a saved Gaussian embedder on an eval.json (Recall@k, MRR, nDCG@10, MAP@100, SIGReg, rank)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of the evaluation."""
    parser.add_argument("--model", required=True, help="saved model folder (e.g. runs/g/best_model)")
    parser.add_argument("--eval-file", required=True, help="eval.json written by prepare-data (corpus, queries, qrels)")
    parser.add_argument("--output", "-o", default=None,
                        help="write the JSON report here (an existing file only if it is an earlier report, "
                             "or with --overwrite; never the eval file or a file inside --model)")
    parser.add_argument("--overwrite", action="store_true", help="let --output replace a file that is not a report")
    parser.add_argument("--baseline", nargs="?", const="auto", default=None, metavar="BACKBONE",
                        help="also evaluate an untrained sentence-transformers model with cosine similarity "
                             "(default: the untrained backbone the model started from, never a fine-tuned one, "
                             "with the model's max_seq_length)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:N or mps (default: best available)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars (transformers' model-loading bar)")


def check_report_path(output: str, *, model: str, eval_file: str, overwrite: bool) -> None:
    """Refuse an ``--output`` that would destroy an input or an unrelated file (before any work).

    Raises:
        ValueError: ``output`` is the evaluation file, lies inside the model folder or under a
            file, or is an existing file that is not an earlier report (a JSON object with
            ``"metrics"``) and ``overwrite`` is false.
    """
    from pathlib import Path

    from rag_relax_plugins._io import check_file_target, read_json

    check_file_target(output)  # a file or a dangling link above it: found after the whole run before
    out = Path(output).resolve()
    if out == Path(eval_file).resolve():
        raise ValueError(f"--output {output} is the --eval-file; choose another report path")
    if Path(model).resolve() in out.parents:
        raise ValueError(f"--output {output} lies inside the --model folder; choose a path outside it")
    if out.is_file() and not overwrite:
        try:
            report = read_json(out)
        except ValueError:  # not JSON, or not an object
            report = {}
        if "metrics" not in report:
            raise ValueError(f"--output {output} exists and is not an evaluation report; pass --overwrite to replace it")


def run(args: argparse.Namespace) -> int:
    """Load the model and the evaluation file, print a table, optionally write JSON."""
    from rag_relax_plugins._io import find_saved_folder
    from rag_relax_plugins.embedders.gaussian import GaussianEmbedder
    from rag_relax_plugins.training.gaussian_data import load_eval_file
    from rag_relax_plugins.training.gaussian_eval import evaluate_model, format_table, write_report

    if args.output:
        check_report_path(args.output, model=args.model, eval_file=args.eval_file, overwrite=args.overwrite)
    # checked before the evaluation file is read; the backup of an interrupted save counts
    find_saved_folder(args.model, "config.json", what="saved model", kind=GaussianEmbedder.SAVE_KIND)
    if args.baseline and args.baseline != "auto":  # refused now, not after the model's evaluation
        from rag_relax_plugins.embedders.sentence_transformer import resolve_model_path

        try:
            resolve_model_path(args.baseline)
        except (FileNotFoundError, ValueError) as exc:
            raise ValueError(f"--baseline {args.baseline}: {str(exc).split('. ')[0]}") from exc
    data = load_eval_file(args.eval_file)
    model = GaussianEmbedder.load(args.model, device=args.device)
    base = _baseline(args, model) if args.baseline else None  # loaded before the model's evaluation
    result = evaluate_model(model, data, batch_size=args.batch_size)
    sys.stdout.write(format_table(result) + "\n")
    if base is not None:
        result["baseline"] = evaluate_model(base, data, batch_size=args.batch_size, geometry="cosine")
        sys.stdout.write("\nbaseline (backbone, cosine)\n" + format_table(result["baseline"]) + "\n")
    if args.output:
        write_report(result, args.output)
    return 0


def _baseline(args: argparse.Namespace, model: Any) -> object:
    """The encoder ``--baseline`` evaluates: a path, or (``auto``) the backbone ``model`` started from.

    Raises:
        ValueError: the model's recorded source backbone cannot be loaded (moved or deleted since
            training); before, this failed after the model's whole evaluation, with no report.
    """
    from rag_relax_plugins.embedders.gaussian import EncoderBackbone
    from rag_relax_plugins.embedders.sentence_transformer import SentenceTransformerEncoder

    # read as many tokens as the model does, so the comparison is of the weights only
    tokens = getattr(model.backbone, "max_seq_length", None)
    if args.baseline != "auto":
        return SentenceTransformerEncoder(args.baseline, device=args.device, max_seq_length=tokens)
    if isinstance(model.backbone, EncoderBackbone):
        return model.backbone.encoder
    # the untrained source (None = the offline MiniLM); the model's own copy if untouched
    source = model.base_backbone if model.backbone_fine_tuned else model.config.backbone
    try:
        return SentenceTransformerEncoder(source, device=args.device, max_seq_length=tokens)
    except (FileNotFoundError, ValueError, OSError) as exc:
        raise ValueError(f"--baseline: the backbone the model started from ({source}) cannot be loaded "
                         f"({str(exc).split('. ')[0]}); pass --baseline PATH to a copy of it") from exc
