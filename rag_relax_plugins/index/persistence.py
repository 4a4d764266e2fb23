"""Folder persistence for :class:`~rag_relax_plugins.index.MoLIndex` (no pickle, atomic).

Layout of an index folder (``FORMAT_VERSION`` 1)::

    config.json             format name and version, MoLConfig, FirstStageConfig, cache dtype
    similarity.safetensors  the MoLSimilarity weights
    items.safetensors       features (N, D_x) fp32, components (N, P_x, d_P), gate (N, P)
    ids.json                the N ids, in row order
    metadata.json           the N metadata dicts, in row order
    per_embd.faiss          FAISS first stages (faiss.write_index), only when built and current
    avg.faiss

Atomic save: everything is written into a temporary sibling folder ``.<name>.tmp-<random>``;
then an existing ``<name>`` is renamed to ``.<name>.old-<random>``, the new folder is renamed to
``<name>``, and only then is the old one deleted. A crash while writing leaves ``<name>``
untouched; a crash between the two renames leaves the previous index in the ``.old`` folder,
which :func:`load_index` picks up (with a warning) when ``<name>`` is missing.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from safetensors.torch import load_file, save_file

from rag_relax_plugins._io import atomic_folder, find_saved_folder
from rag_relax_plugins.core.mol import MoLConfig, MoLItemState, MoLSimilarity
from rag_relax_plugins.index.first_stage import FaissSearcher, FirstStageConfig

if TYPE_CHECKING:
    from rag_relax_plugins.index.mol_index import MoLIndex

__all__ = ["FORMAT_NAME", "FORMAT_VERSION", "load_index", "save_index"]

logger = logging.getLogger(__name__)

FORMAT_NAME = "rag-relax-mol-index"
FORMAT_VERSION = 1


def _write_json(path: Path, data: Any) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(data, fh, ensure_ascii=False)
        fh.flush()
        os.fsync(fh.fileno())


def _write_tensors(path: Path, tensors: dict[str, torch.Tensor]) -> None:
    save_file({k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}, str(path))


def _write_contents(index: MoLIndex, tmp: Path) -> None:
    """Write every file of the index into ``tmp`` (an empty folder)."""
    written = []
    for name, searcher in index._searchers.items():
        if isinstance(searcher, FaissSearcher) and searcher is index._searcher(name):
            searcher.write(str(tmp / f"{name}.faiss"))
            written.append(name)
    config = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "similarity": index.similarity.config.to_dict(),
        "first_stage": index.first_stage.to_dict(),
        "cache_dtype": index.cache_dtype,
        "exact_filter_threshold": index.exact_filter_threshold,
        "num_items": len(index),
        "faiss_files": written,
    }
    _write_tensors(tmp / "similarity.safetensors", dict(index.similarity.state_dict()))
    items = index.item_state
    _write_tensors(
        tmp / "items.safetensors",
        {"features": index._features, "components": items.components, "gate": items.gate},
    )
    _write_json(tmp / "ids.json", index.ids)
    _write_json(tmp / "metadata.json", index._metadata)
    _write_json(tmp / "config.json", config)  # last: a folder without it is never complete


def save_index(index: MoLIndex, folder: Path) -> None:
    """Atomically write ``index`` to ``folder`` (replacing a previous index there)."""
    atomic_folder(folder, lambda tmp: _write_contents(index, tmp))


def _resolve_folder(folder: Path) -> Path:
    try:
        found = find_saved_folder(folder, "config.json")
    except FileNotFoundError:
        raise ValueError(f"no MoL index found at {folder} (config.json missing)") from None
    if found != folder:
        logger.warning("index folder %s is missing; loading the previous version from %s", folder, found)
    return found


def load_index(folder: Path, *, device: str | torch.device | None = None) -> MoLIndex:
    """Load an index written by :func:`save_index`.

    Raises:
        ValueError: missing folder, wrong format name or version, or inconsistent files.
    """
    from rag_relax_plugins.index.mol_index import MoLIndex

    folder = _resolve_folder(Path(folder))
    with open(folder / "config.json", encoding="utf-8") as fh:
        config = json.load(fh)
    if config.get("format") != FORMAT_NAME:
        raise ValueError(f"{folder} is not a MoL index (format={config.get('format')!r})")
    if config.get("format_version") != FORMAT_VERSION:
        raise ValueError(
            f"{folder} has index format version {config.get('format_version')!r}; this library reads version {FORMAT_VERSION}"
        )
    similarity = MoLSimilarity(MoLConfig.from_dict(config["similarity"]))
    try:
        similarity.load_state_dict(load_file(str(folder / "similarity.safetensors")))
    except RuntimeError as exc:  # missing / unexpected / mis-shaped weights
        raise ValueError(
            f"{folder}/similarity.safetensors does not match config.json: {exc}"
        ) from exc
    first_stage = FirstStageConfig.from_dict(config["first_stage"])
    index = MoLIndex(
        similarity,
        first_stage=first_stage,
        cache_dtype=config["cache_dtype"],
        device=device,
        exact_filter_threshold=config["exact_filter_threshold"],
    )
    # fresh, allocator-aligned copies: load_file's buffers can start at any byte offset, and some
    # CPU matmul kernels round differently on unaligned data (search results would then differ
    # from the saved index in the last bit)
    tensors = {k: t.clone() for k, t in load_file(str(folder / "items.safetensors")).items()}
    with open(folder / "ids.json", encoding="utf-8") as fh:
        ids = json.load(fh)
    with open(folder / "metadata.json", encoding="utf-8") as fh:
        metadata = json.load(fh)
    n = config["num_items"]
    if not (
        len(ids)
        == len(metadata)
        == n
        == tensors["features"].shape[0]
        == tensors["components"].shape[0]
        == tensors["gate"].shape[0]
    ):
        raise ValueError(
            f"{folder} is inconsistent: {n} items in config.json, {len(ids)} ids, {len(metadata)} metadata rows"
        )
    mol = similarity.config
    want = {
        "features": (n, mol.item_dim),
        "components": (n, mol.num_item_embeddings, mol.component_dim),
        "gate": (n, mol.num_pairs),
    }
    for key, shape in want.items():
        if tuple(tensors[key].shape) != shape:
            raise ValueError(
                f"{folder}/items.safetensors: {key} has shape {tuple(tensors[key].shape)}, "
                f"expected {shape}"
            )
    if len(set(ids)) != len(ids) or not all(isinstance(i, str) for i in ids):
        raise ValueError(f"{folder}/ids.json must hold unique string ids")
    dev = index.device
    index._ids = list(ids)
    index._rows = {i: r for r, i in enumerate(ids)}
    index._metadata = list(metadata)
    index._features = tensors["features"].to(dev)
    index._items = MoLItemState(tensors["components"].to(dev), tensors["gate"].to(dev))
    for name in config.get("faiss_files", []):
        index._searchers[name] = FaissSearcher.read(first_stage, str(folder / f"{name}.faiss"))
    return index
