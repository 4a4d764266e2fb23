"""``rag-relax train-mol``: train a Mixture-of-Logits (or dot-product) retriever and evaluate it.

Examples::

    # MovieLens-100k next-item retrieval (learned item ids), MoL scorer
    rag-relax train-mol --dataset movielens --output runs/mol-ml
    # the dot-product (cosine / tau) baseline with the same item-embedding table
    rag-relax train-mol --dataset movielens --similarity dot --output runs/dot-ml
    # HotpotQA open corpus: MoL head over frozen MiniLM features (half the questions train)
    rag-relax train-mol --dataset hotpotqa --output runs/mol-hotpot
    # MoL with the paper's per-user query component, 4 history interests and 8 query components
    rag-relax train-mol --dataset movielens --user-embedding --num-interests 4 --num-query-embeddings 8 \
        --output runs/mol-ml-user
    # continue an interrupted run (same options plus --resume), or from a given checkpoint
    rag-relax train-mol --dataset movielens --output runs/mol-ml --resume
    rag-relax train-mol --dataset movielens --output runs/mol-ml2 --resume runs/mol-ml/checkpoints/checkpoint_step_767

Writes ``checkpoints/checkpoint_step_N``, ``model/`` (config.json + model.safetensors),
``loss_curve.png`` (with the ``plot`` extra) and ``metrics.json`` into ``--output``.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

NAME = "train-mol"
HELP = "train a Mixture-of-Logits retriever (MovieLens next item or HotpotQA open corpus) and evaluate it"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    a = parser.add_argument
    a("--dataset", choices=["movielens", "hotpotqa"], required=True)
    a("--data", default=None, help="data folder or file (default: $RAG_RELAX_DATA or ../shared/data)")
    a("--output", "-o", required=True, help="output folder")
    a("--similarity", choices=["mol", "dot"], default="mol", help="MoL or cosine/tau (default: mol)")
    a("--epochs", type=int, default=None, help="default: 8 (movielens), 20 (hotpotqa)")
    a("--batch-size", type=int, default=None, help="default: 128 (movielens), 64 (hotpotqa)")
    a("--lr", type=float, default=None, help="default: 1e-3 (movielens), 1e-4 (hotpotqa)")
    a("--weight-decay", type=float, default=0.0)
    a("--warmup-steps", type=int, default=0)
    a("--num-negatives", type=int, default=None, help="uniform negatives per batch besides in-batch ones; default: 128 (movielens), 512 (hotpotqa)")
    a("--no-logq", action="store_true", help="disable the logQ correction")
    a("--mi-weight", type=float, default=1e-3, help="weight of the MoL load-balancing loss L_MI (0: off)")
    a("--tau", type=float, default=0.05, help="temperature of the scorer")
    a("--embedding-dim", type=int, default=None, help="item-id embedding width D, default 64 (movielens)")
    a("--max-len", type=int, default=None, help="history length L, default 50 (movielens)")
    a("--encoder", choices=["pool", "transformer"], default=None, help="history encoder, default pool (movielens)")
    a("--num-query-embeddings", type=int, default=4, help="P_q")
    a("--num-item-embeddings", type=int, default=4, help="P_x")
    a("--component-dim", type=int, default=None, help="d_P; default: D (movielens with the warm start), D/P_x (movielens, random init), "
                                                     "the feature width (hotpotqa)")
    a("--warm-start-noise", type=float, default=0.1,
      help="identity warm start of the MoL projections (noise scale); any negative value, e.g. -1: "
           "random init (movielens only)")
    a("--num-interests", type=int, default=1, help="interest vectors of the pooled history encoder (movielens)")
    a("--item-mlp-hidden", type=int, default=0, help="residual MLP width after the item-id table, 0: none (movielens)")
    a("--user-embedding", action="store_true", help="learn a vector per user id in the query tower (movielens)")
    a("--user-dropout", type=float, default=None, help="dropout on the user vector in training, default 0.5 (movielens)")
    a("--model", default=None, help="local sentence-transformers folder for HotpotQA (default: offline MiniLM)")
    a("--seed", type=int, default=0)
    a("--device", default=None, help="cpu, cuda, mps (default: best available)")
    a("--save-every-steps", type=int, default=None,
      help="also checkpoint every N steps (default: at the end of each epoch)")
    a("--keep-checkpoints", type=int, default=2, help="newest checkpoints kept in OUTPUT/checkpoints (default 2)")
    a("--max-steps", type=int, default=None, help="stop after N steps (the schedule still spans --epochs)")
    a("--resume", nargs="?", const=True, default=False, metavar="CHECKPOINT",
      help="continue from the latest checkpoint in OUTPUT/checkpoints, or from the checkpoint folder given")
    a("--no-progress", action="store_true", help="hide the progress bar")


def run(args: argparse.Namespace) -> int:
    import logging
    import sys
    from pathlib import Path
    from typing import Any

    from rag_relax_plugins._io import atomic_write_json
    from rag_relax_plugins.training._run_files import run_folder
    from rag_relax_plugins.training.mol_recipes import RecipeConfig
    from rag_relax_plugins.training.mol_runs import run_hotpot, run_movielens
    from rag_relax_plugins.training.mol_train import MoLTrainConfig, plot_loss_curve

    ml = args.dataset == "movielens"
    if not math.isfinite(args.warm_start_noise):  # -inf is not "any negative value": refused like nan
        raise ValueError(f"--warm-start-noise must be a finite number, got {args.warm_start_noise}")

    def pick(value: object, movielens: object, hotpot: object) -> Any:
        return (movielens if ml else hotpot) if value is None else value

    if not ml:
        given = [flag for flag, value in (("--embedding-dim", args.embedding_dim), ("--max-len", args.max_len),
                                          ("--encoder", args.encoder), ("--num-interests", args.num_interests != 1 or None),
                                          ("--item-mlp-hidden", args.item_mlp_hidden or None),
                                          ("--user-embedding", args.user_embedding or None),
                                          ("--user-dropout", args.user_dropout)) if value is not None]
        if args.warm_start_noise < 0:
            given.append("--warm-start-noise -1 (random init)")
        if given:
            raise ValueError(f"{', '.join(given)}: MovieLens options, not used by --dataset hotpotqa "
                             "(its features come from the frozen sentence encoder; its head starts at the identity)")
    ignored = _ignored_options(args, ml)
    if ignored:
        raise ValueError(ignored)
    embedding_dim = 64 if args.embedding_dim is None else args.embedding_dim
    noise = None if args.warm_start_noise < 0 else args.warm_start_noise
    component_dim = args.component_dim
    if ml and component_dim is None:
        component_dim = embedding_dim if noise is not None else None
    elif ml and noise is not None and args.similarity == "mol" and 1 <= component_dim != embedding_dim:
        raise ValueError(f"--component-dim {component_dim}: the identity warm start (--warm-start-noise "
                         f"{args.warm_start_noise}) needs --component-dim = --embedding-dim ({embedding_dim}); "
                         "pass --warm-start-noise -1 for a random start with another component width")
    if args.user_dropout is not None and not args.user_embedding:
        raise ValueError("--user-dropout needs --user-embedding")
    out = Path(args.output)
    cfg = MoLTrainConfig(
        epochs=pick(args.epochs, 8, 20), batch_size=pick(args.batch_size, 128, 64),
        lr=pick(args.lr, 1e-3, 1e-4), num_negatives=pick(args.num_negatives, 128, 512),
        weight_decay=args.weight_decay,
        warmup_steps=args.warmup_steps, logq_correction=not args.no_logq,
        seed=args.seed, device=args.device, checkpoint_dir=str(out / "checkpoints"),
        save_every_steps=args.save_every_steps, keep_checkpoints=args.keep_checkpoints, max_steps=args.max_steps,
        show_progress=not args.no_progress,
        mi_weight=_resumed_mi_weight(args.resume, out / "checkpoints"),
    )
    recipe = RecipeConfig(
        similarity=args.similarity, embedding_dim=embedding_dim, max_len=50 if args.max_len is None else args.max_len,
        encoder=args.encoder or "pool",
        num_query_embeddings=args.num_query_embeddings, num_item_embeddings=args.num_item_embeddings,
        component_dim=component_dim, tau=args.tau, mi_loss_weight=args.mi_weight,
        warm_start_noise=noise if ml else None, num_interests=args.num_interests,
        item_mlp_hidden=args.item_mlp_hidden, user_embedding=args.user_embedding,
        **({} if args.user_dropout is None else {"user_dropout": args.user_dropout}),
    )
    # removed again if the run is refused (bad data, model options) before writing anything
    with run_folder(out):
        if args.dataset == "movielens":
            report = run_movielens(cfg, recipe, data=args.data, resume=args.resume, save_to=out / "model")
        else:
            report = run_hotpot(
                cfg, recipe, data=args.data, model_path=args.model, resume=args.resume, save_to=out / "model",
                warm_start_noise=args.warm_start_noise,
            )
        png = plot_loss_curve(report["history"], out / "loss_curve.png", title=f"train-mol {args.dataset} ({args.similarity})")
        summary = {k: v for k, v in report.items() if k != "history"}
        atomic_write_json(out / "metrics.json", summary)
        atomic_write_json(out / "history.json", report["history"], indent=None)
    metrics = report["metrics"]
    sys.stdout.write("  ".join(f"{k} {v:.4f}" for k, v in metrics.items()) + "\n")
    logging.getLogger(__name__).info("wrote %s%s", out, f" and {png}" if png else "")
    return 0


# MoL-only options and their defaults (a value other than the default with --similarity dot is an
# error: the dot-product model has no components, gate or warm start)
_MOL_ONLY = (("--num-query-embeddings", "num_query_embeddings", 4), ("--num-item-embeddings", "num_item_embeddings", 4),
             ("--component-dim", "component_dim", None), ("--mi-weight", "mi_weight", 1e-3),
             ("--warm-start-noise", "warm_start_noise", 0.1))
# what --dataset hotpotqa --similarity dot never reads: it trains nothing and reports MiniLM cosine
_TRAINING = (("--epochs", "epochs", None), ("--batch-size", "batch_size", None), ("--lr", "lr", None),
             ("--weight-decay", "weight_decay", 0.0), ("--warmup-steps", "warmup_steps", 0),
             ("--num-negatives", "num_negatives", None), ("--no-logq", "no_logq", False), ("--tau", "tau", 0.05),
             ("--seed", "seed", 0), ("--save-every-steps", "save_every_steps", None),
             ("--keep-checkpoints", "keep_checkpoints", 2),
             ("--max-steps", "max_steps", None), ("--resume", "resume", False))


def _resumed_mi_weight(resume: bool | str, checkpoint_dir: Path) -> float:
    """``MoLTrainConfig.mi_weight`` of a run: no option sets it (``--mi-weight`` is the head's
    ``mi_loss_weight``), so a resume takes the checkpoint's. Its default became 1.0 on 2026-12-02:
    a run checkpointed before, with 0, could not be resumed by this command (different options,
    no option to match them). 1.0 for a new run, or when the checkpoint cannot be read (the
    resume names that problem)."""
    from rag_relax_plugins.core.scalars import is_number
    from rag_relax_plugins.training.mol_checkpoint import latest_checkpoint, read_trainer_state

    src = None if resume is False else Path(resume) if isinstance(resume, str) else latest_checkpoint(checkpoint_dir)
    try:
        saved = None if src is None else read_trainer_state(src)["config"].get("mi_weight")
    except (OSError, ValueError):
        saved = None
    if is_number(saved) and math.isfinite(saved) and saved >= 0:
        return float(saved)
    return 1.0  # none, or a damaged value: the resume's option check names it


def _ignored_options(args: argparse.Namespace, movielens: bool) -> str | None:
    """A message naming options given with a value this run would ignore, or ``None``."""
    def changed(table: tuple[tuple[str, str, object], ...]) -> list[str]:
        return [flag for flag, name, default in table if getattr(args, name) != default]

    problems = []
    if movielens and args.model is not None:
        problems.append("--model is the sentence encoder of --dataset hotpotqa (MovieLens learns item ids)")
    if args.similarity == "dot":
        mol_only = changed(_MOL_ONLY)
        if mol_only:
            problems.append(f"{', '.join(mol_only)}: MoL options, not used by --similarity dot")
        if not movielens:
            training = changed(_TRAINING)
            if training:
                problems.append(f"{', '.join(training)}: --dataset hotpotqa --similarity dot trains nothing "
                                "(it reports the frozen encoder's cosine)")
    return "; ".join(problems) or None
