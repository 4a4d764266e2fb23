"""Loads that return one whole save while another thread or process saves the same folder.

:func:`~rag_relax_plugins._io.atomic_folder` replaces a folder as a whole, but a loader reads its
files one by one, by path: a save landing between two reads gives files of two saves (which may
pass every check) or a file missing mid-read. Every save records a fresh ``save_id`` in its
marker; :func:`read_whole_save` keeps a read only when that id is the same before and after it.
"""

from __future__ import annotations

import functools
import inspect
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import ParamSpec, TypeVar

from rag_relax_plugins._io import SAVE_MARKER

__all__ = ["read_while_steady", "read_whole_save", "reads_whole_save"]

_T = TypeVar("_T")
_P = ParamSpec("_P")


def _save_state(folder: Path) -> str | None:
    """``folder``'s save id, ``""`` when it is missing (mid-replacement), ``None`` when its save
    records none (older saves, or not one of this package): then a change cannot be seen."""
    if not folder.exists():
        return ""
    try:
        marker = json.loads((folder / SAVE_MARKER).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    sid = marker.get("save_id") if isinstance(marker, dict) else None
    return sid if isinstance(sid, str) and sid else None


def read_whole_save(folder: str | os.PathLike[str], read: Callable[[], _T], *, attempts: int = 10) -> _T:
    """``read()`` of the save at ``folder``, repeated when another save replaced ``folder`` meanwhile.

    The read is kept only when the folder's ``save_id`` is the same before and after it. A read that
    fails while the folder changed is repeated too; one that fails on an unchanged folder raises
    as it is, and each repeat waits a little longer (10 ms more each time) so that a reader is not
    starved by a writer saving in a loop. Saves without a ``save_id`` (older ones) are read once,
    as before.

    Raises:
        whatever ``read`` raises on an unchanged folder; ``OSError`` when the folder changed
        during each of ``attempts`` reads.
    """
    folder = Path(folder)
    return read_while_steady(lambda: _save_state(folder), read, what=f"{folder} was replaced by other saves",
                             attempts=attempts)


def read_while_steady(
    state: Callable[[], object], read: Callable[[], _T], *, what: str, attempts: int = 10, whole: bool = False
) -> _T:
    """``read()``, kept when ``state()`` is the same before and after it, else repeated (see
    :func:`read_whole_save`); a ``None`` state cannot tell a change, so that read is kept as is.
    ``whole=True``: a read that succeeds is kept anyway (what it read cannot mix two saves); only
    a failure beside a changed state is repeated.

    Raises:
        whatever ``read`` raises on an unchanged state; ``OSError`` ("``what`` during each of
        ``attempts`` reads") when the state changed during every read.
    """
    for attempt in range(attempts):
        time.sleep(0.01 * attempt)
        before = state()
        try:
            out = read()
        except (OSError, ValueError):
            if before is None or state() == before:
                raise
            continue
        if whole or before is None or state() == before:
            return out
    raise OSError(f"{what} during each of {attempts} reads; load it again")


def reads_whole_save(param: str) -> Callable[[Callable[_P, _T]], Callable[_P, _T]]:
    """Decorator: the loader reads its save with :func:`read_whole_save`, the folder being its
    parameter ``param`` (given by position or by keyword)."""

    def wrap(load: Callable[_P, _T]) -> Callable[_P, _T]:
        signature = inspect.signature(load)

        @functools.wraps(load)
        def whole(*args: _P.args, **kwargs: _P.kwargs) -> _T:
            try:
                folder = signature.bind(*args, **kwargs).arguments[param]
            except (TypeError, KeyError):  # bad arguments: the loader's own error
                return load(*args, **kwargs)
            return read_whole_save(folder, lambda: load(*args, **kwargs))

        return whole

    return wrap
