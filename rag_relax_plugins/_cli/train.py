"""``rag-relax train``: train the isotropic Gaussian embedder (see ``training/gaussian_train.py``)."""

from __future__ import annotations

import argparse
import logging
from typing import Any

NAME = "train"
HELP = "train the isotropic Gaussian embedder (contrastive + SIGReg)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Every option of :class:`~rag_relax_plugins.training.gaussian_objective.TrainConfig`."""
    a = parser.add_argument
    a("--train-file", required=True, help="train pairs: .jsonl / .json / .csv (query,positive[,negative])")
    a("--val-file", default=None,
      help="validation pairs (best_model is chosen by their loss; without it, or with a single pair, by the epoch's training loss)")
    a("--output", "-o", required=True, help="output folder")
    a("--backbone", default=None, help="local sentence-transformers folder (default: the offline MiniLM)")
    a("--init-model", default=None, help="fine-tune from a saved Gaussian model folder")
    a("--resume-from", default=None, help="a checkpoint_epoch_N folder to resume from")
    a("--epochs", type=int, default=1)
    a("--batch-size", type=int, default=32)
    a("--learning-rate", type=float, default=2e-5, help="backbone learning rate")
    a("--head-learning-rate", type=float, default=None, help="head learning rate (default: 10x --learning-rate)")
    a("--weight-decay", type=float, default=0.01)
    a("--warmup-steps", type=int, default=0, help="linear warm-up, in optimiser steps")
    a("--grad-accum-steps", type=int, default=1, help="gradient accumulation: batches per optimiser step")
    a("--max-steps", type=int, default=None, help="stop after this many optimiser steps")
    a("--output-dim", type=int, default=None, help="head output dimension (default 384, or the saved model's)")
    a("--dropout", type=float, default=0.1)
    a("--freeze-early-layers", type=int, default=0, help="freeze the first N layers; -1 freezes the whole backbone")
    a("--geometry", choices=["euclidean", "inner_product"], default=None, help="default euclidean, or the saved model's")
    a("--loss", choices=["infonce", "triplet"], default="infonce")
    a("--temperature", type=float, default=None, help="InfoNCE temperature (default: 0.1*D euclidean, 0.05*D inner product)")
    a("--margin", type=float, default=1.0, help="triplet margin")
    a("--isotropy", choices=["sigreg", "covariance", "none"], default="sigreg")
    a("--lambda-isotropy", type=float, default=0.05)
    a("--num-slices", type=int, default=256, help="SIGReg random directions per step")
    a("--lambda-reg", type=float, default=0.0, help="weight of the variance regularisation")
    a("--target-std", type=float, default=1.0, help="per-dimension std the variance term pushes toward")
    a("--predictor", action="store_true", help="add a query->document predictor head (stop-gradient)")
    a("--lambda-predictor", type=float, default=0.1)
    a("--mixed-precision", choices=["no", "bf16", "fp16"], default="no",
      help="autocast: bf16/fp16 on CUDA, fp16 on MPS (unscaled); float32 otherwise (CPU, bf16 on MPS)")
    a("--max-grad-norm", type=float, default=1.0)
    a("--seed", type=int, default=0)
    a("--device", default=None, help="cpu, cuda, cuda:N or mps (default: best available)")
    a("--no-checkpoints", action="store_true", help="do not write checkpoint_epoch_N folders")
    a("--no-progress", action="store_true", help="no progress bars (also none from transformers while loading or saving)")
    a("--cache-frozen-prefix", action="store_true",
      help="keep the frozen layers' output per text in memory (needs --freeze-early-layers >= 1; faster epochs; "
           "same outputs in eval mode, other dropout masks in training, so a resume must keep the setting)")


def run(args: argparse.Namespace) -> int:
    """Build the config from ``args`` and train."""
    from rag_relax_plugins.training.gaussian_train import TrainConfig, train

    cfg = TrainConfig(
        train_file=args.train_file, val_file=args.val_file, output_dir=args.output, backbone=args.backbone,
        init_model=args.init_model, resume_from=args.resume_from, epochs=args.epochs, batch_size=args.batch_size,
        learning_rate=args.learning_rate, head_learning_rate=args.head_learning_rate, weight_decay=args.weight_decay,
        warmup_steps=args.warmup_steps, grad_accum_steps=args.grad_accum_steps, max_steps=args.max_steps,
        output_dim=args.output_dim, dropout=args.dropout, freeze_early_layers=args.freeze_early_layers,
        geometry=args.geometry, loss=args.loss, temperature=args.temperature, margin=args.margin,
        isotropy=args.isotropy, lambda_isotropy=args.lambda_isotropy, num_slices=args.num_slices,
        lambda_reg=args.lambda_reg, target_std=args.target_std, predictor=args.predictor,
        lambda_predictor=args.lambda_predictor, mixed_precision=args.mixed_precision,
        max_grad_norm=args.max_grad_norm, seed=args.seed, device=args.device,
        save_checkpoints=not args.no_checkpoints, show_progress=not args.no_progress,
        cache_frozen_prefix=args.cache_frozen_prefix,
    )
    result = train(cfg)
    what = _selected_by(result, args.val_file is not None)
    logging.getLogger(__name__).info(
        "trained %d steps; best_model by %s %.5f; outputs in %s", result["steps"], what, result["best_val_loss"], result["output_dir"]
    )
    return 0


def _selected_by(result: dict[str, Any], val_file: bool) -> str:
    """What ``best_model/`` was chosen by: the validation loss of its epoch when that was measured
    and finite, else the training loss (no --val-file, one validation pair, a loss that was not
    finite)."""
    history, epoch = result["history"], result["best_epoch"]
    if epoch is None:  # resumed from a checkpoint that did not record it: the options tell
        return "validation loss" if val_file else "training loss (no --val-file)"
    val = history["val_loss"][epoch - 1] if len(history["val_loss"]) >= epoch else None
    if val is not None and val == result["best_val_loss"]:
        return "validation loss"
    return "training loss (no --val-file)" if not val_file else "training loss (no usable validation loss)"
