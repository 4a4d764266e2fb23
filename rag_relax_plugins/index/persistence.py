"""Folder persistence for :class:`~rag_relax_plugins.index.MoLIndex` (no pickle, atomic).

Layout of an index folder (``FORMAT_VERSION`` 1)::

    config.json             format name and version, MoLConfig, FirstStageConfig, cache dtype
    similarity.safetensors  the MoLSimilarity weights
    items.safetensors       features (N, D_x) fp32, components (N, P_x, d_P), gate (N, P)
    ids.json                the N ids, in row order
    metadata.json           the N metadata dicts, in row order
    per_embd.faiss          FAISS first stages (faiss.write_index), only when built and current;
    avg.faiss               config.json "faiss_sha256" holds each one's SHA-256 (a file changed
                            since, or copied from another save, is not used: the stage is rebuilt)
    stage_rows.safetensors  the item row of each vector of a FAISS stage edited since its build
                            (int64, -1 for a replaced or deleted vector; see index.stages), one
                            tensor per stage named in config.json "faiss_rows"; absent when no
                            saved stage was edited (its vectors are then the cache rows in order)
    .rag_relax_save.json    the save marker of :func:`~rag_relax_plugins._io.atomic_folder`

Atomic save: everything is written into a temporary sibling folder ``.<name>.tmp-<random>``;
then an existing ``<name>`` is renamed to ``.<name>.old-<random>``, the new folder is renamed to
``<name>``, and only then is the old one deleted. A crash while writing leaves ``<name>``
untouched; a crash between the two renames leaves the previous index in the ``.old`` folder,
which :func:`load_index` picks up (with a warning) when ``<name>`` is missing.

An existing ``<name>`` is replaced only if it is a save (it holds the marker, or
``items.safetensors`` for folders saved before the marker existed, or only files an index
writes) or is empty; ``index.save("data/")`` on a folder of the user's raises ``ValueError`` and
changes nothing.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from safetensors.torch import save_file

from rag_relax_plugins._io import (
    atomic_folder,
    file_sha256,
    find_saved_folder,
    read_json,
    read_tensors,
)
from rag_relax_plugins._whole_save import read_whole_save
from rag_relax_plugins.core.config_dict import require_saved_keys
from rag_relax_plugins.core.mol import MoLConfig, MoLItemState, MoLSimilarity
from rag_relax_plugins.core.scalars import check_count
from rag_relax_plugins.index._item_table import ItemTable
from rag_relax_plugins.index.first_stage import (
    STAGES,
    FaissSearcher,
    FirstStageConfig,
    vectors_per_item,
)
from rag_relax_plugins.index.stages import StageLabels

if TYPE_CHECKING:
    from rag_relax_plugins.index.mol_index import MoLIndex

__all__ = ["FORMAT_NAME", "FORMAT_VERSION", "load_index", "save_index"]

logger = logging.getLogger(__name__)

FORMAT_NAME = "rag-relax-mol-index"
INDEX_KIND = "mol-index"  # the kind its saves record (atomic_folder)
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
    written, label_maps, digests = [], {}, {}
    for name, (searcher, rows) in index._first_stages.faiss_files(index.item_state.components).items():
        searcher.write(str(tmp / f"{name}.faiss"))  # only stages that match the cache
        written.append(name)
        digests[name] = file_sha256(tmp / f"{name}.faiss")
        if rows is not None:
            label_maps[name] = rows
    if label_maps:
        _write_tensors(tmp / "stage_rows.safetensors", label_maps)
    config = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "similarity": index.similarity.config.to_dict(),
        "first_stage": index.first_stage.to_dict(),
        "cache_dtype": index.cache_dtype,
        "exact_filter_threshold": index.exact_filter_threshold,
        "num_items": len(index),
        "faiss_files": written,
        "faiss_rows": sorted(label_maps),
        "faiss_sha256": digests,
    }
    _write_tensors(tmp / "similarity.safetensors", dict(index.similarity.state_dict()))
    items = index.item_state
    _write_tensors(
        tmp / "items.safetensors",
        {"features": index._features, "components": items.components, "gate": items.gate},
    )
    _write_json(tmp / "ids.json", index.ids)
    _write_json(tmp / "metadata.json", index._table.metadata)
    _write_json(tmp / "config.json", config)  # last: a folder without it is never complete


_LEGACY_MARKERS = ("items.safetensors",)  # in every index folder saved before SAVE_MARKER
_REQUIRED = ("similarity.safetensors", "items.safetensors", "ids.json", "metadata.json")
_CONFIG_KEYS = (
    "similarity",
    "first_stage",
    "cache_dtype",
    "exact_filter_threshold",
    "num_items",
)


def save_index(index: MoLIndex, folder: Path) -> None:
    """Atomically write ``index`` to ``folder``, replacing a previous index there.

    Raises:
        ValueError: ``folder`` exists and is not an index folder (or any other save of this
            library); nothing is changed (see :func:`~rag_relax_plugins._io.atomic_folder`).
    """
    atomic_folder(
        folder, lambda tmp: _write_contents(index, tmp), replace_if_contains=_LEGACY_MARKERS, kind=INDEX_KIND
    )


def _resolve_folder(folder: Path) -> Path:
    try:
        found = find_saved_folder(folder, "config.json", kind=INDEX_KIND)
    except FileNotFoundError:
        raise ValueError(f"no MoL index found at {folder} (config.json missing)") from None
    if found != folder:
        logger.warning("index folder %s is missing; loading the previous version from %s", folder, found)
    return found


def _read_json(folder: Path, name: str) -> Any:
    path = folder / name
    if not path.is_file():
        raise ValueError(f"{folder} is not a complete MoL index: {name} is missing")
    # NaN stays readable: saves of versions before 2026-12-02, whose add() accepted NaN metadata,
    # hold bare NaN tokens
    return read_json(path, object_only=False)


def _read_tensors(folder: Path, name: str) -> dict[str, torch.Tensor]:
    path = folder / name
    if not path.is_file():
        raise ValueError(f"{folder} is not a complete MoL index: {name} is missing")
    return read_tensors(path)


def _read_config(folder: Path) -> dict[str, Any]:
    config = _read_json(folder, "config.json")
    if not isinstance(config, dict):
        raise ValueError(f"{folder}/config.json must hold a JSON object, got {type(config).__name__}")
    if config.get("format") != FORMAT_NAME:
        raise ValueError(f"{folder} is not a MoL index (format={config.get('format')!r})")
    if config.get("format_version") != FORMAT_VERSION:
        raise ValueError(
            f"{folder} has index format version {config.get('format_version')!r}; this library reads version {FORMAT_VERSION}"
        )
    missing = [key for key in _CONFIG_KEYS if key not in config]
    if missing:
        raise ValueError(f"{folder}/config.json is missing the key(s) {missing}")
    check_count(f"{folder}/config.json: num_items", config["num_items"], 0)
    faiss_files = config.get("faiss_files", [])
    if not isinstance(faiss_files, list) or not all(isinstance(f, str) and f in STAGES for f in faiss_files):
        raise ValueError(
            f"{folder}/config.json: faiss_files must be a list of {list(STAGES)}, got {faiss_files!r}"
        )
    faiss_rows = config.get("faiss_rows", [])  # absent from saves made before 2026-12-04
    if not isinstance(faiss_rows, list) or not all(isinstance(f, str) and f in faiss_files for f in faiss_rows):
        raise ValueError(
            f"{folder}/config.json: faiss_rows must be a list of names in faiss_files {faiss_files}, got {faiss_rows!r}"
        )
    digests = config.get("faiss_sha256", {})  # absent from saves made before the evening of 2026-12-04
    if not isinstance(digests, dict) or not all(
        k in faiss_files and isinstance(v, str) and len(v) == 64 for k, v in digests.items()
    ):
        raise ValueError(
            f"{folder}/config.json: faiss_sha256 must map names in faiss_files {faiss_files} to "
            f"64-digit SHA-256 strings, got {digests!r}"
        )
    return config


def _build(folder: Path, config: dict[str, Any], device: str | torch.device | None) -> MoLIndex:
    """The empty index described by ``config.json``, with the saved similarity weights."""
    from rag_relax_plugins.index.mol_index import MoLIndex

    try:
        mol = MoLConfig.from_dict(config["similarity"])
        first_stage = FirstStageConfig.from_dict(config["first_stage"])
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{folder}/config.json holds an invalid configuration: {exc}") from exc
    require_saved_keys(config["similarity"], ("tau",), f"{folder}/config.json (similarity)")
    weights = _read_tensors(folder, "similarity.safetensors")
    # the shapes the config builds, on the meta device (no memory), before the module is built: a
    # hand-edited component_dim 10**7 allocated gigabytes (10**8: a raw allocator error) first
    try:
        with torch.device("meta"):
            wanted = {k: tuple(v.shape) for k, v in MoLSimilarity(mol).state_dict().items()}
    except RuntimeError as exc:  # sizes past what a tensor can hold ("Storage size calculation overflowed")
        raise ValueError(f"{folder}/config.json describes a similarity that cannot be built: {exc}") from exc
    other = sorted(k for k in wanted.keys() & weights.keys() if tuple(weights[k].shape) != wanted[k])
    if other:
        raise ValueError(f"{folder}/similarity.safetensors does not match config.json: {other[0]} is "
                         f"{tuple(weights[other[0]].shape)} in the file, {wanted[other[0]]} by the config "
                         f"({len(other)} such tensor(s))")
    similarity = MoLSimilarity(mol)
    try:
        similarity.load_state_dict(weights)
    except RuntimeError as exc:  # missing / unexpected / mis-shaped weights
        raise ValueError(
            f"{folder}/similarity.safetensors does not match config.json: {exc}"
        ) from exc
    bad = [k for k, t in weights.items() if not t.is_floating_point()]
    if bad:  # load_state_dict would cast integer weights silently (read_tensors refused NaN / inf)
        raise ValueError(f"{folder}/similarity.safetensors: {bad[0]} is {weights[bad[0]].dtype}, not a float tensor")
    try:
        return MoLIndex(
            similarity,
            first_stage=first_stage,
            cache_dtype=config["cache_dtype"],
            device=device,
            exact_filter_threshold=config["exact_filter_threshold"],
        )
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{folder}/config.json holds an invalid setting: {exc}") from exc


def _check_items(
    folder: Path, tensors: dict[str, torch.Tensor], index: MoLIndex, n: int
) -> None:
    mol = index.similarity.config
    want = {
        "features": ((n, mol.item_dim), torch.float32),
        "components": ((n, mol.num_item_embeddings, mol.component_dim), index.item_state.components.dtype),
        "gate": ((n, mol.num_pairs), torch.float32),
    }
    for key, (shape, dtype) in want.items():
        where = f"{folder}/items.safetensors"
        if key not in tensors:
            raise ValueError(f"{where} has no {key!r} tensor")
        t = tensors[key]
        if t.shape[:1] != (n,):
            raise ValueError(
                f"{folder} is inconsistent: {n} items in config.json, {key} has {t.shape[0] if t.dim() else 0} rows"
            )
        if tuple(t.shape) != shape:
            raise ValueError(f"{where}: {key} has shape {tuple(t.shape)}, expected {shape}")
        if t.dtype != dtype:
            raise ValueError(
                f"{where}: {key} has dtype {t.dtype}, expected {dtype} (cache_dtype={index.cache_dtype!r})"
            )


def load_index(folder: Path, *, device: str | torch.device | None = None) -> MoLIndex:
    """Load an index written by :func:`save_index`.

    Every file is checked (presence, JSON / safetensors syntax, keys, shapes, dtypes against
    ``cache_dtype``, finiteness, id and metadata types) before anything is returned.

    Raises:
        ValueError: missing folder or file, wrong format name or version, a missing or invalid
            config key, or files that are inconsistent with each other (the message names the
            file and what is wrong).
    """
    return read_whole_save(folder, lambda: _load_index(_resolve_folder(Path(folder)), device))


def _load_index(folder: Path, device: str | torch.device | None) -> MoLIndex:
    config = _read_config(folder)
    index = _build(folder, config, device)
    n = config["num_items"]
    # fresh, allocator-aligned copies: load_file's buffers can start at any byte offset, and some
    # CPU matmul kernels round differently on unaligned data (search results would then differ
    # from the saved index in the last bit)
    tensors = {k: t.clone() for k, t in _read_tensors(folder, "items.safetensors").items()}
    ids = _read_json(folder, "ids.json")
    metadata = _read_json(folder, "metadata.json")
    if not isinstance(ids, list) or not isinstance(metadata, list):
        raise ValueError(f"{folder}: ids.json and metadata.json must each hold a JSON list")
    if not len(ids) == len(metadata) == n:
        raise ValueError(
            f"{folder} is inconsistent: {n} items in config.json, {len(ids)} ids, {len(metadata)} metadata rows"
        )
    _check_items(folder, tensors, index, n)
    if not all(isinstance(i, str) for i in ids) or len(set(ids)) != len(ids):
        raise ValueError(f"{folder}/ids.json must hold unique string ids")
    bad_rows = [r for r, m in enumerate(metadata) if not isinstance(m, dict)]
    if bad_rows:
        raise ValueError(
            f"{folder}/metadata.json: every row must be a JSON object, row {bad_rows[0]} is "
            f"{type(metadata[bad_rows[0]]).__name__}"
        )
    stages = _read_stages(folder, config, index, n)
    _fill(index, ids, metadata, tensors, stages)
    return index


def _fill(
    index: MoLIndex,
    ids: list[str],
    metadata: list[dict[str, Any]],
    tensors: dict[str, torch.Tensor],
    stages: dict[str, tuple[FaissSearcher, torch.Tensor | None]],
) -> None:
    """Fill the empty ``index`` with the checked contents read above (``tensors``: the items'
    features, components and gate): ``stages`` maps a first stage's name to its searcher and
    label map (``None``: the identity)."""
    dev = index.device
    state = MoLItemState(tensors["components"].to(dev), tensors["gate"].to(dev))
    index._table = ItemTable(ids, metadata)
    index._store.features.replace(tensors["features"].to(dev))
    index._store.set_state(state)
    for name, (searcher, rows) in stages.items():
        p_x = int(state.components.shape[1])
        index._first_stages.restore(name, searcher, p_x, None if rows is None else rows.to(index.device))


def _read_stages(
    folder: Path, config: dict[str, Any], index: MoLIndex, n: int
) -> dict[str, tuple[FaissSearcher, torch.Tensor | None]]:
    """The saved FAISS first stages, each with its checked label map (``None``: the identity)."""
    maps = _read_tensors(folder, "stage_rows.safetensors") if config.get("faiss_rows") else {}
    stages: dict[str, tuple[FaissSearcher, torch.Tensor | None]] = {}
    for name in config.get("faiss_files", []):
        path = folder / f"{name}.faiss"
        if not path.is_file():
            raise ValueError(f"{folder} is not a complete MoL index: {path.name} is missing")
        digest = config.get("faiss_sha256", {}).get(name)
        if digest is not None and file_sha256(path) != digest:
            # changed since the save (damaged, or copied from another folder): its vectors could
            # belong to other items. The stage is derived from the cache: rebuilt at its first use
            logger.warning("%s is not the file saved with this index (its SHA-256 differs): not used, "
                           "the stage is rebuilt", path)
            continue
        try:
            searcher = FaissSearcher.read(index.first_stage, str(path))
        except RuntimeError as exc:  # FAISS reports a corrupt or truncated file this way
            raise ValueError(f"{path} is not a readable FAISS index: {exc}") from exc
        d = int(searcher.index.d)
        if d != index.similarity.config.component_dim:
            raise ValueError(
                f"{path} holds {d}-d vectors, but the index components are "
                f"{index.similarity.config.component_dim}-d"
            )
        rows = None
        per_item = vectors_per_item(name, index.similarity.config.num_item_embeddings)
        if name not in config.get("faiss_rows", []) and len(searcher) != n * per_item:
            # not a file this save wrote for these items (copied from another folder?): rebuilt
            # at its first use instead (an edit could otherwise make it look current)
            logger.warning("%s holds %d vectors, not the %d of the %d items: not used, the stage is rebuilt",
                           path, len(searcher), n * per_item, n)
            continue
        if name in config.get("faiss_rows", []):
            if name not in maps:
                raise ValueError(f"{folder}/stage_rows.safetensors has no {name!r} tensor")
            rows = maps[name]  # StageLabels copies it into its own buffer (RowBuffer.with_room)
            problem = StageLabels.check_rows(rows, len(searcher), n, per_item)
            if problem is not None:
                raise ValueError(f"{folder}/stage_rows.safetensors: {name} does not match {path.name} "
                                 f"and the {n} items: {problem}")
        stages[name] = (searcher, rows)
    return stages
