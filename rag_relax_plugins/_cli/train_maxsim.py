"""``rag-relax train-maxsim``: train the MaxSim reranker's projection on HotpotQA (contrastive).

Example::

    rag-relax train-maxsim --output runs/maxsim --epochs 4 --eval

Rows ``[0, --train-rows)`` of ``hotpotqa/distractor_500.jsonl`` train (the last ``--val-rows``
of them select ``best_model``; ``--val-rows 0``: the epoch with the lowest mean training loss);
with ``--eval`` the remaining rows are the test split, scored before and after training (after:
``best_model``, restored from the checkpoint on a resume; ``final_model`` with a note when this run
has none: it completed no epoch, or it resumed into a new ``--output`` a checkpoint written before
checkpoints stored their best model). A fresh run (no ``--resume-from``) deletes the ``best_model``
an earlier run left in ``--output``. See
:mod:`rag_relax_plugins.training.maxsim_train`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

NAME = "train-maxsim"
HELP = "train the MaxSim reranker's projection contrastively (in-batch + hard negatives) on HotpotQA"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    a = parser.add_argument
    a("--output", "-o", required=True, help="output folder (models, checkpoints, curves)")
    a("--data", default=None, help="distractor JSONL or data folder (default: $RAG_RELAX_DATA or ../shared/data)")
    a("--train-rows", type=int, default=400, help="first N rows train, the rest test (default 400)")
    a("--val-rows", type=int, default=40,
      help="last M training rows select best_model by MRR (default 40; 0: none, the epoch with the lowest "
           "mean training loss is best)")
    a("--evidence", action="store_true",
      help="add evidence_500.jsonl, read from the folder of --data, as extra training pairs")
    a("--backbone", default=None, help="local sentence-transformers folder (default: offline MiniLM)")
    a("--projection-dim", type=int, default=128, help="projection size (default 128; 0: no projection, needs --train-last-layers > 0)")
    a("--max-seq-length", type=int, default=256)
    a("--train-last-layers", type=int, default=0, help="also fine-tune the last N backbone layers (slow on CPU)")
    a("--epochs", type=int, default=4)
    a("--batch-size", type=int, default=16)
    a("--hard-negatives", type=int, default=8, help="distractors per question and step (default 8)")
    a("--learning-rate", type=float, default=1e-3)
    a("--backbone-learning-rate", type=float, default=2e-5)
    a("--temperature", type=float, default=0.05)
    a("--max-steps", type=int, default=None)
    a("--seed", type=int, default=0)
    a("--device", default=None)
    a("--resume-from", default=None, help="a checkpoint_epoch_N folder")
    a("--cache-dir", default=None, help="token cache folder (default: OUTPUT/token_cache)")
    a("--eval", action="store_true", help="print Recall@2/@5 and MRR on the test rows before and after")
    a("--no-progress", action="store_true")


def run(args: argparse.Namespace) -> int:
    if args.cache_dir is not None and (not str(args.cache_dir).strip() or (
            Path(args.cache_dir).exists() and not Path(args.cache_dir).is_dir())):
        raise ValueError(f"--cache-dir {args.cache_dir!r} must name a folder (new or an earlier cache), "
                         "not an existing file or an empty string")
    from rag_relax_plugins.rerankers.maxsim import MaxSimReranker
    from rag_relax_plugins.training.maxsim_checkpoint import (
        adopt_reranker_config,
        checked_resume,
        training_data_sha256,
    )
    from rag_relax_plugins.training.maxsim_data import TokenCache, hotpot_split
    from rag_relax_plugins.training.maxsim_train import (
        MaxSimTrainConfig,
        check_output_folders,
        evaluate_groups,
        train_maxsim,
    )

    cfg = MaxSimTrainConfig(
        output_dir=args.output, data=args.data, train_rows=args.train_rows, val_rows=args.val_rows,
        evidence=args.evidence, backbone=args.backbone,
        projection_dim=args.projection_dim or None, max_seq_length=args.max_seq_length,
        train_last_layers=args.train_last_layers, epochs=args.epochs, batch_size=args.batch_size,
        hard_negatives=args.hard_negatives, learning_rate=args.learning_rate,
        backbone_learning_rate=args.backbone_learning_rate, temperature=args.temperature,
        max_steps=args.max_steps, seed=args.seed, device=args.device, resume_from=args.resume_from,
        cache_dir=args.cache_dir, show_progress=not args.no_progress,
    )
    split = hotpot_split(cfg.data, train_rows=cfg.train_rows, val_rows=cfg.val_rows, evidence=cfg.evidence)
    if args.eval and not split.test:  # before the test evaluation writes a token cache into --output
        raise ValueError(f"--eval needs test questions: none of the rows after --train-rows {cfg.train_rows} "
                         "has a gold paragraph in its context")
    reranker = MaxSimReranker(cfg.model_config(), device=cfg.device)
    cfg = adopt_reranker_config(cfg, reranker.config)  # what train_maxsim checks and records
    report: dict[str, object] = {}
    cache_dir = cfg.cache_dir or str(Path(cfg.output_dir) / "token_cache")

    def test_metrics(model: MaxSimReranker) -> dict[str, dict[str, float]]:
        q = TokenCache.build(model, split.queries.texts, marker=model.config.query_marker, cache_dir=cache_dir)
        t = TokenCache.build(model, split.texts.texts, marker=model.config.document_marker, cache_dir=cache_dir)
        return evaluate_groups(model, split.test, q, t)

    if args.eval:  # before training; with --train-last-layers its cache is keyed by those layers' weights
        # a bad --resume-from is refused now, not after this evaluation
        ck, _ = checked_resume(cfg, training_data_sha256(split.train, split.val, split.queries.texts, split.texts.texts))
        check_output_folders(cfg, resumed=ck is not None)  # and a folder of yours at best_model/ or final_model/
        report["test_before"] = test_metrics(reranker)
    result = train_maxsim(cfg, split.train, split.queries.texts, split.texts.texts,
                          val_groups=split.val, reranker=reranker)
    report["steps"] = result["steps"]
    report["output_dir"] = result["output_dir"]
    if args.eval:
        folder = _evaluated_model(Path(cfg.output_dir), float(result["best_val_mrr"]))
        report["evaluated_model"] = str(folder)
        report["test_after"] = test_metrics(MaxSimReranker.load(folder, encoder=reranker.encoder))
    sys.stdout.write(json.dumps(report, indent=2) + "\n")
    return 0


def _evaluated_model(output: Path, best_val_mrr: float) -> Path:
    """``output/best_model``, or ``output/final_model`` (with a note on stderr) when this run has no
    best model: ``best_val_mrr`` is ``-inf`` (no complete epoch), or the run resumed a checkpoint
    that stored no best model (older format) and no complete epoch of it beat that checkpoint's.
    Decided from this run's result: a ``best_model/`` left by another run is never scored."""
    import math

    from rag_relax_plugins._io import find_saved_folder

    if not math.isfinite(best_val_mrr):
        sys.stderr.write(f"note: this run completed no epoch, so it has no best_model in {output}; "
                         "--eval scores final_model\n")
        return output / "final_model"
    try:
        return find_saved_folder(output / "best_model", "config.json")
    except FileNotFoundError:
        pass
    sys.stderr.write(f"note: no best_model in {output} (a resumed checkpoint without its best model and no "
                     "later epoch beat it); --eval scores final_model\n")
    return output / "final_model"
