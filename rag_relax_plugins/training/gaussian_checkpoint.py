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

__all__ = ["CHECKPOINT_VERSION", "load_checkpoint_state", "save_checkpoint"]

CHECKPOINT_VERSION = 1


def _save_optimizer(opt: torch.optim.Optimizer, folder: Path) -> None:
    sd = opt.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for pid, st in sd["state"].items():
        for k, v in st.items():
            if isinstance(v, torch.Tensor):
                tensors[f"{pid}.{k}"] = v.detach().cpu().contiguous()
            else:
                scalars.setdefault(str(pid), {})[k] = v
    save_file(tensors, str(folder / "optimizer.safetensors"))
    meta = {"param_groups": sd["param_groups"], "scalars": scalars}
    (folder / "optimizer.json").write_text(json.dumps(meta), encoding="utf-8")


def _load_optimizer(opt: torch.optim.Optimizer, folder: Path) -> None:
    meta = json.loads((folder / "optimizer.json").read_text(encoding="utf-8"))
    state: dict[int, dict[str, Any]] = {}
    for key, t in load_file(str(folder / "optimizer.safetensors")).items():
        pid, name = key.split(".", 1)
        state.setdefault(int(pid), {})[name] = t
    for pid, extra in meta["scalars"].items():
        state.setdefault(int(pid), {}).update(extra)
    if len(meta["param_groups"]) != len(opt.param_groups):
        raise ValueError(
            f"checkpoint {folder} has {len(meta['param_groups'])} optimiser parameter groups, the "
            f"current run {len(opt.param_groups)}: resume with the same freezing and predictor options"
        )
    opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


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
        _save_optimizer(optimizer, tmp)
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

    return atomic_folder(target, write)


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
    _load_optimizer(optimizer, folder)
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
