"""Files every trainer writes beside its model: checkpoint rotation and loss-curve PNGs.

- :func:`prune_checkpoints` keeps the newest ``checkpoint_step_N/`` folders of a run without ever
  deleting the one just written (a run resumed from an older checkpoint writes steps below those
  an earlier run left) or a folder whose name is not ``checkpoint_step_<digits>``.
- :func:`pyplot` imports matplotlib's pyplot on the ``Agg`` backend, or logs a warning and returns
  ``None`` when the ``plot`` extra is missing; :func:`save_png` writes a figure atomically.
"""

from __future__ import annotations

import io
import logging
import shutil
from pathlib import Path
from typing import Any

from rag_relax_plugins._io import atomic_write_bytes

__all__ = ["CHECKPOINT_PREFIX", "checkpoint_steps", "prune_checkpoints", "pyplot", "save_png"]

log = logging.getLogger(__name__)

CHECKPOINT_PREFIX = "checkpoint_step_"


def checkpoint_steps(directory: Path) -> list[tuple[int, Path]]:
    """``(step, folder)`` of every ``checkpoint_step_<digits>/`` folder in ``directory``, by step."""
    found = []
    for p in directory.glob(f"{CHECKPOINT_PREFIX}*"):
        suffix = p.name[len(CHECKPOINT_PREFIX) :]
        if p.is_dir() and suffix.isascii() and suffix.isdigit():
            found.append((int(suffix), p))
    return sorted(found)


def prune_checkpoints(directory: Path, keep: int, *, current: int) -> None:
    """Keep the ``keep`` newest checkpoints up to step ``current`` (the one just written among them).

    Checkpoints of later steps (left by an earlier run when this one resumed from an older
    checkpoint) are neither counted nor deleted; a warning names them.
    """
    found = checkpoint_steps(directory)
    later = [p.name for s, p in found if s > current]
    if later:
        log.warning("%s holds checkpoints past step %d from an earlier run: %s", directory, current, later)
    for _, p in [(s, p) for s, p in found if s <= current][:-keep]:
        shutil.rmtree(p, ignore_errors=True)


def pyplot() -> Any | None:
    """``matplotlib.pyplot`` on the non-interactive ``Agg`` backend, or ``None`` (with a warning)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log.warning('matplotlib is not installed (pip install "rag-relax-plugins[plot]"): no loss curve PNG')
        return None
    return plt


def save_png(fig: Any, path: str | Path, *, dpi: int = 100) -> Path:
    """Write ``fig`` as a PNG to ``path`` atomically (parent folders created), then close it."""
    import matplotlib.pyplot as plt  # a figure exists, so matplotlib does

    buf = io.BytesIO()
    try:
        fig.tight_layout()
        fig.savefig(buf, format="png", dpi=dpi)
    finally:
        plt.close(fig)
    return atomic_write_bytes(path, buf.getvalue())
