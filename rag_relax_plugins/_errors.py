"""Errors and optional-dependency helpers shared by every layer (no heavy imports)."""

from __future__ import annotations

import importlib
from types import ModuleType

__all__ = ["MissingExtraError", "require"]


class MissingExtraError(ImportError):
    """An optional dependency is missing; the message gives the exact install line."""


def require(module: str, extra: str) -> ModuleType:
    """Import ``module`` or fail with the ``pip install`` line for ``extra``.

    Args:
        module: dotted module name, e.g. ``"faiss"``.
        extra: the rag-relax-plugins extra that provides it, e.g. ``"faiss"``.

    Returns:
        The imported module.

    Raises:
        MissingExtraError: when the module cannot be imported.
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:  # pragma: no cover - exercised with a fake module name in tests
        raise MissingExtraError(
            f"{module!r} is required for this feature but is not installed. "
            f'Install it with: pip install "rag-relax-plugins[{extra}]"'
        ) from exc
