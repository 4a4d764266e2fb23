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
        MissingExtraError: when the module is not installed (its extra's pip line), or is
            installed but fails to import (the error, and a reinstall line).
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        missing = getattr(exc, "name", None)
        if not isinstance(exc, ModuleNotFoundError) or (
            missing is not None and module != missing and not module.startswith(missing + ".")
        ):  # installed but broken (an ABI mismatch, a dependency of its own missing): a reinstall of
            # the extra would not say why
            raise MissingExtraError(
                f"{module!r} is installed but failed to import ({exc}). Reinstall it with: "
                f'pip install --force-reinstall "rag-relax-plugins[{extra}]"'
            ) from exc
        raise MissingExtraError(
            f"{module!r} is required for this feature but is not installed. "
            f'Install it with: pip install "rag-relax-plugins[{extra}]"'
        ) from exc
