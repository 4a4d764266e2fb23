"""Node records of the LlamaIndex MoL vector store and their on-disk layout (JSON manifest + index
folder, no pickle): :func:`record_of` / :func:`node_from_record` convert a node to the
:data:`Record` the store keeps in memory and back.

``persist_path`` (e.g. ``storage/default__vector_store.json``, what ``StorageContext.persist``
asks for) is a JSON manifest: format name and version, the node ids, one record per node (node
type, ref doc id, metadata, and the node JSON without its embedding as a string), the ids ever
added as ``ImageNode`` / ``IndexNode`` and the name of a sibling folder
``<manifest name>.index-<random>`` written by :meth:`MoLIndex.save`.

Crash safety: the new index folder is written completely (atomically, by the index) before the
manifest is replaced with ``os.replace`` from a temporary file in the same folder; the previous
index folder is deleted only after that, and only when it bears this manifest's name (a copied
manifest names the original's folder, which the original still uses). A crash or an interrupt
leaves either the old manifest with its old folder or the new manifest with its new folder (at
worst an orphan folder).

The manifest names its index folder; only a plain sibling name of the pattern this module writes
(``<name>.index-<12 hex digits>``: no path separator, no ``..``) is accepted, by
:func:`read_store` and before :func:`write_store` deletes the previous folder. A crafted manifest
(``"../victim"``, an absolute path) is a ``ValueError`` and nothing is loaded, written or deleted.
The manifest also records whether the store built its cosine head itself (``auto_head``) and,
for a store persisted before its first add (no index folder), the options of the index it will
build (``index_options``: :mod:`rag_relax_plugins.index.store_options`). The embedding model and
the search strategy are not persisted. The manifest's ``embedding_dict`` key holds a string, so
that LlamaIndex's default loader (``StorageContext.from_defaults(persist_dir=...)`` without
``vector_store=``) fails on the file instead of reading it as an empty ``SimpleVectorStore``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import uuid
from pathlib import Path
from typing import Any

import torch
from llama_index.core.schema import BaseNode, ImageNode, IndexNode, Node, TextNode

from rag_relax_plugins._io import atomic_write_text, read_json
from rag_relax_plugins._whole_save import read_while_steady
from rag_relax_plugins.index import MoLIndex
from rag_relax_plugins.index.store_options import options_json, read_options

__all__ = [
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "Record",
    "check_local_fs",
    "node_from_record",
    "read_store",
    "record_of",
    "write_store",
]

FORMAT_NAME = "rag-relax-mol-llamaindex-store"
FORMAT_VERSION = 1
_FOREIGN_GUARD_KEY = "embedding_dict"  # SimpleVectorStoreData's field, read by no code of ours
_FOREIGN_GUARD = ("not a SimpleVectorStore: load it with MoLVectorStore.from_persist_dir(dir) and "
                  "pass StorageContext.from_defaults(persist_dir=dir, vector_store=...)")
_INDEX_FOLDER = re.compile(r"[^/\\]+\.index-[0-9a-f]{12}")

Record = tuple[str, "str | None", dict[str, Any], str]
"""What the store keeps per node: ``(node type, ref doc id, metadata, node JSON without embedding)``.

A plain tuple of strings and a flat metadata dict: CPython's cyclic garbage collector untracks
such objects, so 100,000 stored nodes do not slow down every collection (nested node dicts did).
"""


def check_local_fs(fs: object) -> None:
    """Only the local filesystem is supported (``fs=None`` or an fsspec ``file`` filesystem)."""
    if fs is None:
        return
    proto = getattr(fs, "protocol", ())
    protocols = (proto,) if isinstance(proto, str) else tuple(proto)
    if "file" not in protocols:
        raise ValueError(f"fs must be None or a local filesystem, got {type(fs).__name__}")


def _read_manifest(path: Path) -> dict[str, Any]:
    data = read_json(path, object_only=False)
    if not isinstance(data, dict) or data.get("format") != FORMAT_NAME or data.get("format_version") != FORMAT_VERSION:
        got = (data.get("format"), data.get("format_version")) if isinstance(data, dict) else type(data).__name__
        raise ValueError(f"{path} is not a {FORMAT_NAME} v{FORMAT_VERSION} manifest (got {got!r})")
    return data


def _index_folder(data: dict[str, Any], path: Path) -> str | None:
    """The manifest's ``index_folder``: ``None`` or a plain sibling name written by :func:`write_store`."""
    folder = data.get("index_folder")
    if folder is None:
        return None
    if (
        not isinstance(folder, str)
        or _INDEX_FOLDER.fullmatch(folder) is None
        or Path(folder).name != folder
        or (os.altsep is not None and os.altsep in folder)
    ):
        raise ValueError(
            f"{path}: index_folder must be a sibling folder name like '<manifest>.index-<12 hex digits>' "
            f"(no path separators or '..'), got {folder!r}; refusing to load or delete it"
        )
    return folder


