"""Where the shared data sets live: ``$RAG_RELAX_DATA``, else ``../shared/data`` next to the repo."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["DATA_ENV_VAR", "data_root", "require_file"]

DATA_ENV_VAR = "RAG_RELAX_DATA"


def data_root(path: str | os.PathLike[str] | None = None) -> Path:
    """Resolve the data folder.

    Order: the ``path`` argument, ``$RAG_RELAX_DATA``, then ``../shared/data`` relative to the
    current directory, then relative to this source tree (for an editable install).
    """
    if path is not None:
        return Path(path)
    env = os.environ.get(DATA_ENV_VAR)
    if env:
        return Path(env)
    candidates = [Path.cwd() / ".." / "shared" / "data", Path(__file__).resolve().parents[3] / "shared" / "data"]
    for cand in candidates:
        if cand.is_dir():
            return cand.resolve()
    return candidates[0]


def require_file(path: Path, what: str) -> Path:
    """Return ``path`` if it is a file, else raise ``FileNotFoundError`` saying how to fix it."""
    if not path.is_file():
        raise FileNotFoundError(
            f"{what} not found at {path}. Pass its path explicitly, or set ${DATA_ENV_VAR} to the "
            "folder that holds the shared data sets (default: ../shared/data)."
        )
    return path
