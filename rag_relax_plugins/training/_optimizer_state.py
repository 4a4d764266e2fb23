"""Optimizer state as safetensors + JSON (no pickle), shared by every trainer's checkpoints.

Tensors (Adam moments, step counters) go to ``optimizer.safetensors`` under ``"<param id>.<name>"``;
non-tensor state and the parameter groups go to ``optimizer.json``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from rag_relax_plugins._io import read_json, read_tensors

__all__ = ["load_optimizer_state", "read_optimizer_files", "read_optimizer_state", "save_optimizer_state"]


def save_optimizer_state(opt: torch.optim.Optimizer, folder: Path) -> None:
    """Write ``opt.state_dict()`` into ``folder`` (``optimizer.safetensors`` + ``optimizer.json``)."""
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


def load_optimizer_state(opt: torch.optim.Optimizer, folder: Path, *, hint: str = "") -> None:
    """Load what :func:`save_optimizer_state` wrote into ``opt``.

    ``Optimizer.load_state_dict`` moves the moments to each parameter's device and dtype.

    Raises:
        ValueError: as :func:`read_optimizer_state`.
    """
    opt.load_state_dict(read_optimizer_state(opt, folder, hint=hint))


def read_optimizer_files(folder: Path) -> tuple[dict[str, Any], dict[int, dict[str, Any]]]:
    """``optimizer.json`` and ``optimizer.safetensors`` of ``folder`` read and checked for their
    form, without an optimiser: ``(meta, state by parameter index)``. A resume calls it before
    it changes anything (:func:`read_optimizer_state` checks the result against the optimiser).

    Raises:
        ValueError: either file unreadable or not an optimiser state written by this package (named).
    """
    meta_file = folder / "optimizer.json"
    meta = read_json(meta_file)
    if not isinstance(meta, dict) or not isinstance(meta.get("param_groups"), list):
        raise ValueError(f"{meta_file}: not an optimiser state (no 'param_groups' list)")
    tensors = read_tensors(folder / "optimizer.safetensors")
    state: dict[int, dict[str, Any]] = {}
    try:
        for key, t in tensors.items():
            pid, name = key.split(".", 1)
            state.setdefault(int(pid), {})[name] = t
        for pid, extra in meta.get("scalars", {}).items():
            state.setdefault(int(pid), {}).update(extra)
    except (ValueError, AttributeError, TypeError) as exc:  # a key not "<int>.<name>", scalars not a mapping
        raise ValueError(f"{folder}: not an optimiser state written by this package ({exc})") from exc
    return meta, state


def read_optimizer_state(opt: torch.optim.Optimizer, folder: Path, *, hint: str = "") -> dict[str, Any]:
    """What :func:`save_optimizer_state` wrote, checked against ``opt`` and not yet loaded into it:
    the ``opt.load_state_dict`` argument. A resume checks it before it replaces the model's weights.

    Raises:
        ValueError: the checkpoint's number of parameter groups, or of parameters in a group,
            differs from ``opt``'s (the message ends with ``hint``, e.g. which options must match
            to resume), a corrupt
            ``optimizer.json`` / ``optimizer.safetensors`` (named), or a moment whose shape is not
            its parameter's.
    """
    meta_file = folder / "optimizer.json"
    meta, state = read_optimizer_files(folder)
    if len(meta["param_groups"]) != len(opt.param_groups):
        raise ValueError(
            f"checkpoint {folder} has {len(meta['param_groups'])} optimiser parameter groups, the "
            f"current run {len(opt.param_groups)}{': ' + hint if hint else ''}"
        )
    saved_sizes = [len(g["params"]) if isinstance(g, dict) and isinstance(g.get("params"), list) else None
                   for g in meta["param_groups"]]
    sizes = [len(g["params"]) for g in opt.param_groups]
    if saved_sizes != sizes:  # Optimizer.load_state_dict refuses it too, but only when it is called
        raise ValueError(
            f"{meta_file}: its parameter groups hold {saved_sizes} parameters, the current run's "
            f"{sizes}{': ' + hint if hint else ''}"
        )
    params = [p for group in opt.param_groups for p in group["params"]]
    for index, entry in state.items():  # a mis-shaped moment failed only at the first step
        if not 0 <= index < len(params):
            raise ValueError(f"{folder}: optimizer.json / optimizer.safetensors hold a state of parameter {index}, "
                             f"but the run has {len(params)}")
        for key, t in entry.items():
            if hasattr(t, "shape") and t.dim() > 0 and tuple(t.shape) != tuple(params[index].shape):
                raise ValueError(f"{folder}/optimizer.safetensors: {index}.{key} has shape {tuple(t.shape)}, "
                                 f"its parameter {tuple(params[index].shape)}")
    return {"state": state, "param_groups": meta["param_groups"]}