def _previous_folder(path: Path) -> str | None:
    try:
        data = _read_manifest(path)
    except (OSError, ValueError):
        return None  # no manifest, or a foreign file that is simply replaced
    return _index_folder(data, path)  # a crafted name is a ValueError: nothing is written or deleted


def write_store(
    path: Path, index: MoLIndex | None, ids: list[str], records: list[Record], *, auto_head: bool = False,
    image_or_index_ids: list[str] | None, index_kwargs: dict[str, Any] | None = None,
) -> None:
    """Write ``index`` and the node records under ``path`` (see the module docstring);
    ``image_or_index_ids``: every id added to the store as an ``ImageNode`` / ``IndexNode``,
    deleted ones included (what a ``VectorStoreIndex``'s index struct may still list); ``None``
    (written as ``null``) when unknown: a store loaded from an older manifest. ``index_kwargs``:
    the store's options of an index not built yet (recorded when ``index`` is ``None``).

    Raises:
        ValueError: the existing manifest at ``path`` names an index folder that is not a plain
            sibling name (nothing is written or deleted).
    """
    path = _through_link(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    old = _previous_folder(path)
    folder = None
    if index is not None:
        folder = f"{path.name}.index-{uuid.uuid4().hex[:12]}"
        index.save(path.parent / folder)
    manifest = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "index_folder": folder,
        "auto_head": auto_head,
        "image_or_index_ids": None if image_or_index_ids is None else list(image_or_index_ids),
        "ids": ids,
        "records": [{"type": t, "ref_doc_id": r, "metadata": m, "node": n} for t, r, m, n in records],
        # a load through StorageContext.from_defaults(persist_dir=...) without vector_store= reads
        # this file (default__vector_store.json) as a SimpleVectorStore, which ignored the keys above
        # and answered every query with nothing; a non-dict under its key makes that load fail
        _FOREIGN_GUARD_KEY: _FOREIGN_GUARD,
    }
    if index is None and index_kwargs is not None:
        manifest["index_options"] = options_json(index_kwargs)
    try:  # the manifest's rename reaches the disk (folder flushed) before the old index is deleted
        atomic_write_text(path, _manifest_text(manifest))
    except BaseException:
        # an interrupt while the folder is flushed comes after the rename: the new manifest is
        # in place then, and deleting its index folder left a manifest naming nothing
        if folder is not None and _named_folder(path) != folder:
            shutil.rmtree(path.parent / folder, ignore_errors=True)
        raise
    # only a folder of this manifest's name: a copy of another manifest (b.json copied from a.json)
    # names a.json's folder, which a.json still uses
    if old and old != folder and old.startswith(f"{path.name}.index-"):
        shutil.rmtree(path.parent / old, ignore_errors=True)


def _through_link(path: Path) -> Path:
    """The manifest a symbolic link ``path`` points to: its index folder lives beside it (writing
    through the link put the folder beside the link, and a load of the real file missed it)."""
    return Path(os.path.realpath(path)) if path.is_symlink() else path


def _named_folder(path: Path) -> str | None:
    """The index folder the manifest at ``path`` names now (``None``: none, or no manifest)."""
    try:
        return _previous_folder(path)
    except ValueError:
        return None


def _manifest_text(manifest: dict[str, Any]) -> str:
    """The manifest as JSON: UTF-8 text as is, or ASCII escapes when some string holds a lone
    surrogate (a non-UTF-8 file name in metadata, as ``SimpleDirectoryReader`` records it), which
    UTF-8 cannot encode; ``json.loads`` reads both back alike."""
    text = json.dumps(manifest, ensure_ascii=False)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return json.dumps(manifest)
    return text


