"""Guards around the similarity module an index shares with its owner (eval mode, dtype, range).

The :class:`~rag_relax_plugins.core.mol.MoLSimilarity` an index scores with is the caller's module:
a training loop may switch it back to train mode (softmax dropout would then make search random
and :class:`~rag_relax_plugins.index.ExactTwoPass` inexact) or cast it to another dtype. Every
index operation therefore runs it under :func:`~rag_relax_plugins.core.modes.eval_mode`, held
under the module's :func:`~rag_relax_plugins.core.modes.module_lock` (two threads switching its
flags at once left it in the wrong mode), and checks its dtype first.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from rag_relax_plugins.core.validation import check_finite, check_floating, check_ndim

__all__ = [
    "check_encoded",
    "check_float32_module",
    "check_representable",
    "float32_features",
    "float_rows",
]


def check_float32_module(name: str, module: nn.Module) -> None:
    """Require every floating-point parameter and buffer of ``module`` to be float32.

    The index computes and caches in float32 (components optionally in bf16/fp16); a module cast
    with ``.double()`` or ``.bfloat16()`` would otherwise fail deep inside a matmul.
    """
    tensors = [*module.named_parameters(), *module.named_buffers()]
    for key, t in tensors:
        if t.is_floating_point() and t.dtype != torch.float32:
            raise ValueError(
                f"{name} must have float32 parameters (the index computes in float32), got "
                f"{t.dtype} for {key!r}; call {name}.float() before indexing (use "
                "cache_dtype='bf16' or 'fp16' for a smaller cache)"
            )


def check_representable(name: str, x: torch.Tensor) -> None:
    """Require finite values in ``x`` (already cast to float32), naming the float32 range.

    ``x`` was finite before the cast (checked at the boundary), so a non-finite value here is an
    overflow of the float32 range (about ``3.4e38``), e.g. a float64 input of ``1e300``.
    """
    if not bool(torch.isfinite(x).all()):
        raise ValueError(
            f"{name} has values outside the float32 range (|x| > {torch.finfo(torch.float32).max:.2e}); "
            "the index computes in float32, rescale the features"
        )


def check_encoded(name: str, components: torch.Tensor, gate: torch.Tensor) -> None:
    """Require finite encoded states (the towers can overflow on huge but finite features)."""
    bad = ~(
        torch.isfinite(components.float()).flatten(1).all(dim=1)
        & torch.isfinite(gate).all(dim=1)
    )
    if bool(bad.any()):
        rows = bad.nonzero().squeeze(1)[:5].tolist()
        raise ValueError(
            f"the similarity produced NaN or inf states for {int(bad.sum())} row(s) of {name} "
            f"(e.g. rows {rows}); the features are probably too large: rescale them"
        )


def float32_features(
    name: str, x: object, dim: int, device: torch.device, *, rows: int | None = None
) -> torch.Tensor:
    """Validate ``(B, dim) x float`` features and return them as float32 on ``device``.

    Args:
        rows: the required ``B`` (``None``: any).

    Raises:
        TypeError: not a floating-point tensor.
        ValueError: wrong shape, NaN/inf, or values beyond the float32 range.
    """
    x = check_floating(name, x)
    check_ndim(name, x, 2)
    if x.shape[1] != dim or (rows is not None and x.shape[0] != rows):
        want = f"(B, {dim})" if rows is None else f"({rows}, {dim}) for {rows} ids"
        raise ValueError(f"{name} must have shape {want}, got {tuple(x.shape)}")
    check_finite(name, x)
    feats = x.detach().to(device, torch.float32)
    check_representable(name, feats)
    return feats


def float_rows(rows: Sequence[object]) -> torch.Tensor:
    """``torch.tensor(rows, dtype=torch.float32)`` of embedding rows (lists of Python numbers),
    through numpy when they hold only numbers: ``torch.tensor`` reads a nested list of floats
    several times slower. Anything numpy does not read as numbers (a string, ``None``, ragged
    rows) takes the ``torch.tensor`` path, with its errors."""
    import numpy as np

    try:
        arr = np.array(rows)
    except (TypeError, ValueError, OverflowError):
        arr = None
    if arr is not None and arr.dtype.kind in "fiub":
        with np.errstate(over="ignore"):  # beyond float32: inf, refused by the caller's finiteness check
            return torch.from_numpy(arr.astype(np.float32, copy=False))
    return torch.tensor(rows, dtype=torch.float32)
