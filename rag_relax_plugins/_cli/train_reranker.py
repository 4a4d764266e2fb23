"""``rag-relax train-reranker``: G-Rerank end-to-end reranker training (see ``training/grerank.py``)."""

from __future__ import annotations

import argparse
import logging

NAME = "train-reranker"
HELP = "train a Gumbel reranker from a frozen reader's answer loss (G-Rerank) or from labels"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    a = parser.add_argument
    a("--output", "-o", required=True, help="output folder (final_model/, checkpoints, curves.png)")
    a(
        "--data",
        default=None,
        help="HotpotQA distractor JSONL or data folder (default: shared data)",
    )
    a(
        "--supervision",
        choices=["reader", "labels"],
        default="reader",
        help="reader: answer NLL only (G-Rerank); labels: ListNet on supporting facts (reference)",
    )
    a("--train-size", type=int, default=400, help="first N rows of the file are the training split")
    a("--max-train-rows", type=int, default=None)
    a("--epochs", type=int, default=1)
    a("--scorer", choices=["cross", "bi"], default="cross")
    a("--backbone", default=None, help="local scorer backbone folder (default: offline MiniLM)")
    a(
        "--init-from",
        default=None,
        help="start from a saved GumbelReranker folder (it decides --scorer, --backbone, "
        "--scorer-max-length and --trainable-layers; other values than the saved ones are refused)",
    )
    a("--scorer-max-length", type=int, default=128, help="word pieces per scorer input (default 128)")
    a(
        "--trainable-layers",
        type=int,
        default=-1,
        help="top scorer backbone layers trained, at most the backbone's layer count; lower ones frozen "
        "(default -1: all, embeddings included)",
    )
    a("--resume-from", default=None, help="a checkpoint_step_N folder to resume from")
    a("--k", type=int, default=2)
    a("--mode", choices=["l2x", "subset"], default="l2x")
    a("--tau", type=float, default=None, help="temperature (default: the library default)")
    a("--kappa", type=float, default=None, help="score scale (default: the library default)")
    a("--reader", default=None, help="local causal LM folder (default: offline SmolLM2, cached)")
    a("--variant", choices=["independent", "concatenated"], default="independent")
    a("--doc-tokens", type=int, default=48)
    a(
        "--cache-reader-states",
        action="store_true",
        help="keep each question's reader document states after its first visit (independent "
        "variant; later epochs skip the documents, ~24 MB of memory per training question)",
    )
    a("--learning-rate", type=float, default=5e-5)
    a("--head-learning-rate", type=float, default=3e-3)
    a("--weight-decay", type=float, default=0.0, help="AdamW weight decay (default 0)")
    a("--max-grad-norm", type=float, default=1.0, help="gradient clipping norm (default 1.0)")
    a("--grad-accum-steps", type=int, default=4)
    a("--max-steps", type=int, default=None)
    a("--save-every-steps", type=int, default=25)
    a("--keep-checkpoints", type=int, default=2, help="newest checkpoint_step_N folders kept (default 2)")
    a("--seed", type=int, default=0)
    a("--device", default=None)
    a("--no-progress", action="store_true")


def run(args: argparse.Namespace) -> int:
    from rag_relax_plugins.training.grerank import GRerankConfig, train_grerank

    extra = {k: v for k, v in (("tau", args.tau), ("kappa", args.kappa)) if v is not None}
    cfg = GRerankConfig(
        output_dir=args.output,
        data_path=args.data,
        supervision=args.supervision,
        train_size=args.train_size,
        max_train_rows=args.max_train_rows,
        epochs=args.epochs,
        scorer=args.scorer,
        backbone=args.backbone,
        init_from=args.init_from,
        scorer_max_length=args.scorer_max_length,
        trainable_layers=args.trainable_layers,
        resume_from=args.resume_from,
        k=args.k,
        mode=args.mode,
        reader_path=args.reader,
        variant=args.variant,
        doc_tokens=args.doc_tokens,
        cache_reader_states=args.cache_reader_states,
        learning_rate=args.learning_rate,
        head_learning_rate=args.head_learning_rate,
        weight_decay=args.weight_decay,
        max_grad_norm=args.max_grad_norm,
        grad_accum_steps=args.grad_accum_steps,
        max_steps=args.max_steps,
        save_every_steps=args.save_every_steps,
        keep_checkpoints=args.keep_checkpoints,
        seed=args.seed,
        device=args.device,
        show_progress=not args.no_progress,
        **extra,
    )
    result = train_grerank(cfg)
    losses = [v for v in result.history.get("loss", []) if v is not None]
    logging.getLogger(__name__).info(
        "this session trained on %d examples; the run has %d steps%s; final model in %s", result.examples_seen,
        len(result.history.get("loss", [])), f", last loss {losses[-1]:.5f}" if losses else "", result.model_dir,
    )
    return 0