def read_store(
    path: Path, device: str | torch.device | None
) -> tuple[MoLIndex | None, dict[str, Record], bool, set[str] | None, dict[str, Any] | None]:
    """``(index or None, {node id: record}, auto_head, image_or_index_ids, index options or None)``
    from a manifest written by :func:`write_store` (``None`` for ``image_or_index_ids`` when the
    manifest has no such list: written before it was recorded, or from such a store; the options
    of the index a store persisted before its first add will build, ``None`` when not recorded).

    A ``persist`` to the same path from another thread or process replaces the manifest, then
    deletes the index folder the old one named: when loading that folder fails and the manifest
    has changed meanwhile, the new manifest is read again (up to 10 reads, each repeat waiting
    10 ms longer: :func:`~rag_relax_plugins._whole_save.read_while_steady`).
    """
    path = _through_link(path)

    def read() -> tuple[MoLIndex | None, dict[str, Record], bool, set[str] | None, dict[str, Any] | None]:
        if not path.is_file():
            raise FileNotFoundError(f"no MoL vector store manifest at {path}")
        data = _read_manifest(path)
        folder = _index_folder(data, path)
        index = None if folder is None else MoLIndex.load(path.parent / folder, device=device)
        ids, records = _checked_records(data, path)
        held = set() if index is None else set(index.ids)
        if len(ids) != len(records) or len(set(ids)) != len(ids) or set(ids) != held:
            raise ValueError(f"{path}: the manifest and its index folder disagree on the stored ids (or the manifest lists one twice)")
        nodes = {
            i: (rec["type"], rec["ref_doc_id"], rec["metadata"], rec["node"]) for i, rec in zip(ids, records, strict=True)
        }
        seen = data.get("image_or_index_ids")
        if not (seen is None or (isinstance(seen, list) and all(isinstance(i, str) for i in seen))):
            raise ValueError(f"{path}: 'image_or_index_ids' must be a list of strings or null (corrupt manifest)")
        options = None if index is not None or "index_options" not in data else read_options(data["index_options"], str(path))
        return index, nodes, data.get("auto_head") is True, None if seen is None else set(seen), options

    # whole: the manifest names an index folder that no persist rewrites, so a read that succeeds
    # is one persist's; only a folder deleted mid-read (a newer manifest) is read again
    return read_while_steady(lambda: _manifest_state(path), read, what=f"{path} was replaced by other persists",
                             whole=True)


def _manifest_state(path: Path) -> tuple[int, int, int] | str:
    """Which manifest is at ``path``: ``os.replace`` (every persist) puts a new file there."""
    try:
        st = path.stat()
    except OSError:
        return ""
    return st.st_ino, st.st_mtime_ns, st.st_size


_NODE_TYPES: dict[str, type[BaseNode]] = {
    cls.class_name(): cls for cls in (TextNode, Node, IndexNode, ImageNode)
}
"""Node classes rebuilt as themselves; any other recorded type (a ``Document``, which an
``IngestionPipeline`` or ``insert_nodes`` hands to the store as it is, a user's subclass) comes
back as a ``TextNode``, as core's ``metadata_dict_to_node`` does for stores that keep text."""


def _checked_records(data: dict[str, Any], path: Path) -> tuple[list[str], list[dict[str, Any]]]:
    """The manifest's ``ids`` and ``records``, their shapes checked and each record's node JSON
    naming its id (a corrupt manifest is a ``ValueError`` naming it, not a ``KeyError`` now, a
    pydantic error at the first query, or nodes answering for other ids)."""
    ids, records = data.get("ids"), data.get("records")
    if not (isinstance(ids, list) and all(isinstance(i, str) for i in ids) and isinstance(records, list)):
        raise ValueError(f"{path}: 'ids' must be a list of strings and 'records' a list (corrupt manifest)")
    for n, rec in enumerate(records):
        if not (isinstance(rec, dict) and isinstance(rec.get("type"), str) and isinstance(rec.get("metadata"), dict)
                and isinstance(rec.get("node"), str) and "ref_doc_id" in rec and isinstance(rec["ref_doc_id"], (str, type(None)))):
            raise ValueError(f"{path}: records[{n}] is not a stored node (type, ref_doc_id, metadata, node)")
        # the node JSON was parsed only when a query returned it: a broken one failed queries
        # without naming the file, and one of another node answered for ids[n] silently
        try:
            node = json.loads(rec["node"])
        except ValueError as exc:
            raise ValueError(f"{path}: records[{n}] holds no readable node JSON ({exc}) (corrupt manifest)") from exc
        got = node.get("id_") if isinstance(node, dict) else None
        if n < len(ids) and got != ids[n]:
            raise ValueError(f"{path}: records[{n}] holds the node {got!r}, but ids[{n}] is {ids[n]!r} (corrupt manifest)")
    return ids, records


def record_of(node: BaseNode) -> Record:
    """``(type, ref doc id, metadata copy, node JSON without the embedding)``, see :data:`Record`.

    Raises:
        ValueError: a node field (its metadata ...) JSON cannot hold, naming the node.
    """
    try:
        data = node.to_dict(mode="json")  # JSON types, as core's node_to_metadata_dict (datetime -> str)
    except ValueError as exc:  # pydantic's PydanticSerializationError: a numpy value in metadata ...
        raise ValueError(f"node {node.node_id!r} cannot be stored: its fields must be JSON-serialisable ({exc}); "
                         "nothing was added") from exc
    data["embedding"] = None
    encoded = json.dumps(data)
    return (node.class_name(), node.ref_doc_id, json.loads(encoded).get("metadata", {}), encoded)


def node_from_record(record: Record) -> BaseNode:
    """A fresh node object (parsed from JSON: never shared with the store's state)."""
    cls = _NODE_TYPES.get(record[0], TextNode)
    try:
        return cls.from_dict(json.loads(record[3]))
    except ValueError as exc:  # JSONDecodeError and pydantic's ValidationError are ValueErrors
        raise ValueError(f"a stored {record[0]} is not a valid node (corrupt store file?): {exc}") from exc
