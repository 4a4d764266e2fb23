"""Checkpoints of the Gaussian-embedder trainer, without pickle.

A ``checkpoint_epoch_N/`` folder holds ``model/`` (a saved ``GaussianEmbedder``),
``optimizer.safetensors`` + ``optimizer.json`` (the optimiser state flattened into tensors and
JSON scalars), ``rng.safetensors`` (CPU, CUDA and, where available, MPS generator states), ``predictor.safetensors``
when a predictor head is trained, ``best_model/`` when the best epoch so far is an earlier one
(otherwise ``model/`` is the best model), and ``trainer_state.json`` (format version, epoch,
step, best validation loss and its epoch, scheduler state, fp16 ``GradScaler`` state, loss
history, and the run's options under ``"config"``, compared on resume by :func:`check_resume`).
A resumed run restores ``best_model/`` from it, so resuming into a new output folder keeps
``best_model/`` and ``best_val_loss`` consistent. Folders are written under a temporary
name and renamed into place, so a crash never leaves a half-written checkpoint.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from rag_relax_plugins._io import atomic_folder, read_tensors
from rag_relax_plugins.core.device import fork_rng_devices
from rag_relax_plugins.training._optimizer_state import load_optimizer_state, save_optimizer_state
from rag_relax_plugins.training._resume_check import (
    ResumePolicy,
    read_trainer_state,
    stored_options,
)
from rag_relax_plugins.training._run_files import restore_best_model  # re-exported: shared
from rag_relax_plugins.training._scheduler_state import check_scheduler_state, check_scheduler_step
from rag_relax_plugins.training.gaussian_setup import unused_options

log = logging.getLogger(__name__)

__all__ = ["CHECKPOINT_VERSION", "RESUME_RUNTIME_ONLY", "check_resume", "checkpoint_options", "load_checkpoint_state",
           "restore_best_model", "save_checkpoint"]

CHECKPOINT_VERSION = 1

# TrainConfig options a resume may change; every other one must equal the checkpoint's. Not
# ``epochs`` or ``max_steps``: the LR schedule decays to 0 at step
# ``min(ceil(batches / grad_accum_steps) * epochs, max_steps)`` (``lr_at``), and a ``max_steps``
# stop inside an epoch saves that epoch as finished (a resume would skip the rest of it).
RESUME_RUNTIME_ONLY = frozenset({
    "output_dir",  # where this run writes (the checkpoint's best model is copied there)
    "resume_from",  # the checkpoint itself
    "init_model",  # the weights come from the checkpoint (init_model and resume_from exclude each other)
    # the checkpoint's model brings them; a value given is checked against that model
    "backbone", "output_dim", "geometry",
    "device", "show_progress", "save_checkpoints",  # where and how visibly it runs, what it keeps
    # not ``cache_frozen_prefix``: in training the cached path runs the trainable layers in
    # length-sorted chunks, so dropout draws other masks than one padded batch would (the same
    # distribution, another run); exact only in eval mode or without dropout
})
_PATH_OPTIONS = ("train_file", "val_file")


RESUME = ResumePolicy(RESUME_RUNTIME_ONLY, _PATH_OPTIONS, unused=unused_options)  # a margin with InfoNCE may differ
# ``TrainConfig.to_dict()`` as stored in a checkpoint (local paths absolute)
checkpoint_options = RESUME.options


def check_resume(folder: Path, options: dict[str, Any], *, model_settings: Mapping[str, Any] | None = None) -> None:
    """Refuse a resume from ``folder`` with options other than its own (see ``RESUME_RUNTIME_ONLY``;
    an option that neither the checkpoint's options nor ``options`` use, :func:`~.gaussian_setup.unused_options`,
    may differ too).

    Args:
        folder: the checkpoint.
        options: the new run's options (:data:`checkpoint_options`).
        model_settings: ``dropout`` / ``freeze_early_layers`` of the checkpoint's model
            (:func:`~.gaussian_setup.saved_model_settings`), what its run trained with. Where the
            stored options say otherwise (a ``train(cfg, model=m)`` checkpoint written before the
            model's settings were stored: it holds the TrainConfig defaults), the model's values
            are compared instead, with a warning; an explicit other value is still refused.

    Raises:
        FileNotFoundError: ``folder`` is not a checkpoint.
        ValueError: different options, or an unreadable ``trainer_state.json`` (named).
    """
    saved = stored_options(folder)
    if saved is not None and model_settings:
        stale = {k: v for k, v in model_settings.items() if k in saved and saved[k] != v}
        if stale:
            log.warning("checkpoint %s stores %s, but its model (model/config.json) was trained with %s (a "
                        "train(cfg, model=...) checkpoint written before these settings were stored): resuming "
                        "with the model's", folder, ", ".join(f"{k}={saved[k]!r}" for k in stale),
                        ", ".join(f"{k}={v!r}" for k, v in stale.items()))
            saved = {**saved, **stale}
    RESUME.compare(saved, options, folder)


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def save_checkpoint(
    target: Path,
    *,
    model: Any,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    predictor: torch.nn.Module | None,
    state: dict[str, Any],
    scaler: torch.amp.GradScaler | None = None,
    best_model: Path | None = None,
) -> Path:
    """Write a resumable checkpoint folder at ``target`` (atomically).

    Args:
        state: JSON-ready trainer state (epoch, step, best, best_epoch, history, config).
        scaler: the loss scaler; its state (scalars only; empty when disabled) is saved.
        best_model: a saved best model of an earlier epoch, copied in as ``best_model/``;
            ``None`` when ``model`` itself is the best so far (or there is none).
    """

    def write(tmp: Path) -> None:
        model.save(tmp / "model")
        if best_model is not None:
            shutil.copytree(best_model, tmp / "best_model")
        save_optimizer_state(optimizer, tmp)
        rng = {"torch": torch.get_rng_state()}
        if torch.cuda.is_available():
            for i, s in enumerate(torch.cuda.get_rng_state_all()):
                rng[f"cuda{i}"] = s
        if _mps_available():  # dropout on MPS draws from the MPS generator
            rng["mps"] = torch.mps.get_rng_state()
        save_file(rng, str(tmp / "rng.safetensors"))
        if predictor is not None:
            weights = {k: v.detach().cpu().contiguous() for k, v in predictor.state_dict().items()}
            save_file(weights, str(tmp / "predictor.safetensors"))
        full = {"format_version": CHECKPOINT_VERSION, **state, "scheduler": scheduler.state_dict(),
                "grad_scaler": scaler.state_dict() if scaler is not None else {}}
        (tmp / "trainer_state.json").write_text(json.dumps(full), encoding="utf-8")

    return atomic_folder(target, write, replace_if_contains=("trainer_state.json",), kind="checkpoint")


def _restore_cuda_rng(rng: dict[str, torch.Tensor], file: Path, device: torch.device, saved: object = None) -> None:
    """Restore, into the GPU the run uses (``device``), the ``cuda<j>`` generator state of ``rng``
    of the GPU the saved run drew from (``saved``, its ``rng_device``, e.g. ``"cuda:0"``; a
    checkpoint without one: the same index).

    A checkpoint holds one state per GPU its process saw. ``set_rng_state_all`` of them failed
    with an IndexError where fewer GPUs are visible (``CUDA_VISIBLE_DEVICES``, a smaller
    machine), and the keys sorted as strings put ``cuda10`` before ``cuda2``. Only the run's own
    GPU is restored now: the others are the caller's, which the run leaves as they were (a CPU
    run restored every GPU's state from the checkpoint), and a run resumed on another GPU index
    takes the state its run drew from (it took that index's, another GPU's); a state the
    checkpoint lacks leaves the seeded one.
    """
    for key in rng:
        if key.startswith("cuda") and not key[len("cuda"):].isdigit():
            raise ValueError(f"{file}: unknown generator state {key!r} (a damaged checkpoint?)")
    if device.type != "cuda" or not torch.cuda.is_available():
        return
    (own,) = fork_rng_devices(device)
    source = own
    if isinstance(saved, str) and saved.startswith("cuda"):
        try:
            index = torch.device(saved).index
        except RuntimeError as exc:  # an edited trainer_state.json
            raise ValueError(f"{file.parent / 'trainer_state.json'}: rng_device {saved!r} is not a device") from exc
        source = own if index is None else index  # "cuda": the current GPU, as the run used
    if f"cuda{source}" in rng:
        torch.cuda.set_rng_state(rng[f"cuda{source}"], own)


def load_checkpoint_state(
    folder: Path,
    *,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    predictor: torch.nn.Module | None,
    scaler: torch.amp.GradScaler | None = None,
    device: torch.device | None = None,
) -> dict[str, Any]:
    """Restore optimiser, scheduler, RNG, predictor and loss scaler from ``folder``; return the trainer state.

    The generators restored are the CPU one and the run's own device's (``device``, default the
    CPU: that CUDA device, or MPS); another device's generator is the caller's and is left alone.

    A checkpoint without scaler state (written without fp16 scaling, or by an older version)
    leaves an enabled ``scaler`` at its initial scale, with a warning.

    The MPS generator state is saved and restored where MPS is available (a checkpoint written
    elsewhere leaves it as seeded).

    Raises:
        FileNotFoundError: ``folder`` is not a checkpoint.
        ValueError: unknown format version, incompatible optimiser groups, or a corrupt file
            (named).
    """
    file = folder / "trainer_state.json"
    if not file.is_file():
        raise FileNotFoundError(f"checkpoint not found: {folder} (expected trainer_state.json inside)")
    state = read_trainer_state(folder, version=CHECKPOINT_VERSION,
                               fields=("scheduler", "epoch", "step", "best", "history"),
                               history_lists=("step_loss", "train_loss", "val_loss"), step_list="step_loss")
    check_scheduler_state(scheduler, state["scheduler"], file)  # before the optimiser changes
    check_scheduler_step(state["scheduler"], state["step"], file)
    load_optimizer_state(optimizer, folder, hint="resume with the same freezing and predictor options")
    scheduler.load_state_dict(state["scheduler"])
    rng = read_tensors(folder / "rng.safetensors")
    if "torch" not in rng:
        raise ValueError(f"{folder / 'rng.safetensors'}: no 'torch' generator state")
    torch.set_rng_state(rng["torch"])
    device = torch.device("cpu") if device is None else device
    _restore_cuda_rng(rng, folder / "rng.safetensors", device, state.get("rng_device"))  # keys checked on any device
    if device.type == "mps" and "mps" in rng and _mps_available():
        torch.mps.set_rng_state(rng["mps"])
    if predictor is not None:
        pfile = folder / "predictor.safetensors"
        if not pfile.is_file():
            raise ValueError(f"checkpoint {folder} has no predictor head but the run uses one")
        try:
            predictor.load_state_dict(read_tensors(pfile))
        except RuntimeError as exc:  # other shapes or keys
            raise ValueError(f"{pfile}: does not fit this run's predictor head ({exc})") from exc
    if scaler is not None and scaler.is_enabled():
        saved = state.get("grad_scaler") or {}
        if saved:
            scaler.load_state_dict(saved)
        else:
            log.warning("checkpoint %s has no loss-scaler state; fp16 scaling restarts from its initial scale", folder)
    return state
