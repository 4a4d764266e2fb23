"""Training loop of the Gaussian embedder: contrastive loss + isotropy (SIGReg) + variance terms.

Python API: :func:`train` with a :class:`TrainConfig`; ``rag-relax train`` wraps it. Outputs in
``output_dir``: ``train_config.json``, ``training.log``, ``checkpoint_epoch_N/`` (resumable: model,
optimiser, scheduler, RNG, epoch/step; see :mod:`.gaussian_checkpoint`), ``best_model/`` (lowest
validation loss; without ``val_file``, lowest epoch-mean *training* loss, measured with dropout on
while the weights change), ``final_model/``, ``history.json`` (``step_loss``, ``train_loss``,
``val_loss`` (empty without ``val_file``), ``selection_loss``: the value ``best_model/`` is chosen
by) and ``loss_curves.png``. A fresh run (no ``resume_from``) removes an earlier run's
``checkpoint_epoch_N/`` from ``output_dir`` once it has written its first checkpoint, except the
one holding ``init_model``.

Commands::

    rag-relax prepare-data docs.txt --output data/
    rag-relax train --train-file data/train.jsonl --val-file data/val.jsonl --output runs/g \\
        --epochs 3 --batch-size 32 --lambda-isotropy 0.05 --freeze-early-layers 4
    rag-relax train ... --resume-from runs/g/checkpoint_epoch_2     # continue a run
    rag-relax train ... --init-model runs/g/best_model               # fine-tune a saved model

Determinism: batches depend only on ``seed`` and the epoch; dropout draws from the global torch
generator, whose state is checkpointed; SIGReg slices are seeded by ``seed`` and the step. A
resumed run therefore reproduces the loss curve of an uninterrupted one. It must use the
checkpoint's options, except the runtime-only ones in ``gaussian_checkpoint.RESUME_RUNTIME_ONLY``
(else ``ValueError`` before anything is written).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch

from rag_relax_plugins._io import atomic_write_json, check_save_target
from rag_relax_plugins._progress import library_progress
from rag_relax_plugins.core.device import (
    autocast,
    fork_rng_devices,
    grad_scaler,
    resolve_device,
    seeded_rngs,
)
from rag_relax_plugins.core.isotropy import PredictorHead
from rag_relax_plugins.embedders.gaussian import GaussianEmbedder
from rag_relax_plugins.training._run_files import (
    EPOCH_CHECKPOINT_PREFIX,
    EarlierCheckpoints,
    check_checkpoint_targets,
    check_source_outside_checkpoints,
    checkpoint_folder,
    earlier_best_model,
    pyplot,
    run_folder_with_log,
    save_png,
)
from rag_relax_plugins.training.gaussian_checkpoint import (
    check_resume,
    checkpoint_options,
    load_checkpoint_state,
    restore_best_model,
    save_checkpoint,
)
from rag_relax_plugins.training.gaussian_data import Pair, load_pairs
from rag_relax_plugins.training.gaussian_objective import (
    TrainConfig,
    contrastive_loss,
    false_negative_mask,
    isotropy_loss,
    lr_at,
    training_loss,
)
from rag_relax_plugins.training.gaussian_setup import (
    build_model,
    effective_config,
    ignored_options,
    precision_notes,
    saved_model_settings,
)

__all__ = ["TrainConfig", "contrastive_loss", "isotropy_loss", "lr_at", "make_batches", "precision_notes", "train",
           "training_loss"]

log = logging.getLogger(__name__)


def make_batches(pairs: Sequence[Pair], batch_size: int, seed: int, epoch: int, min_size: int = 2) -> list[list[Pair]]:
    """Seeded per-epoch shuffle into batches (a function of seed and epoch only, so resumable).

    Batches smaller than ``min_size`` are dropped (a single pair has no in-batch negative).
    """
    g = torch.Generator().manual_seed(seed * 10_007 + epoch)
    order = torch.randperm(len(pairs), generator=g).tolist()
    chunks = [order[s : s + batch_size] for s in range(0, len(order), batch_size)]
    return [[pairs[i] for i in c] for c in chunks if len(c) >= min_size]


Embedded = tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]


def _embed(model: GaussianEmbedder, batch: list[Pair]) -> Embedded:
    """One forward pass over the queries, positives and the hard negatives the pairs have.

    Returns:
        ``(B, D)`` queries, ``(B, D)`` positives, ``(B, D)`` negatives or ``None`` (no pair has
        one; a pair without one gets a zero placeholder), the false-negative mask of the batch
        (:func:`false_negative_mask`) or ``None``, and ``(B,) x bool`` which pairs have a
        negative (``neg_present`` of :func:`training_loss`) or ``None`` when all or none do.
    """
    queries, positives = [p.query for p in batch], [p.positive for p in batch]
    negs = [p.negative for p in batch]
    present = [n is not None for n in negs]
    b = len(batch)
    out = model(queries + positives + [n for n in negs if n is not None])
    if not any(present):
        return out[:b], out[b : 2 * b], None, false_negative_mask(queries, positives, None), None
    mask = false_negative_mask(queries, positives, [[n] for n in negs])
    if all(present):
        return out[:b], out[b : 2 * b], out[2 * b :], mask, None
    where = torch.tensor(present, device=out.device)
    neg = out.new_zeros(b, out.shape[1]).index_put((where,), out[2 * b :])  # placeholders stay zero
    return out[:b], out[b : 2 * b], neg, mask, where


def _rng_device(dev: torch.device) -> str:
    """The device whose generator a run draws from, named with its index: a ``"cuda"`` run draws
    from the current GPU's (:func:`~rag_relax_plugins.core.device.fork_rng_devices`)."""
    return f"cuda:{fork_rng_devices(dev)[0]}" if dev.type == "cuda" else str(dev)


