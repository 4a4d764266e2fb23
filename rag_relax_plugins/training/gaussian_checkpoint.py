"""Checkpoints of the Gaussian-embedder trainer, without pickle.

A ``checkpoint_epoch_N/`` folder holds ``model/`` (a saved ``GaussianEmbedder``),
``optimizer.safetensors`` + ``optimizer.json`` (the optimiser state flattened into tensors and
JSON scalars), ``rng.safetensors`` (CPU and CUDA generator states), ``predictor.safetensors``
when a predictor head is trained, and ``trainer_state.json`` (format version, epoch, step, best
validation loss, scheduler state, loss history). Folders are written under a temporary name
and renamed into place, so a crash never leaves a half-written checkpoint.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from rag_relax_plugins._io import atomic_folder
from rag_relax_plugins.training._optimizer_state import load_optimizer_state, save_optimizer_state

__all__ = ["CHECKPOINT_VERSION", "load_checkpoint_state", "save_checkpoint"]

CHECKPOINT_VERSION = 1


def save_checkpoint(
    target: Path,
    *,
    model: Any,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    predictor: torch.nn.Module | None,
    state: dict[str, Any],
) -> Path:
    """Write a resumable checkpoint folder at ``target`` (atomically)."""

    def write(tmp: Path) -> None:
        model.save(tmp / "model")
        save_optimizer_state(optimizer, tmp)
        rng = {"torch": torch.get_rng_state()}
        if torch.cuda.is_available():
            for i, s in enumerate(torch.cuda.get_rng_state_all()):
                rng[f"cuda{i}"] = s
        save_file(rng, str(tmp / "rng.safetensors"))
        if predictor is not None:
            weights = {k: v.detach().cpu().contiguous() for k, v in predictor.state_dict().items()}
            save_file(weights, str(tmp / "predictor.safetensors"))
        full = {"format_version": CHECKPOINT_VERSION, **state, "scheduler": scheduler.state_dict()}
        (tmp / "trainer_state.json").write_text(json.dumps(full), encoding="utf-8")

    return atomic_folder(target, write, replace_if_contains=("trainer_state.json",))


def load_checkpoint_state(
    folder: Path,
    *,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    predictor: torch.nn.Module | None,
) -> dict[str, Any]:
    """Restore optimiser, scheduler, RNG and predictor from ``folder``; return the trainer state.

    Raises:
        FileNotFoundError: ``folder`` is not a checkpoint.
        ValueError: unknown format version or incompatible optimiser groups.
    """
    file = folder / "trainer_state.json"
    if not file.is_file():
        raise FileNotFoundError(f"checkpoint not found: {folder} (expected trainer_state.json inside)")
    state: dict[str, Any] = json.loads(file.read_text(encoding="utf-8"))
    if state.get("format_version") != CHECKPOINT_VERSION:
        raise ValueError(f"unsupported checkpoint format_version {state.get('format_version')!r} in {folder}")
    load_optimizer_state(optimizer, folder, hint="resume with the same freezing and predictor options")
    scheduler.load_state_dict(state["scheduler"])
    rng = load_file(str(folder / "rng.safetensors"))
    torch.set_rng_state(rng["torch"])
    if torch.cuda.is_available():
        cuda = [rng[k] for k in sorted(k for k in rng if k.startswith("cuda"))]
        if cuda:
            torch.cuda.set_rng_state_all(cuda)
    if predictor is not None:
        pfile = folder / "predictor.safetensors"
        if not pfile.is_file():
            raise ValueError(f"checkpoint {folder} has no predictor head but the run uses one")
        predictor.load_state_dict(load_file(str(pfile)))
    return state
