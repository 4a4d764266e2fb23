"""Checkpoints of the MoL/two-tower trainer: safetensors + JSON, written atomically, no pickle.

A checkpoint folder ``checkpoint_step_N`` holds:

- ``model.safetensors``: the model's ``state_dict`` (persistent buffers and parameters);
- ``optimizer.safetensors`` + ``optimizer.json``: the optimiser state flattened to tensors
  (``"<param index>.<name>"``) plus its param groups and non-tensor entries;
- ``trainer_state.json``: format version, step, the training config and the loss history.

It is written to a temporary folder in the same parent and renamed into place, so a crash never
leaves a half-written checkpoint; loading checks the format version.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file
from torch import nn

from rag_relax_plugins._io import atomic_folder, read_tensors
from rag_relax_plugins.training._optimizer_state import read_optimizer_state, save_optimizer_state
from rag_relax_plugins.training._resume_check import read_trainer_state as read_state
from rag_relax_plugins.training._run_files import checkpoint_folder
from rag_relax_plugins.training._weights import weights_mismatch

__all__ = [
    "FORMAT_VERSION",
    "latest_checkpoint",
    "load_checkpoint",
    "load_model_weights",
    "save_checkpoint",
    "save_model_weights",
]

FORMAT_VERSION = 1
_CKPT_RE = re.compile(r"^checkpoint_step_(\d+)$")


def _tensors(state: dict[str, Any]) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().contiguous() for k, v in state.items() if isinstance(v, torch.Tensor)}


def save_model_weights(model: nn.Module, folder: Path) -> None:
    """Write ``model.state_dict()`` to ``folder/model.safetensors`` (shared tensors are cloned)."""
    tensors = {k: v.clone() for k, v in _tensors(model.state_dict()).items()}
    save_file(tensors, str(folder / "model.safetensors"))


def load_model_weights(model: nn.Module, folder: str | os.PathLike[str]) -> None:
    """Load ``folder/model.safetensors`` into ``model`` (strict: every key must match).

    The keys and shapes are compared with ``model.state_dict()`` before anything is loaded, so a
    refused file leaves ``model`` as it was; a module's load hooks (which may rename old keys) do
    not run before that check. :func:`save_model_weights` writes exactly those keys.
    """
    path = Path(folder) / "model.safetensors"
    if not path.is_file():
        raise FileNotFoundError(f"no model weights at {path}")
    state = read_tensors(path)
    problem = weights_mismatch(model, state)  # load_state_dict copies the matching keys, then raises
    if problem is not None:
        raise ValueError(f"checkpoint {path} does not match the model: {problem}")
    model.load_state_dict(state)


def save_checkpoint(
    folder: str | os.PathLike[str],
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    trainer_state: dict[str, Any],
) -> Path:
    """Atomically write a checkpoint folder (see the module docstring); returns its path."""

    def write(tmp: Path) -> None:
        save_model_weights(model, tmp)
        save_optimizer_state(optimizer, tmp)
        state = {"format_version": FORMAT_VERSION, **trainer_state}
        (tmp / "trainer_state.json").write_text(json.dumps(state, indent=1), encoding="utf-8")

    return atomic_folder(folder, write, replace_if_contains=("trainer_state.json",), kind="checkpoint")


def load_checkpoint(
    folder: str | os.PathLike[str],
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
) -> dict[str, Any]:
    """Load a checkpoint into ``model`` (and ``optimizer``); returns the trainer state.

    The optimizer's moments follow its parameters' device (``Optimizer.load_state_dict``).

    Raises:
        FileNotFoundError: ``folder`` is not a checkpoint.
        ValueError: unknown format version, or weights that do not match the model.
    """
    path = checkpoint_folder(folder)
    state = read_trainer_state(path)
    # every file is read and checked before the model or the optimiser changes: a refused
    # checkpoint leaves both as they were
    moments = None if optimizer is None else read_optimizer_state(optimizer, path)
    load_model_weights(model, path)
    if optimizer is not None and moments is not None:
        optimizer.load_state_dict(moments)
    return state


def read_trainer_state(folder: str | os.PathLike[str]) -> dict[str, Any]:
    """The ``trainer_state.json`` of a checkpoint (format version checked), loading nothing else:
    a resume checks it before any weight of the caller's model is replaced.

    Raises:
        FileNotFoundError: ``folder`` is not a checkpoint.
        ValueError: unknown format version, a field or ``history`` list missing or mistyped, or a
            ``step`` other than the number of step losses in ``history``.
    """
    return read_state(checkpoint_folder(folder), version=FORMAT_VERSION, fields=("step", "history", "config"),
                      history_lists=("step_loss", "step_parts", "epoch_loss", "eval"), step_list="step_loss")


def latest_checkpoint(directory: str | os.PathLike[str]) -> Path | None:
    """The ``checkpoint_step_N`` folder with the largest ``N`` in ``directory``, or ``None``."""
    d = Path(directory)
    if not d.is_dir():
        return None
    found = [
        (int(m.group(1)), p)
        for p in d.iterdir()
        if p.is_dir() and (m := _CKPT_RE.match(p.name)) and (p / "trainer_state.json").is_file()
    ]
    return max(found)[1] if found else None
