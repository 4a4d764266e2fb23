"""Keep a vector store's own records in step with its :class:`~rag_relax_plugins.index.MoLIndex`.

The LangChain and LlamaIndex stores keep each document's text and metadata beside the index. An
index add or delete is all or nothing, but an interrupt (``KeyboardInterrupt``) can also arrive
just after it committed and before the store recorded it: the store then lagged the index (an
id the index returns and the store does not know: ``KeyError`` at the next search). These two
functions run the index edit and the store's update together, and after an interrupt or a
failure make the store agree with what the index holds, whichever side of the commit it hit.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from rag_relax_plugins.index.mol_index import MoLIndex

__all__ = ["add_in_step", "delete_in_step"]


def _holds(index: MoLIndex, ids: Sequence[str], vectors: torch.Tensor) -> bool:
    """Whether every id is in ``index`` with exactly these raw features (the add committed)."""
    if not all(i in index for i in ids):
        return False
    stored = index.get_features(list(ids)).to("cpu")
    return torch.equal(stored, vectors.detach().to("cpu", torch.float32))


def add_in_step(index: MoLIndex, ids: Sequence[str], vectors: torch.Tensor, record: Callable[[], None]) -> None:
    """``index.add(ids, vectors)``, then ``record()`` (the store's own update, idempotent).

    On any exception, ``record()`` runs (again) when the index holds the new vectors, so the store
    has what the index has; the exception is then re-raised.
    """
    try:
        index.add(ids, vectors)
        record()
    except BaseException:
        if _holds(index, ids, vectors):
            record()
        raise


def delete_in_step(index: MoLIndex | None, ids: Sequence[str], forget: Callable[[str], object]) -> None:
    """``index.delete(ids, missing_ok=True)``, then ``forget(i)`` for each id (idempotent).

    On any exception, every id the index no longer holds is forgotten, then the exception is
    re-raised (an index delete that failed or was undone keeps its ids: the store keeps them too).
    """
    try:
        if ids and index is not None:
            index.delete(ids, missing_ok=True)
        for i in ids:
            forget(i)
    except BaseException:
        for i in ids:
            if index is None or i not in index:
                forget(i)
        raise
