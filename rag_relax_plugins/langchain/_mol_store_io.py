"""On-disk layout of the LangChain MoL vector store (no pickle, written atomically).

A saved store is a folder::

    store.json   format name and version, the ids and, in the same order, texts and metadata
    index/       the MoLIndex folder (config.json, similarity.safetensors, items.safetensors, ...)

The folder is written into a temporary sibling and renamed into place
(:func:`rag_relax_plugins._io.atomic_folder`), so a crash never leaves a
half-written store. Metadata must be JSON-serialisable: a value that is not fails the save before
anything is written (tuples come back as lists).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from rag_relax_plugins._io import atomic_folder
from rag_relax_plugins.index import MoLIndex

__all__ = ["FORMAT_NAME", "FORMAT_VERSION", "read_store", "write_store"]

FORMAT_NAME = "rag-relax-mol-langchain-store"
FORMAT_VERSION = 1

Docs = dict[str, tuple[str, dict[str, Any]]]


def write_store(folder: str | Path, index: MoLIndex | None, docs: Docs) -> None:
    """Write ``docs`` (id -> (text, metadata)) and ``index`` to ``folder`` atomically."""
    ids = list(docs)
    payload = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "ids": ids,
        "texts": [docs[i][0] for i in ids],
        "metadatas": [docs[i][1] for i in ids],
    }
    try:
        encoded = json.dumps(payload, ensure_ascii=False)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"metadata must be JSON-serialisable to save the store: {exc}") from exc

    def write(tmp: Path) -> None:
        (tmp / "store.json").write_text(encoded, encoding="utf-8")
        if index is not None:
            index.save(tmp / "index")

    atomic_folder(folder, write)


def read_store(folder: str | Path, device: str | torch.device | None) -> tuple[MoLIndex | None, Docs]:
    """``(index or None, docs)`` from a folder written by :func:`write_store` (version checked)."""
    folder = Path(folder)
    path = folder / "store.json"
    if not path.is_file():
        raise FileNotFoundError(f"no MoL store at {folder} (missing store.json)")
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict) or data.get("format") != FORMAT_NAME or data.get("format_version") != FORMAT_VERSION:
        got = (data.get("format"), data.get("format_version")) if isinstance(data, dict) else type(data).__name__
        raise ValueError(f"{path} is not a {FORMAT_NAME} v{FORMAT_VERSION} file (got {got!r})")
    index = MoLIndex.load(folder / "index", device=device) if (folder / "index").is_dir() else None
    ids, texts, metas = data["ids"], data["texts"], data["metadatas"]
    held = set() if index is None else set(index.ids)
    if not (len(ids) == len(texts) == len(metas)) or set(ids) != held:
        raise ValueError(f"{folder}: store.json and index/ disagree on the stored ids")
    return index, {i: (t, m) for i, t, m in zip(ids, texts, metas, strict=True)}
