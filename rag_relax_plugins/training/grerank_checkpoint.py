"""Resumable checkpoints of the G-Rerank trainer, without pickle.

A ``checkpoint_step_N/`` folder holds ``reranker/`` (a :class:`GumbelReranker` folder),
``optimizer.safetensors`` + ``optimizer.json`` (optimiser state flattened into tensors and JSON
scalars), ``rng.safetensors`` (the Gumbel-noise generator state) and ``trainer_state.json``
(format version, epoch, position in the epoch, optimiser step, loss history). Folders are written
under a temporary name and renamed into place, so a crash never leaves a half-written checkpoint.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from rag_relax_plugins._io import atomic_folder
from rag_relax_plugins.rerankers.gumbel import GumbelReranker
from rag_relax_plugins.training._optimizer_state import load_optimizer_state, save_optimizer_state

__all__ = ["CHECKPOINT_VERSION", "load_checkpoint", "save_checkpoint"]

CHECKPOINT_VERSION = 1


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
        if torch.cuda.is_available():
            for i, st in enumerate(torch.cuda.get_rng_state_all()):
                rng[f"cuda{i}"] = st
        save_file(rng, str(tmp / "rng.safetensors"))
        full = {"format_version": CHECKPOINT_VERSION, **state}
        (tmp / "trainer_state.json").write_text(json.dumps(full), encoding="utf-8")

    return atomic_folder(target, write, replace_if_contains=("trainer_state.json",))


def load_checkpoint(
    folder: Path, *, optimizer: torch.optim.Optimizer, generator: torch.Generator
) -> dict[str, Any]:
    """Restore the optimiser and the noise generator from ``folder``; return the trainer state.

    The reranker weights are loaded by the caller (``GumbelReranker.from_pretrained(folder /
    "reranker")``) before the optimiser is built.

    Raises:
        FileNotFoundError: ``folder`` is not a checkpoint. ValueError: unknown format version.
    """
    file = folder / "trainer_state.json"
    if not file.is_file():
        raise FileNotFoundError(
            f"checkpoint not found: {folder} (expected trainer_state.json inside)"
        )
    state: dict[str, Any] = json.loads(file.read_text(encoding="utf-8"))
    if state.get("format_version") != CHECKPOINT_VERSION:
        raise ValueError(
            f"unsupported checkpoint format_version {state.get('format_version')!r} in {folder}"
        )
    load_optimizer_state(optimizer, folder)
    rng = load_file(str(folder / "rng.safetensors"))
    generator.set_state(rng["gumbel"])
    torch.set_rng_state(rng["torch"])
    cuda = [rng[k] for k in sorted(k for k in rng if k.startswith("cuda"))]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda)
    return state
