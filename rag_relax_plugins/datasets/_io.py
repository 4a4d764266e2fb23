"""Line readers shared by the data-set loaders: JSON lines (plain or gzip) with line numbers."""

from __future__ import annotations

import gzip
import json
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from rag_relax_plugins.core.scalars import check_int

__all__ = ["check_limit", "iter_jsonl", "iter_lines", "require_keys"]


def check_limit(limit: object) -> int | None:
    """Return ``limit`` if it is None or an int >= 0, else raise ``TypeError``/``ValueError``."""
    return None if limit is None else check_int("limit", limit, 0)


def iter_lines(path: Path, *, start: int = 1) -> Iterator[tuple[int, str]]:
    """Yield ``(line_number, text)`` of a UTF-8 file (gzip when the name ends in ``.gz``); a
    UTF-8 byte-order mark at the start is dropped, as ``encoding="utf-8-sig"`` would.

    Each line is decoded on its own, so a bad byte is reported on its exact line; a file that
    is not gzip, or a truncated or corrupt gzip stream, is reported with the line being read.

    Raises:
        ValueError: ``"<path>: line N: ..."`` for invalid UTF-8 or a broken gzip stream.
    """
    opener = gzip.open if path.name.endswith(".gz") else open
    lineno = start - 1
    try:
        with opener(path, "rb") as fh:
            for lineno, raw in enumerate(fh, start=start):
                if lineno == start and raw.startswith(b"\xef\xbb\xbf"):  # a UTF-8 BOM (Windows editors)
                    raw = raw[3:]
                try:
                    yield lineno, raw.decode("utf-8")
                except UnicodeDecodeError as exc:
                    raise ValueError(f"{path}: line {lineno}: not valid UTF-8 ({exc.reason} at byte {exc.start} of the line)") from exc
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise ValueError(f"{path}: line {lineno + 1}: corrupt or truncated gzip data ({exc})") from exc


def iter_jsonl(path: Path, limit: int | None = None) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(line_number, object)`` for each non-blank line (1-based numbers).

    Gzip is used when the name ends in ``.gz``. Stops after ``limit`` objects.

    Raises:
        ValueError: a line is not valid JSON, not a JSON object or not UTF-8, or the gzip
            stream is broken (names the file and line).
    """
    if limit == 0:
        return
    count = 0
    for lineno, line in iter_lines(path):
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
