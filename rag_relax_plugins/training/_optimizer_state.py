"""Optimizer state as safetensors + JSON (no pickle), shared by every trainer's checkpoints.

Tensors (Adam moments, step counters) go to ``optimizer.safetensors`` under ``"<param id>.<name>"``;
non-tensor state and the parameter groups go to ``optimizer.json``.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from rag_relax_plugins._io import read_json, read_tensors
from rag_relax_plugins.core.scalars import is_number

__all__ = [
    "load_optimizer_state",
    "read_optimizer_files",
    "read_optimizer_state",
    "required_state",
    "save_optimizer_state",
]


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


def read_optimizer_files(
    folder: Path, *, optimizer: type[torch.optim.Optimizer] | None = None
) -> tuple[dict[str, Any], dict[int, dict[str, Any]]]:
    """``optimizer.json`` and ``optimizer.safetensors`` of ``folder`` read and checked for their
    form, without an optimiser: ``(meta, state by parameter index)``. A resume calls it before
    it changes anything (:func:`read_optimizer_state` checks the result against the optimiser).

    The form is what :func:`save_optimizer_state` writes: each group's ``params`` are the
    consecutive indices ``Optimizer.state_dict`` numbers the parameters with (0, 1, ... across the
    groups), each state belongs to one of them, and the parameters of a group that have a state
    hold the same entries. With ``optimizer`` (the class of the optimiser the run will build,
    before it exists) also the entries that class needs (:func:`required_state`) and its numeric
    and boolean hyper-parameters (its constructor's defaults) in every group.

    Raises:
        ValueError: either file unreadable or not an optimiser state written by this package, or
            one of the checks above failing (the file named; nothing was changed).
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
    _check_form(folder, meta["param_groups"], state)
    if optimizer is not None:
        defaults = _constructor_defaults(optimizer)
        for i, group in enumerate(meta["param_groups"]):
            _check_hyper_parameters(meta_file, i, group, defaults, own=defaults.keys())
        _check_required_state(folder, meta["param_groups"], state, optimizer)
    return meta, state


def read_optimizer_state(opt: torch.optim.Optimizer, folder: Path, *, hint: str = "") -> dict[str, Any]:
    """What :func:`save_optimizer_state` wrote, checked against ``opt`` and not yet loaded into it:
    the ``opt.load_state_dict`` argument. A resume checks it before it replaces the model's weights.

    Besides the form (:func:`read_optimizer_files`): as many groups as ``opt``, of its sizes; the
    numeric hyper-parameters of ``opt``'s groups numbers in the saved ones (its constructor's
    present), its boolean ones booleans; every state holding the entries ``opt`` needs
    (:func:`required_state`); moments of their parameters' shapes. A damaged file was a
    ``KeyError``, a size-mismatch ``RuntimeError`` or a ``TypeError`` at the first step, after the
    model had changed.

    Raises:
        ValueError: the checkpoint's number of parameter groups, or of parameters in a group,
            differs from ``opt``'s (the message ends with ``hint``, e.g. which options must match
            to resume), a corrupt or damaged ``optimizer.json`` / ``optimizer.safetensors``
            (named), or a moment whose shape is not its parameter's.
    """
    meta_file = folder / "optimizer.json"
    meta, state = read_optimizer_files(folder)
    if len(meta["param_groups"]) != len(opt.param_groups):
        raise ValueError(
            f"checkpoint {folder} has {len(meta['param_groups'])} optimiser parameter groups, the "
            f"current run {len(opt.param_groups)}{': ' + hint if hint else ''}"
        )
    saved_sizes = [len(g["params"]) for g in meta["param_groups"]]  # lists of indices (_check_form)
    sizes = [len(g["params"]) for g in opt.param_groups]
    if saved_sizes != sizes:  # Optimizer.load_state_dict refuses it too, but only when it is called
        raise ValueError(
            f"{meta_file}: its parameter groups hold {saved_sizes} parameters, the current run's "
            f"{sizes}{': ' + hint if hint else ''}"
        )
    for i, (saved, group) in enumerate(zip(meta["param_groups"], opt.param_groups, strict=True)):
        _check_hyper_parameters(meta_file, i, saved, group, own=opt.defaults.keys())
    _check_required_state(folder, meta["param_groups"], state, type(opt))
    params = [p for group in opt.param_groups for p in group["params"]]
    for index, entry in state.items():  # a mis-shaped moment failed only at the first step
        for key, t in entry.items():
            if hasattr(t, "shape") and t.dim() > 0 and tuple(t.shape) != tuple(params[index].shape):
                raise ValueError(f"{folder}/optimizer.safetensors: {index}.{key} has shape {tuple(t.shape)}, "
                                 f"its parameter {tuple(params[index].shape)}")
    return {"state": state, "param_groups": meta["param_groups"]}


def required_state(optimizer: type[torch.optim.Optimizer], group: Mapping[str, Any]) -> dict[str, bool]:
    """The state entries a parameter of ``group`` needs once ``optimizer`` has stepped it, each
    mapped to whether it must be a tensor: ``step``, ``exp_avg``, ``exp_avg_sq`` (and
    ``max_exp_avg_sq`` with ``amsgrad``) for Adam and AdamW; none known for other classes (their
    states are only compared with each other)."""
    if issubclass(optimizer, torch.optim.Adam | torch.optim.AdamW):
        need = {"step": False, "exp_avg": True, "exp_avg_sq": True}  # step: a tensor, or a number in old saves
        return need | ({"max_exp_avg_sq": True} if group.get("amsgrad") is True else {})
    return {}


def _kind(value: Any) -> str | None:
    """``"number"``, ``"boolean"`` or ``"list of <n> numbers"`` for the hyper-parameter values
    checked (``betas`` is a list of 2); ``None`` for the others."""
    if isinstance(value, bool):
        return "boolean"
    if is_number(value):
        return "number"
    if isinstance(value, list | tuple) and value and all(is_number(v) for v in value):
        return f"list of {len(value)} numbers"
    return None


def _constructor_defaults(optimizer: type[torch.optim.Optimizer]) -> dict[str, Any]:
    """The hyper-parameters ``optimizer``'s constructor takes, with their defaults."""
    try:
        params = inspect.signature(optimizer).parameters.values()
    except (TypeError, ValueError):  # no signature to read: only the form is checked
        return {}
    return {p.name: p.default for p in params if p.name != "params" and p.default is not inspect.Parameter.empty}


def _check_form(folder: Path, groups: list[Any], state: Mapping[int, Mapping[str, Any]]) -> None:
    """The indices and entries :func:`save_optimizer_state` writes (see :func:`read_optimizer_files`)."""
    meta_file = folder / "optimizer.json"
    start = 0
    for i, group in enumerate(groups):
        ids = group.get("params") if isinstance(group, dict) else None
        if not isinstance(ids, list):
            raise ValueError(f"{meta_file}: param_groups[{i}] is not a parameter group (no 'params' list); "
                             "nothing was changed")
        want = list(range(start, start + len(ids)))
        if not all(isinstance(p, int) and not isinstance(p, bool) for p in ids) or ids != want:
            raise ValueError(f"{meta_file}: param_groups[{i}] 'params' must be the indices {want!r:.60} a save "
                             f"writes, got {ids!r:.60} (a damaged checkpoint?); nothing was changed")
        start += len(ids)
    for index in state:
        if not 0 <= index < start:
            raise ValueError(f"{folder}: optimizer.json / optimizer.safetensors hold a state of parameter {index}, "
                             f"but the parameter groups hold {start}; nothing was changed")
    start = 0
    for i, group in enumerate(groups):  # within a group, every stepped parameter holds the same entries
        stepped = [j for j in range(start, start + len(group["params"])) if state.get(j)]
        start += len(group["params"])
        if not stepped:
            continue
        first = state[stepped[0]]
        for j in stepped[1:]:
            if state[j].keys() != first.keys():
                one, other = (first, state[j]) if first.keys() - state[j].keys() else (state[j], first)
                name = sorted(one.keys() - other.keys())[0]
                file = "optimizer.safetensors" if isinstance(one[name], torch.Tensor) else "optimizer.json"
                lacking = j if one is first else stepped[0]
                raise ValueError(f"{folder / file}: the state of parameter {lacking} has no {name!r}, that of "
                                 f"others in param_groups[{i}] has (a damaged checkpoint?); nothing was changed")


def _check_hyper_parameters(file: Path, index: int, saved: Any, reference: Mapping[str, Any],
                            own: Iterable[str]) -> None:
    """Saved group ``index`` holds, for each number, boolean or list of numbers of ``reference``
    (a group of the run's optimiser, or its constructor's defaults), a value of that kind; those
    named in ``own`` (the optimiser's hyper-parameters, not a scheduler's ``initial_lr``) must be
    present (``Optimizer.load_state_dict`` replaces the group whole)."""
    own = set(own)
    for key, want in reference.items():
        kind = _kind(want)
        if key == "params" or kind is None or (key not in saved and (key not in own or kind == "boolean")):
            continue  # torch fills missing boolean options in (Adam.__setstate__)
        got = saved.get(key)
        if _kind(got) != kind:
            raise ValueError(f"{file}: param_groups[{index}] {key!r} must be a {kind}, like the "
                             f"run's optimiser's, got {got!r:.60} (a damaged checkpoint?); nothing was changed")


def _check_required_state(folder: Path, groups: list[dict[str, Any]], state: Mapping[int, Mapping[str, Any]],
                          optimizer: type[torch.optim.Optimizer]) -> None:
    """Every stepped parameter's state holds the entries ``optimizer`` needs (:func:`required_state`)."""
    start = 0
    for group in groups:
        need = required_state(optimizer, group)
        for j in range(start, start + len(group["params"])):
            entry = state.get(j) or {}  # a parameter never stepped has no state: torch makes it then
            for name, tensor in need.items() if entry else ():
                value = entry.get(name)
                if value is None or (tensor and not isinstance(value, torch.Tensor)):
                    raise ValueError(f"{folder / 'optimizer.safetensors'}: the state of parameter {j} has no "
                                     f"{'tensor ' if tensor else ''}{name!r}, which {optimizer.__name__} needs "
                                     "(a damaged checkpoint?); nothing was changed")
                if not tensor and not ((isinstance(value, torch.Tensor) and value.numel() == 1) or is_number(value)):
                    raise ValueError(f"{folder}: the state of parameter {j} has a {name!r} that is not a number; "
                                     "nothing was changed")
        start += len(group["params"])