def _diverged(epoch: int | None, step: int | None) -> ValueError:
    where = "in the validation pass" if epoch is None else f"at epoch {epoch + 1}, step {step}"
    return ValueError(f"training diverged {where} (non-finite embeddings/loss); lower the learning rate "
                      "(learning_rate / head_learning_rate) or max_grad_norm, or add warmup_steps")


@contextlib.contextmanager
def _divergence_check(epoch: int | None, step: int | None, *embeddings: torch.Tensor | None) -> Iterator[None]:
    """Turn the losses' "contains NaN or inf" refusal of diverged embeddings into :func:`_diverged`.

    Checked only when the loss raises, so a healthy step pays no extra host sync.
    """
    try:
        yield
    except ValueError:
        if all(bool(torch.isfinite(e).all()) for e in embeddings if e is not None):
            raise
        raise _diverged(epoch, step) from None


def _val_batches(pairs: Sequence[Pair], batch_size: int, seed: int) -> list[list[Pair]]:
    """The validation batches: every pair counts (a trailing single pair joins the batch before it)."""
    batches = make_batches(pairs, batch_size, seed, 0, min_size=1)
    if len(batches) > 1 and len(batches[-1]) == 1:
        last = batches.pop()
        batches[-1] = batches[-1] + last
    return batches


@torch.no_grad()
def _val_loss(model: GaussianEmbedder, pairs: Sequence[Pair], cfg: TrainConfig, dev: torch.device) -> float:
    """Mean loss over the validation pairs (eval mode, fixed slices and batches)."""
    model.eval()
    total, count = 0.0, 0
    for batch in _val_batches(pairs, cfg.batch_size, cfg.seed):
        with autocast(dev, None if cfg.mixed_precision == "no" else cfg.mixed_precision):
            q, d, n, mask, present = _embed(model, batch)
        with _divergence_check(None, None, q, d, n):
            total += training_loss(q, d, n, cfg, step=0, geometry=model.geometry, mask=mask,
                                   neg_present=present)[0].item() * len(batch)
        count += len(batch)
    model.train()
    return total / count if count else float("nan")


