"""Input validation shared by the text encoders (no heavy imports)."""

from __future__ import annotations

from collections.abc import Sequence

from rag_relax_plugins.core.scalars import check_int
from rag_relax_plugins.core.validation import check_unicode

__all__ = ["check_batch_size", "check_texts"]


def check_texts(texts: object, name: str = "texts") -> list[str]:
    """Return ``texts`` as a list of str, or raise naming the argument and the bad index.

    Raises:
        TypeError: ``texts`` is a bare ``str``/``bytes`` or not a sequence, or an item is not a str.
        ValueError: an item holds a lone surrogate (see :func:`check_unicode`).
    """
    if isinstance(texts, (str, bytes)):
        raise TypeError(
            f"{name} must be a list of str, got a single {type(texts).__name__}; wrap it in a list"
        )
    if not isinstance(texts, Sequence):
        raise TypeError(f"{name} must be a list of str, got {type(texts).__name__}")
    out = list(texts)
    for i, item in enumerate(out):
        if not isinstance(item, str):
            raise TypeError(f"{name}[{i}] must be a str, got {type(item).__name__}")
        check_unicode(f"{name}[{i}]", item)
    return out


def check_batch_size(batch_size: object) -> int:
    """Return ``batch_size`` if it is an int >= 1, else raise ``TypeError``/``ValueError``."""
    return check_int("batch_size", batch_size, 1)
