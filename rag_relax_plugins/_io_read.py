"""Reading saved files back: :func:`read_json` and :func:`read_tensors` (re-exported by
:mod:`rag_relax_plugins._io`, where the writes are). A corrupt or truncated file is a ``ValueError``
naming the file. No heavy imports at module load (safetensors is imported on use)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

__all__ = ["read_json", "read_tensors"]


def read_json(path: str | os.PathLike[str], *, object_only: bool = True) -> Any:
    """The JSON value saved at ``path``: an object (``dict``) unless ``object_only=False``.

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: invalid UTF-8 or JSON (corrupt, truncated, or not a file this package wrote;
            nesting too deep or an integer too long for Python to read), or not an object when
            one is expected; the message names the file.
    """
    file = Path(path)
    try:
        value = json.loads(file.read_text(encoding="utf-8"))
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, UnicodeDecodeError, an int past
        # Python's digit limit; RecursionError: arrays nested thousands deep
        raise ValueError(f"{file}: not a readable JSON file (corrupt or truncated?): {exc}") from exc
    if object_only and not isinstance(value, dict):
        raise ValueError(f"{file}: expected a JSON object, got {type(value).__name__}")
    return value


def read_tensors(path: str | os.PathLike[str], *, device: str = "cpu") -> dict[str, Any]:
    """The tensors of the safetensors file at ``path`` (``{name: torch.Tensor}``, on ``device``).

    Every file this package saves holds finite floats: a NaN or inf is damage (or a run that
    diverged), refused here, where the file can still be named, rather than found later as NaN
    scores or embeddings.

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: not a readable safetensors file, or a float tensor holding NaN or inf; the
            message names the file (and the tensor).
    """
    from safetensors import SafetensorError  # here, not at import: this module stays light
    from safetensors.torch import load_file

    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"no such file: {file}")
    try:
        tensors: dict[str, Any] = load_file(str(file), device=device)
    except SafetensorError as exc:
        raise ValueError(f"{file}: not a readable safetensors file (corrupt or truncated?): {exc}") from exc
    for name, t in tensors.items():
        if t.is_floating_point() and not bool(t.isfinite().all()):
            raise ValueError(f"{file}: {name} contains NaN or inf values (a damaged file, or a run that "
                             "diverged); nothing was loaded")
    return tensors