def train(cfg: TrainConfig, *, model: GaussianEmbedder | None = None) -> dict[str, Any]:
    """Train a Gaussian embedder; see the module docstring for what is written.

    Args:
        cfg: all options.
        model: an already built model to train instead of building one from ``cfg`` (not
            allowed together with ``resume_from`` or ``init_model``). Its own dropout and
            freezing are used: ``cfg.output_dim`` / ``geometry`` / ``backbone`` must match it
            when set, ``cfg.dropout`` / ``freeze_early_layers`` when changed from their defaults.
            The values used are the ones recorded in checkpoints and ``train_config.json``; a
            resume of such a run takes them from the checkpoint's model.

    Returns:
        ``{"history", "output_dir", "steps", "best_val_loss", "best_epoch", "steps_per_second"}``;
        ``best_val_loss`` is the lowest ``history["selection_loss"]`` (a training loss when
        there is no ``val_file``) and ``best_epoch`` the 1-based epoch ``best_model/`` holds
        (the last one when no loss was finite; ``None`` when no epoch ran).

    Raises:
        FileNotFoundError: missing train/val file or checkpoint.
        ValueError: malformed data, fewer than 2 training pairs (a validation file of 1 pair is
            warned about and unused), incompatible
            checkpoint or options, a diverged run (non-finite embeddings or loss); a resume
            whose options differ from the checkpoint's, runtime-only ones aside (raised before
            anything is written).
    """
    if not isinstance(cfg, TrainConfig):
        raise TypeError(f"cfg must be a TrainConfig, got {type(cfg).__name__}")
    if model is not None and (cfg.resume_from is not None or cfg.init_model is not None):
        raise ValueError("pass model, or resume_from / init_model in cfg, not both")
    if cfg.resume_from is not None:  # a missing checkpoint: refused before anything is written
        found = checkpoint_folder(cfg.resume_from, trainer="train")
        if found != Path(cfg.resume_from):
            log.warning("checkpoint %s is missing; resuming from %s, the copy an interrupted save left",
                        cfg.resume_from, found)
            cfg = dataclasses.replace(cfg, resume_from=str(found))
    cfg = effective_config(cfg, model)  # the dropout / freezing trained with, as checkpoints record them
    options = checkpoint_options(cfg.to_dict())  # stored in every checkpoint; data files hashed once
    if cfg.resume_from is not None:  # a missing checkpoint or other options: refused before anything is written
        ckpt = Path(cfg.resume_from)
        check_resume(ckpt, options, model_settings=saved_model_settings(ckpt))
    if cfg.save_checkpoints:
        # a checkpoint_epoch_N/model of the same output as init_model (best_model/ may be replaced),
        # and a folder of the user's named like a checkpoint of this run: refused now
        check_source_outside_checkpoints(cfg.init_model, "init_model", Path(cfg.output_dir), EPOCH_CHECKPOINT_PREFIX,
                                         cfg.epochs)
        check_checkpoint_targets(Path(cfg.output_dir), EPOCH_CHECKPOINT_PREFIX, cfg.epochs)
    for name in ("best_model", "final_model"):  # a folder of the user's there: refused now, not after training
        check_save_target(Path(cfg.output_dir) / name, kind=GaussianEmbedder.SAVE_KIND,
                          replace_if_contains=GaussianEmbedder.SAVE_LEGACY_FILES)
    # show_progress=False also silences transformers' bars while the backbone is loaded or saved
    # the run seeds the CPU generator and its own device's, and leaves the caller's as they were
    with library_progress(cfg.show_progress), run_folder_with_log(cfg.output_dir, log) as out, \
            seeded_rngs(cfg.seed, resolve_device(cfg.device)):
        return _train(cfg, out, model, options)  # the folder is removed again if a refused run leaves only an empty log


