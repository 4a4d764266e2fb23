"""Boundary checks shared by the core ops: each raises ``ValueError``/``TypeError`` naming the
argument and what was received. Pure functions, no device movement.

The checks of plain numbers live in :mod:`.scalars` (no torch import, for the torch-free
:mod:`.metrics` / :mod:`.fusion`) and are re-exported here."""

from __future__ import annotations

import torch

from rag_relax_plugins.core.device import autocast_enabled
from rag_relax_plugins.core.scalars import (
    check_count,
    check_int,
    check_k,
    check_nonnegative,
    check_optional_count,
    check_positive,
    check_real,
)

__all__ = [
    "MASK_HINT",
    "check_count",
    "check_finite",
    "check_floating",
    "check_int",
    "check_k",
    "check_mask",
    "check_ndim",
    "check_nonnegative",
    "check_optional_count",
    "check_positive",
    "check_real",
    "check_same_dtype",
    "check_same_shape",
    "check_unicode",
]


def check_floating(name: str, x: object) -> torch.Tensor:
    """Require a floating-point tensor."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")
    if x.is_meta:  # every check that reads a value failed with "Tensor.item() cannot be called on meta tensors"
        raise ValueError(f"{name} is on the 'meta' device (shapes only, no values): materialise it first")
    return x


def check_ndim(name: str, x: torch.Tensor, ndims: int | tuple[int, ...]) -> None:
    """Require ``x.dim()`` to be one of ``ndims``."""
    allowed = (ndims,) if isinstance(ndims, int) else ndims
    if x.dim() not in allowed:
        want = " or ".join(f"{d}-D" for d in allowed)
        raise ValueError(f"{name} must be {want}, got shape {tuple(x.shape)}")


MASK_HINT = "pass a mask for invalid positions"


def check_finite(name: str, x: torch.Tensor, *, hint: str = "") -> None:
    """Reject NaN and +-inf; ``hint`` is appended to the message (ops with a ``mask`` argument
    pass :data:`MASK_HINT`: masked positions should be handled by a mask, not by inf)."""
    if not bool(torch.isfinite(x).all()):
        raise ValueError(f"{name} contains NaN or inf values" + (f"; {hint}" if hint else ""))


NONFINITE_VECTOR = (f"holds NaN, inf or values beyond the float32 range (|x| > {torch.finfo(torch.float32).max:.2e}) "
                    "the index computes in")


def first_nonfinite_row(matrix: torch.Tensor) -> int | None:
    """Index of the first row of a 2-D ``matrix`` holding NaN or inf (values beyond float32's range
    become inf when cast to it), or ``None``: for adapters to name the caller's vector, not the
    index's internal argument."""
    bad = (~torch.isfinite(matrix)).any(dim=1)
    return int(bad.nonzero()[0]) if bool(bad.any()) else None


def check_same_dtype(name: str, x: torch.Tensor, like_name: str, like: torch.Tensor, *,
                     under_autocast: bool = False) -> None:
    """Refuse ``x`` in another dtype than ``like`` (torch's own error was "expected m1 and m2 to
    have the same dtype"); ``under_autocast``: allowed while autocast is on for ``x``'s device,
    which casts the matmuls itself."""
    if x.dtype != like.dtype and not (under_autocast and autocast_enabled(x.device.type)):
        raise TypeError(f"{name} must have the dtype of {like_name} ({like.dtype}), got {x.dtype}")


def check_same_shape(name_a: str, a: torch.Tensor, name_b: str, b: torch.Tensor) -> None:
    """Require two tensors of the same shape."""
    if a.shape != b.shape:
        raise ValueError(
            f"{name_a} and {name_b} must have the same shape, got {tuple(a.shape)} and {tuple(b.shape)}"
        )


def check_mask(name: str, mask: torch.Tensor | None, like_name: str, like: torch.Tensor) -> torch.Tensor:
    """Validate an optional boolean mask shaped like ``like``; ``None`` means all valid."""
    if mask is None:
        return torch.ones_like(like, dtype=torch.bool)
    if not isinstance(mask, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor or None, got {type(mask).__name__}")
    if mask.dtype != torch.bool:
        raise TypeError(f"{name} must be a bool tensor, got dtype {mask.dtype}")
    if mask.shape != like.shape:
        raise ValueError(
            f"{name} must have the shape of {like_name} {tuple(like.shape)}, got {tuple(mask.shape)}"
        )
    return mask


def check_unicode(what: str, text: str, *, why: str = "decode it without surrogates (e.g. errors='replace')") -> None:
    """Refuse a str that UTF-8 cannot encode: a lone surrogate such as ``"\\ud800"`` (from
    ``json.loads`` of an escaped half pair, or bytes decoded with ``errors="surrogateescape"``)
    failed inside the tokenizer ("TextEncodeInput must be Union[...]") or the hashing encoder,
    naming neither the text nor its place.

    ``why`` ends the message (the index says its saved files are UTF-8).

    Raises:
        ValueError: naming ``what`` and the position of the surrogate.
    """
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(
            f"{what} is not valid Unicode text (a lone surrogate at position {exc.start}); {why}"
        ) from None
