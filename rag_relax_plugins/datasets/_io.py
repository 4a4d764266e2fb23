"""Line readers shared by the data-set loaders: JSON lines (plain or gzip) with line numbers."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = ["check_limit", "iter_jsonl", "require_keys"]


def check_limit(limit: object) -> int | None:
    """Return ``limit`` if it is None or an int >= 0, else raise ``TypeError``/``ValueError``."""
    if limit is None:
        return None
    if isinstance(limit, bool) or not isinstance(limit, int):
        raise TypeError(f"limit must be an int or None, got {type(limit).__name__}")
    if limit < 0:
        raise ValueError(f"limit must be >= 0, got {limit}")
    return limit


def iter_jsonl(path: Path, limit: int | None = None) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(line_number, object)`` for each non-blank line (1-based numbers).

    Gzip is used when the name ends in ``.gz``. Stops after ``limit`` objects.

    Raises:
        ValueError: a line is not valid JSON or not a JSON object (names the file and line).
    """
    if limit == 0:
        return
    opener = gzip.open if path.name.endswith(".gz") else open
    count = 0
    with opener(path, "rt", encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}: line {lineno} is not valid JSON ({exc.msg})") from exc
            if not isinstance(obj, dict):
                raise ValueError(
                    f"{path}: line {lineno} must be a JSON object, got {type(obj).__name__}"
                )
            yield lineno, obj
            count += 1
            if limit is not None and count >= limit:
                return


def require_keys(obj: dict[str, Any], keys: tuple[str, ...], path: Path, lineno: int) -> None:
    """Raise ``ValueError`` naming the file, line and missing keys when ``obj`` lacks any of ``keys``."""
    missing = [k for k in keys if k not in obj]
    if missing:
        raise ValueError(f"{path}: line {lineno} is missing field(s) {missing}")