def _train(cfg: TrainConfig, out: Path, model: GaussianEmbedder | None, options: dict[str, Any]) -> dict[str, Any]:
    from tqdm.auto import tqdm

    train_pairs = load_pairs(cfg.train_file)
    val_pairs = load_pairs(cfg.val_file) if cfg.val_file else []
    if len(val_pairs) == 1:  # no in-batch negative: its loss (the isotropy term alone) cannot select
        log.warning("val_file %s holds 1 pair: its loss cannot rank epochs (no in-batch negative); best_model/ "
                    "follows the training loss, as without a validation file", cfg.val_file)
        val_pairs = []
    dev = resolve_device(cfg.device)
    amp = None if cfg.mixed_precision == "no" else cfg.mixed_precision
    for note in precision_notes(dev, amp) + ignored_options(cfg):
        log.warning("%s", note)
    if model is None:
        model = build_model(cfg, dev)
    model.to(dev).train()
    had_cache = model.prefix_cache is not None
    if cfg.cache_frozen_prefix:
        model.enable_prefix_cache()
    predictor = PredictorHead(model.dim).to(dev) if cfg.predictor else None
    head_lr = cfg.head_learning_rate or cfg.learning_rate * 10
    groups: list[dict[str, Any]] = [{"params": list(model.head.parameters()), "lr": head_lr}]
    backbone_params = [p for p in model.backbone.parameters() if p.requires_grad]
    if backbone_params:
        groups.append({"params": backbone_params, "lr": cfg.learning_rate})
    if predictor is not None:
        groups.append({"params": list(predictor.parameters()), "lr": head_lr})
    params = [p for g in groups for p in g["params"]]
    opt = torch.optim.AdamW(groups, weight_decay=cfg.weight_decay)
    n_batches = len(make_batches(train_pairs, cfg.batch_size, cfg.seed, 0))
    if n_batches == 0:
        raise ValueError(f"train_file must hold at least 2 pairs, got {len(train_pairs)}")
    total = math.ceil(n_batches / cfg.grad_accum_steps) * cfg.epochs
    if cfg.max_steps is not None:
        total = min(total, cfg.max_steps)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_at(s, warmup_steps=cfg.warmup_steps, total_steps=total))
    # fp16 loss scaling on CUDA only; on MPS fp16 autocast runs unscaled (see precision_notes)
    scaler = grad_scaler(dev.type, enabled=amp == "fp16" and dev.type == "cuda")
    history: dict[str, list[Any]] = {"step_loss": [], "train_loss": [], "val_loss": [], "selection_loss": []}
    start_epoch, step, best, best_epoch = 0, 0, float("inf"), None
    if cfg.resume_from is not None:
        state = load_checkpoint_state(Path(cfg.resume_from), optimizer=opt, scheduler=sched, predictor=predictor,
                                      scaler=scaler, device=dev)
        start_epoch, step, best, history = state["epoch"], state["step"], state["best"], state["history"]
        if "selection_loss" not in history:  # older checkpoints stored the selection loss as val_loss
            history["selection_loss"] = list(history["val_loss"])
            if not val_pairs:
                history["val_loss"] = []
        best_epoch = state.get("best_epoch")
        restored = restore_best_model(Path(cfg.resume_from), state, out / "best_model")
        if not restored and not (out / "best_model" / "config.json").is_file():
            best_epoch = None  # none here (a new folder): only a later, better epoch writes best_model/
        if best_epoch is None and math.isfinite(best):
            log.warning("checkpoint %s holds no best model (older format): best_model/ will not match "
                        "best_val_loss %.5f unless a later epoch improves on it", cfg.resume_from, best)
        log.info("resumed from %s at epoch %d, step %d", cfg.resume_from, start_epoch, step)
    atomic_write_json(out / "train_config.json", cfg.to_dict())
    earlier = EarlierCheckpoints(fresh=cfg.resume_from is None, prefix=EPOCH_CHECKPOINT_PREFIX,
                                 protect=(cfg.init_model,), trainer="train")
    bar = tqdm(total=total, initial=step, disable=not cfg.show_progress, desc="train", unit="step")
    t_start, steps_done = time.perf_counter(), 0
    for epoch in range(start_epoch, cfg.epochs):
        if cfg.max_steps is not None and step >= cfg.max_steps:
            break
        epoch_losses: list[float] = []
        group_losses: list[float] = []
        opt.zero_grad(set_to_none=True)
        batches = make_batches(train_pairs, cfg.batch_size, cfg.seed, epoch)
        for i, batch in enumerate(batches):
            group_start = i - i % cfg.grad_accum_steps
            group_size = min(cfg.grad_accum_steps, len(batches) - group_start)  # last group may be short
            with autocast(dev, amp):
                q, d, n, mask, present = _embed(model, batch)
            with _divergence_check(epoch, step + 1, q, d, n):  # step + 1: the optimiser step being made
                loss, parts = training_loss(q, d, n, cfg, step, geometry=model.geometry, predictor=predictor, mask=mask,
                                              neg_present=present)
            value = loss.item()  # the host sync the step log needs anyway
            if not math.isfinite(value):
                raise _diverged(epoch, step + 1)
            scaler.scale(loss / group_size).backward()
            epoch_losses.append(value)
            group_losses.append(value)
            if len(group_losses) < group_size:
                continue
            scaler.unscale_(opt)
            torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
            scaler.step(opt)
            scaler.update()
            opt.zero_grad(set_to_none=True)
            lr = sched.get_last_lr()[0]  # the LR this step used (logged), before the schedule moves on
            sched.step()
            step += 1
            steps_done += 1
            history["step_loss"].append(sum(group_losses) / len(group_losses))
            group_losses = []
            bar.update(1)
            bar.set_postfix(loss=f"{history['step_loss'][-1]:.4f}")
            log.info("epoch %d step %d loss %.5f %s lr %.3g", epoch + 1, step, history["step_loss"][-1],
                     {k: round(v, 5) for k, v in parts.items()}, lr)
            if cfg.max_steps is not None and step >= cfg.max_steps:
                break
        history["train_loss"].append(sum(epoch_losses) / max(1, len(epoch_losses)))
        # best_model/ is chosen by the validation loss; without a validation file (or when it is
        # not finite) by the epoch's mean training loss, recorded as selection_loss, not val_loss
        val = history["train_loss"][-1]
        if val_pairs:
            measured = _val_loss(model, val_pairs, cfg, dev)
            history["val_loss"].append(measured if math.isfinite(measured) else None)
            if math.isfinite(measured):
                val = measured
            else:
                log.warning("validation loss is %s; selecting best_model by training loss", measured)
        history["selection_loss"].append(val)
        log.info("epoch %d train_loss %.5f %s %.5f", epoch + 1, history["train_loss"][-1],
                 "val_loss" if val_pairs else "selection_loss (training loss, no validation file)", val)
        if val < best:
            best, best_epoch = val, epoch + 1
            model.save(out / "best_model")
        if cfg.save_checkpoints:
            state = {"epoch": epoch + 1, "step": step, "best": best, "best_epoch": best_epoch, "history": history,
                     "config": options, "rng_device": _rng_device(dev)}  # whose GPU generator a resume restores
            path = save_checkpoint(out / f"{EPOCH_CHECKPOINT_PREFIX}{epoch + 1}", model=model, optimizer=opt,
                                   scheduler=sched, predictor=predictor, state=state, scaler=scaler,
                                   best_model=earlier_best_model(out, best_epoch, own_epoch=epoch + 1))
            earlier.written(path)  # a fresh run: an earlier run's checkpoint_epoch_N/ go
    elapsed = time.perf_counter() - t_start
    bar.close()
    if not had_cache:  # a cache the caller enabled (e.g. shared across runs) stays
        model.disable_prefix_cache()
    model.save(out / "final_model")
    if not (out / "best_model").exists():  # no finite loss, or an old checkpoint without its best model
        model.save(out / "best_model")
        if history["selection_loss"]:
            best = history["selection_loss"][-1]  # what best_model/ now holds
        best_epoch = len(history["train_loss"]) or None
    _plot(history, out / "loss_curves.png")
    atomic_write_json(out / "history.json", history, indent=None)
    return {"history": history, "output_dir": str(out), "steps": step, "best_val_loss": best, "best_epoch": best_epoch,
            "steps_per_second": steps_done / elapsed if elapsed > 0 and steps_done else float("nan")}


def _plot(history: dict[str, list[Any]], path: Path) -> None:
    """Loss curves (per optimiser step, and per epoch) as a PNG; skipped without matplotlib."""
    plt = pyplot()
    if plt is None:
        return
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    axes[0].plot(range(1, len(history["step_loss"]) + 1), history["step_loss"])
    axes[0].set(xlabel="optimiser step", ylabel="loss", title="training loss")
    epochs = range(1, len(history["train_loss"]) + 1)
    axes[1].plot(epochs, history["train_loss"], marker="o", label="train")
    if history["val_loss"]:  # absent without a validation file (then best_model/ follows the training loss)
        val = [float("nan") if v is None else v for v in history["val_loss"]]
        axes[1].plot(range(1, len(val) + 1), val, marker="o", label="val")
    axes[1].set(xlabel="epoch", ylabel="loss", title="per epoch")
    axes[1].legend()
    save_png(fig, path)
