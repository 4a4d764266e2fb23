"""Resumable checkpoints and the loss curve of the G-Rerank trainer, without pickle.

A ``checkpoint_step_N/`` folder holds ``reranker/`` (a :class:`GumbelReranker` folder),
``optimizer.safetensors`` + ``optimizer.json`` (optimiser state flattened into tensors and JSON
scalars), ``rng.safetensors`` (the Gumbel-noise generator state) and ``trainer_state.json``
(format version, epoch, position in the epoch, optimiser step, loss history and the run's
options under ``"config"``, compared on resume: :func:`check_resume`). Folders are written under
a temporary name and renamed into place, so a crash never leaves a half-written checkpoint.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from rag_relax_plugins._io import atomic_folder, read_tensors
from rag_relax_plugins.rerankers.gumbel import GumbelReranker
from rag_relax_plugins.training._optimizer_state import read_optimizer_state, save_optimizer_state
from rag_relax_plugins.training._resume_check import (
    ResumePolicy,
    read_trainer_state,
    stored_options,
)
from rag_relax_plugins.training._run_files import checkpoint_folder, pyplot, save_png
from rag_relax_plugins.training._weights import weights_mismatch
from rag_relax_plugins.training.grerank_init import SCORER_OPTIONS

__all__ = [
    "CHECKPOINT_VERSION",
    "RESUME_RUNTIME_ONLY",
    "check_resume",
    "checkpoint_folder",
    "checkpoint_options",
    "curve_series",
    "load_checkpoint",
    "plot_curves",
    "read_checkpoint_weights",
    "save_checkpoint",
    "stored_options",
]

log = logging.getLogger(__name__)

CHECKPOINT_VERSION = 1

# GRerankConfig options a resume may change; every other one must equal the checkpoint's.
RESUME_RUNTIME_ONLY = frozenset({
    "output_dir",  # where this run writes
    "resume_from",  # the checkpoint itself
    "init_from",  # the weights come from the checkpoint (resume_from takes precedence)
    # when to stop: the learning rates are constant (no schedule over the run's length) and the
    # question order depends only on seed and epoch, so a longer run continues the shorter one
    "epochs", "max_steps",
    "save_every_steps", "keep_checkpoints",  # which checkpoints are written and kept
    "device", "show_progress",  # where and how visibly it runs
    "cache_reader_states",  # exact: stored document states give the same losses and weights (tested)
})
_PATH_OPTIONS = ("data_path", "backbone", "reader_path")


def unused_options(options: Mapping[str, Any]) -> set[str]:
    """What a G-Rerank configuration does not use: the reader's options with
    ``supervision="labels"`` (no reader is built), the backbone's learning rate with
    ``trainable_layers=0`` (a frozen backbone)."""
    unused = {"reader_path", "variant", "doc_tokens"} if options.get("supervision") == "labels" else set()
    return unused | ({"learning_rate"} if options.get("trainable_layers") == 0 else set())


# The scorer options are not compared with the stored ones: the checkpoint's reranker decides them
# and ``grerank_init.effective_config`` refuses a value it would ignore.
RESUME = ResumePolicy(RESUME_RUNTIME_ONLY | frozenset(SCORER_OPTIONS), _PATH_OPTIONS, unused=unused_options,
                      from_checkpoint=SCORER_OPTIONS)
# ``GRerankConfig.to_dict()`` as stored in a checkpoint (local paths absolute), and the resume check
checkpoint_options = RESUME.options
check_resume = RESUME.check


def save_checkpoint(
    target: Path,
    *,
    reranker: GumbelReranker,
    optimizer: torch.optim.Optimizer,
    generator: torch.Generator,
    state: dict[str, Any],
) -> Path:
    """Write a resumable checkpoint folder at ``target`` (atomically)."""

    def write(tmp: Path) -> None:
        reranker.save_pretrained(tmp / "reranker")
        save_optimizer_state(optimizer, tmp)
        rng = {"gumbel": generator.get_state(), "torch": torch.get_rng_state()}  # torch: dropout
        if generator.device.type == "cuda":  # the run's device only (dropout there)
            rng[f"cuda{generator.device.index or 0}"] = torch.cuda.get_rng_state(generator.device)
        elif generator.device.type == "mps":  # dropout on MPS draws from the MPS generator
            rng["mps"] = torch.mps.get_rng_state()
        save_file(rng, str(tmp / "rng.safetensors"))
        full = {"format_version": CHECKPOINT_VERSION, **state, "noise_device": generator.device.type}
        (tmp / "trainer_state.json").write_text(json.dumps(full), encoding="utf-8")

    return atomic_folder(target, write, replace_if_contains=("trainer_state.json",), kind="checkpoint")


def load_checkpoint(
    folder: Path, *, optimizer: torch.optim.Optimizer, generator: torch.Generator, seed: int = 0
) -> dict[str, Any]:
    """Restore the optimiser and the noise generator from ``folder``; return the trainer state.

    The reranker weights are loaded by the caller (``GumbelReranker.from_pretrained(folder /
    "reranker")``) before the optimiser is built. A checkpoint written on another device type
    (CPU and CUDA generators have states of different kinds) reseeds ``generator`` with ``seed``
    plus the checkpoint's step, with a warning: the run goes on, with other noise than an
    uninterrupted run would draw. The CPU generator (dropout) is restored, and the CUDA (or MPS)
    one of ``generator``'s device when the checkpoint holds it.

    Every file is read and checked before anything is restored: a refused checkpoint leaves the
    optimiser and the generators as they were.

    Raises:
        FileNotFoundError: ``folder`` is not a checkpoint. ValueError: unknown format version; a
            field of ``trainer_state.json`` missing or of another type; a damaged optimiser state
            (:func:`~._optimizer_state.read_optimizer_state`); a generator state missing, or of
            another size than the run's generator's (each naming the file).
    """
    folder = checkpoint_folder(folder)
    # every field the run reads, before the optimiser changes (a missing 'history' was a KeyError
    # after the caller's reranker had taken the checkpoint's weights)
    state = read_trainer_state(folder, version=CHECKPOINT_VERSION, fields=("epoch", "pos", "step", "history"),
                               history_lists=("loss", "seconds"), step_list="loss")
    moments = read_optimizer_state(optimizer, folder)  # checked, loaded once the generator states are
    rng_file = folder / "rng.safetensors"
    rng = read_tensors(rng_file)
    bad = [k for k in ("gumbel", "torch") if k not in rng or rng[k].dtype != torch.uint8]
    if bad:  # a KeyError or torch's RuntimeError before
        raise ValueError(f"{rng_file}: no uint8 generator state {bad[0]!r} (a damaged checkpoint?)")
    here = generator.device.type
    saved = state.get("noise_device")  # absent before it was recorded: the state's size tells
    gumbel_size = generator.get_state().numel()
    same_device = saved == here or (saved is None and rng["gumbel"].numel() == gumbel_size)
    sizes = {"torch": torch.get_rng_state().numel()} | ({"gumbel": gumbel_size} if same_device else {})
    gpu_key = None
    if here == "cuda":  # the state saved for the run's GPU; one saved on another index (cuda:0 -> cuda:1) too
        own, saved_gpus = f"cuda{generator.device.index or 0}", [k for k in rng if k.startswith("cuda")]
        gpu_key = own if own in rng else (saved_gpus[0] if len(saved_gpus) == 1 else None)
        if gpu_key is not None:
            sizes[gpu_key] = torch.cuda.get_rng_state(generator.device).numel()
    elif here == "mps" and "mps" in rng:  # saved since 2026-12-05: dropout there was not resumed exactly
        gpu_key, sizes["mps"] = "mps", torch.mps.get_rng_state().numel()
    for key, size in sizes.items():  # set_state raised a raw RuntimeError, after the optimiser was loaded
        if rng[key].dtype != torch.uint8 or rng[key].numel() != size:
            raise ValueError(f"{rng_file}: generator state {key!r} holds {rng[key].numel()} bytes, the run's "
                             f"generator {size} (a damaged checkpoint?); nothing was changed")
    optimizer.load_state_dict(moments)
    if same_device:
        generator.set_state(rng["gumbel"])
    else:
        generator.manual_seed(seed + int(state["step"]))
        log.warning("checkpoint %s was written on %s: its Gumbel-noise generator state does not fit a %s "
                    "generator; the noise is reseeded (seed + step), so this run draws other noise than "
                    "an uninterrupted one", folder, saved or "another device type", here)
    torch.set_rng_state(rng["torch"])
    if here == "cuda" and gpu_key is not None:
        torch.cuda.set_rng_state(rng[gpu_key], generator.device)
    elif here == "mps" and gpu_key is not None:
        torch.mps.set_rng_state(rng["mps"])
    return state


def read_checkpoint_weights(reranker: GumbelReranker, folder: Path) -> dict[str, torch.Tensor]:
    """The scorer weights of checkpoint ``folder``, checked against a caller-supplied
    ``reranker`` and not loaded: a resume loads them (``reranker.scorer.load_state_dict``) once
    every other file of the checkpoint has been read, so a refused resume leaves ``reranker`` as
    it was.

    Raises:
        FileNotFoundError: no ``reranker/model.safetensors`` in ``folder``.
        ValueError: weights missing, unexpected or of another shape than the scorer's (named).
    """
    file = checkpoint_folder(folder) / "reranker" / "model.safetensors"
    if not file.is_file():
        raise FileNotFoundError(f"checkpoint not found: {folder} (expected reranker/model.safetensors inside)")
    weights = read_tensors(file)
    problem = weights_mismatch(reranker.scorer, weights)
    if problem is not None:
        raise ValueError(f"{file} does not fit the reranker's scorer: {problem}")
    return weights


def curve_series(history: Mapping[str, list[Any]]) -> tuple[torch.Tensor, int, torch.Tensor | None]:
    """``(loss (steps,), w, moving average (steps - w + 1,) or None)`` that :func:`plot_curves` draws.

    A step without a loss (``None``) is NaN in ``loss`` (a gap in the line) and is left out of
    the averages; a window with no loss at all averages to NaN. No average for ``w = 1``.
    """
    loss = torch.tensor(
        [float("nan") if v is None else float(v) for v in history.get("loss", [])],
        dtype=torch.float64,
    )  # (steps,)
    w = max(1, len(loss) // 10)
    if not len(loss) >= w > 1:
        return loss, w, None
    windows = loss.unfold(0, w, 1)  # (steps - w + 1, w)
    known = ~torch.isnan(windows)
    counts = known.sum(dim=1)
    avg = torch.where(known, windows, 0.0).sum(dim=1) / counts.clamp_min(1)
    return loss, w, torch.where(counts > 0, avg, float("nan"))


def plot_curves(history: Mapping[str, list[Any]], path: Path, *, title: str = "training") -> bool:
    """Loss per optimiser step (and a moving average) as a PNG; ``False`` without matplotlib.

    Steps without a loss (``None``: none of their examples gave a signal) are gaps in the curve
    and are left out of the moving average (:func:`curve_series`).
    """
    plt = pyplot()
    if plt is None:
        return False
    loss, w, avg = curve_series(history)
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(range(1, len(loss) + 1), loss.tolist(), lw=0.8, alpha=0.5, label="loss")
    if avg is not None:
        ax.plot(range(w, len(loss) + 1), avg.tolist(), lw=1.8, label=f"moving average ({w})")
    ax.set(xlabel="optimiser step", ylabel="loss", title=title)
    ax.legend()
    save_png(fig, path, dpi=110)
    return True
