"""Checks of plain number options (counts, sizes, temperatures, weights), shared by the core ops.

Each raises an error naming the argument and the value received. Any ``numbers.Integral`` /
``numbers.Real`` is accepted (``numpy.int64``, ``numpy.float32``: a value from a ``numpy.arange``
sweep) and returned as a Python ``int`` / ``float``; ``bool`` (and ``numpy.bool_``, which is not a
``numbers.Real``) is refused where a number is due. No torch import: :mod:`.fusion` and
:mod:`.metrics` load without it. Re-exported by :mod:`.validation`.
"""

from __future__ import annotations

import math
import numbers
from typing import TypeGuard

__all__ = [
    "MAX_STEP_SIZE",
    "check_count",
    "check_int",
    "check_k",
    "check_nonnegative",
    "check_optional_count",
    "check_positive",
    "check_real",
    "check_step_size",
    "is_number",
]


def check_k(name: str, k: object, n: int | None = None, what: str = "the number of items") -> int:
    """Require an integer ``1 <= k`` (and ``k <= n`` when ``n`` is given; ``what`` names ``n``).

    Any ``numbers.Integral`` but ``bool`` is accepted (``numpy.int64`` included) and returned as
    a Python ``int``.
    """
    if isinstance(k, bool) or not isinstance(k, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {type(k).__name__}")
    k = int(k)
    if k < 1:
        raise ValueError(f"{name} must be >= 1, got {k}")
    if n is not None and k > n:
        raise ValueError(f"{name} must be <= {n} ({what}), got {k}")
    return k


def check_positive(name: str, value: object) -> float:
    """Require a finite, strictly positive number.

    Any ``numbers.Real`` but ``bool`` is accepted (``numpy.float32`` included) and returned as a
    Python ``float``.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    value = float(value)
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {value}")
    return value


MAX_STEP_SIZE = 1e30
"""The largest learning rate (or gradient-norm bound) a trainer takes: the optimisers work in
float32 (max 3.4e38), and AdamW raised "value cannot be converted to type float without overflow"
from its first step for 1e38 and above, a traceback instead of a refused option."""


def check_step_size(name: str, value: object) -> float:
    """:func:`check_positive`, and at most :data:`MAX_STEP_SIZE` (learning rates, gradient-norm bounds)."""
    value = check_positive(name, value)
    if value > MAX_STEP_SIZE:
        raise ValueError(f"{name} must be at most {MAX_STEP_SIZE:g} (the optimiser works in float32), got {value:g}")
    return value


def check_nonnegative(name: str, value: object) -> float:
    """Require a finite number ``>= 0``; like :func:`check_positive`, but the error is a
    ``ValueError`` for a wrong type too (these options always raised ``ValueError``)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    out = float(value)
    if not math.isfinite(out) or out < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return out


def _int_range(low: int | None, high: int | None) -> str:
    if low is not None and high is not None:
        return f" in [{low}, {high}]"
    if low is not None:
        return f" >= {low}"
    return f" <= {high}" if high is not None else ""


def _in_range(value: int, low: int | None, high: int | None) -> bool:
    return (low is None or value >= low) and (high is None or value <= high)


def check_int(name: str, value: object, low: int | None = None, high: int | None = None, *, hint: str = "") -> int:
    """Require an integer in ``[low, high]`` (either bound may be ``None``), as a Python ``int``.

    Any ``numbers.Integral`` but ``bool`` is accepted: ``numpy.int64`` from ``len`` of a numpy
    array or a pandas ``nunique()`` is a count like any other. ``hint`` (the bounds' reason) is put
    in the range error after the range.

    Raises:
        TypeError: not an integer (the message names the type received).
        ValueError: out of range.
    """
    note = f" ({hint})" if hint else ""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    out = int(value)
    if not _in_range(out, low, high):
        raise ValueError(f"{name} must be{_int_range(low, high)}{note}, got {value!r}")
    return out


def check_count(name: str, value: object, low: int = 0, high: int | None = None, *, hint: str = "") -> int:
    """Require an integer in ``[low, high]`` (``numpy`` integers included; ``bool`` refused), as
    an ``int``; ``hint`` as in :func:`check_int`.

    Raises ``ValueError`` for a wrong type too (the options checked with it always did).
    """
    note = f" ({hint})" if hint else ""
    if (
        isinstance(value, bool)
        or not isinstance(value, numbers.Integral)
        or not _in_range(int(value), low, high)
    ):
        raise ValueError(f"{name} must be an int{_int_range(low, high)}{note}, got {value!r}")
    return int(value)


def check_optional_count(name: str, value: object, low: int = 0) -> int | None:
    """``None``, or as :func:`check_count` (a ``ValueError`` whose message says ``or None``)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        raise ValueError(f"{name} must be an int >= {low} or None, got {value!r}")
    return int(value)


def check_real(name: str, value: object) -> float:
    """Require a real number (any ``numbers.Real`` but ``bool``), as a Python ``float``.

    Raises ``TypeError`` otherwise; the range (finite, bounds) is left to the caller.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    return float(value)


def is_number(value: object) -> TypeGuard[int | float]:
    """``value`` is an ``int`` or a ``float`` (what JSON reads a number as; ``bool`` is not one)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)
