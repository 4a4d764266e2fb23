"""A saved learning-rate scheduler state checked before ``scheduler.load_state_dict``.

``LRScheduler.load_state_dict`` copies whatever it is given into the scheduler: a damaged
``"scheduler"`` of a ``trainer_state.json`` was a ``KeyError 'lr_lambdas'`` (LambdaLR) or a
``zip`` ``ValueError`` on ``base_lrs`` of another length, once the model, the optimiser or the
run's files had changed. :func:`check_scheduler_state` refuses it first, naming the file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

__all__ = ["check_lambda_lr_state", "check_scheduler_state", "check_scheduler_step"]


# the keys a resume reads back (LambdaLR / LRScheduler); other public keys differ between torch
# versions and are only type-checked when present
_NEEDED = frozenset({"base_lrs", "last_epoch", "lr_lambdas"})


def _json_kind(value: Any) -> str:
    """The JSON type ``value`` is written as (numbers one kind: JSON keeps ``1.0`` as ``1.0``, ``1`` as ``1``)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list | tuple):
        return "list"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def _mismatch(want: Any, got: Any) -> str | None:
    """Why ``got`` (JSON) cannot stand for ``want`` (a scheduler's value): another JSON type, a
    list of another length, or a list element that does not fit; ``None`` when it fits."""
    if _json_kind(got) != _json_kind(want):
        return f"a {_json_kind(want)}, got {got!r:.60}"
    if isinstance(want, list | tuple):
        if len(got) != len(want):
            return f"a list of {len(want)} (one per optimiser parameter group), got {len(got)}"
        for i, (w, g) in enumerate(zip(want, got, strict=True)):
            inner = _mismatch(w, g)
            if inner is not None:
                return f"a list whose element {i} is {inner}"
    return None


def check_scheduler_state(scheduler: torch.optim.lr_scheduler.LRScheduler, saved: Any, file: Path) -> None:
    """Refuse a saved scheduler state (``saved``, read from ``file``) that ``scheduler`` cannot load.

    ``saved`` must be a JSON object holding the keys a resume reads (``base_lrs``, ``last_epoch``,
    ``lr_lambdas`` where the scheduler has them); each public (non-underscore) key of
    ``scheduler.state_dict()`` it holds must have a value of the same JSON type, lists of the same
    length (one entry per parameter group) with elements of the same types; ``last_epoch`` an integer
    ``>= -1`` (torch's value before the first step; a built scheduler has taken it to 0).
    Private keys (``_step_count``, ``_last_lr`` ...) are left to torch: a missing one keeps the
    scheduler's value. Call it before anything is loaded.

    Raises:
        ValueError: ``"<file>: 'scheduler' ... (a damaged checkpoint?); nothing was changed"``.
    """

    def refuse(what: str) -> None:
        raise ValueError(f"{file}: 'scheduler' {what} (a damaged checkpoint?); nothing was changed")

    if not isinstance(saved, dict):
        refuse(f"must be a JSON object, got {saved!r:.60}")
    for key, want in scheduler.state_dict().items():
        if key.startswith("_"):
            continue
        if key not in saved:
            if key not in _NEEDED:  # another torch's attribute ('verbose' in 2.2-2.6): loads without it
                continue
            refuse(f"has no {key!r} (a {type(scheduler).__name__} state holds it)")
        problem = _mismatch(want, saved[key])
        if problem is not None:
            refuse(f"{key!r} must be {problem}")
    last = saved.get("last_epoch", -1)
    if not isinstance(last, int) or isinstance(last, bool) or last < -1:
        refuse(f"'last_epoch' must be an integer >= -1, got {last!r:.60}")


def check_lambda_lr_state(saved: Any, file: Path, *, groups: int) -> None:
    """:func:`check_scheduler_state` against a ``LambdaLR`` over ``groups`` parameter groups, for
    a check before the trainer has built its optimiser and scheduler (a resume refused before it
    writes anything).

    Raises:
        ValueError: as :func:`check_scheduler_state`.
    """
    params = [{"params": [torch.zeros(1, requires_grad=True)]} for _ in range(max(1, groups))]
    stand_in = torch.optim.lr_scheduler.LambdaLR(torch.optim.SGD(params, lr=1.0), lambda step: 1.0)
    check_scheduler_state(stand_in, saved, file)


def check_scheduler_step(saved: dict[str, Any], step: int, file: Path) -> None:
    """A scheduler stepped once per optimiser step: its ``last_epoch`` must be ``step`` (a damaged
    one set every later learning rate from another point of the schedule: 10**6 trained at 0).
    ``saved`` has passed :func:`check_scheduler_state`.

    Raises:
        ValueError: naming ``file`` and both values.
    """
    if saved.get("last_epoch") != step:
        raise ValueError(f"{file}: 'scheduler' 'last_epoch' is {saved.get('last_epoch')!r:.40}, but 'step' is {step}, "
                         "one scheduler step per optimiser step (a damaged checkpoint?); nothing was changed")
