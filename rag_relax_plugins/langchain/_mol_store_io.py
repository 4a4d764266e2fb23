"""On-disk layout of the LangChain MoL vector store (no pickle, written atomically).

A saved store is a folder::

    store.json   format name and version, the ids and, in the same order, texts and metadata,
                 and whether the store built its cosine head itself (``auto_head``, optional);
                 for a store saved before its first add (no ``index/``), the options of the
                 index it will build (``index_options``: :mod:`rag_relax_plugins.index.store_options`)
    index/       the MoLIndex folder (config.json, similarity.safetensors, items.safetensors, ...)

The folder is written into a temporary sibling and renamed into place
(:func:`rag_relax_plugins._io.atomic_folder`), so a crash never leaves a half-written store;
:func:`read_store` finds the previous save through :func:`rag_relax_plugins._io.find_saved_folder`
if a crash fell between the two renames of a replacement. Metadata must be JSON-serialisable with
string keys (at every depth): anything else fails the save before anything is written, and a
previous save stays intact (JSON would turn ``{1: "one"}`` into ``{"1": "one"}`` silently, and a
filter on the key would stop matching). Tuples come back as lists. The embedding model and the
search strategy are not saved.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from rag_relax_plugins._io import atomic_folder, find_saved_folder, read_json
from rag_relax_plugins._whole_save import read_whole_save
from rag_relax_plugins.index import MoLIndex
from rag_relax_plugins.index.store_options import options_json, read_options

__all__ = ["FORMAT_NAME", "FORMAT_VERSION", "read_store", "write_store"]

FORMAT_NAME = "rag-relax-mol-langchain-store"
STORE_KIND = "mol-langchain-store"  # the kind its saves record (atomic_folder)
FORMAT_VERSION = 1

Docs = dict[str, tuple[str, dict[str, Any]]]


def _check_keys(value: Any, where: str, active: set[int] | None = None) -> None:
    """Raise ``ValueError`` on a dict key that is not a ``str`` anywhere inside ``value``, or on a
    container that holds itself (``json.dumps`` would raise ``ValueError`` too; this is first)."""
    if not isinstance(value, (dict, list, tuple)):
        return
    active = set() if active is None else active  # the containers on the path to ``value``
    if id(value) in active:
        raise ValueError(f"{where} holds itself (a circular reference): JSON cannot save it")
    active.add(id(value))
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise ValueError(
                    f"metadata keys must be strings to save the store (JSON would turn {key!r} into "
                    f"{json.dumps(str(key))}); got {type(key).__name__} key {key!r} in {where}"
                )
            _check_keys(item, f"{where}[{key!r}]", active)
    else:
        for i, item in enumerate(value):
            _check_keys(item, f"{where}[{i}]", active)
    active.discard(id(value))


def _numpy_scalar(value: Any) -> Any:
    """``json.dumps`` ``default``: a numpy scalar (``np.float32(0.5)``, ``np.int64(3)``,
    ``np.bool_(True)`` ...) as the Python value it holds; anything else is refused."""
    if type(value).__module__ == "numpy" and getattr(value, "ndim", None) == 0 and callable(getattr(value, "item", None)):
        plain = value.item()
        if type(plain).__module__ != "numpy":  # np.longdouble(1.5).item() is a longdouble again
            return plain
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def _unsaveable(docs: Docs, exc: BaseException) -> ValueError:
    """The error for metadata ``json.dumps`` refused, naming the first id whose metadata it refuses."""
    for i, (_, metadata) in docs.items():
        try:
            json.dumps(metadata, default=_numpy_scalar)
        except (TypeError, ValueError, RecursionError) as own:
            return ValueError(f"the metadata of id {i!r} is not JSON-serialisable ({own}): the store was not "
                              "saved; nothing was written")
    return ValueError(f"metadata must be JSON-serialisable to save the store: {exc}")


def write_store(
    folder: str | Path, index: MoLIndex | None, docs: Docs, *, auto_head: bool = False,
    index_kwargs: dict[str, Any] | None = None,
) -> None:
    """Write ``docs`` (id -> (text, metadata)) and ``index`` to ``folder`` atomically;
    ``index_kwargs``: the store's options of an index not built yet (saved when ``index`` is ``None``).

    Numpy scalars in metadata are written as the Python values they hold (they load as ``float``,
    ``int``, ``bool`` ...).

    Raises:
        ValueError: a metadata value is not JSON-serialisable (the message names the first such
            id), a key is not a string, or a text or string holds a lone surrogate (nothing is
            written; an earlier save in ``folder`` is untouched).
    """
    ids = list(docs)
    for i in ids:
        _check_keys(docs[i][1], f"the metadata of id {i!r}")
    payload = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "auto_head": auto_head,
        "ids": ids,
        "texts": [docs[i][0] for i in ids],
        "metadatas": [docs[i][1] for i in ids],
    }
    if index is None and index_kwargs is not None:
        payload["index_options"] = options_json(index_kwargs)
    try:
        encoded = json.dumps(payload, ensure_ascii=False, default=_numpy_scalar)
    except (TypeError, ValueError, RecursionError) as exc:
        raise _unsaveable(docs, exc) from exc
    try:
        data = encoded.encode("utf-8")
    except UnicodeEncodeError as exc:  # a lone surrogate in a text or a metadata string
        raise ValueError(
            f"a text or metadata string is not valid Unicode (a lone surrogate, {encoded[exc.start:exc.end]!r}): "
            "the store's files are UTF-8; nothing was written"
        ) from None

    def write(tmp: Path) -> None:
        (tmp / "store.json").write_bytes(data)
        if index is not None:
            index.save(tmp / "index")

    atomic_folder(folder, write, replace_if_contains=("store.json",), kind=STORE_KIND)


def read_store(
    folder: str | Path, device: str | torch.device | None
) -> tuple[MoLIndex | None, Docs, bool, dict[str, Any] | None]:
    """``(index or None, docs, auto_head, index options or None)`` from a folder written by
    :func:`write_store` (the options: ``first_stage`` and ``cache_dtype`` of the index a store
    saved before its first add will build; ``None`` when not recorded).

    The format version is checked; ``folder`` may also be recovered from the ``.<name>.old-*``
    sibling a crash between the two renames of a replacing save leaves behind.

    Raises:
        FileNotFoundError: no complete save at ``folder``.
        ValueError: another format or version, or ``store.json`` and ``index/`` disagree.
    """
    return read_whole_save(folder, lambda: _read_store(Path(folder), device))


def _read_store(
    folder: Path, device: str | torch.device | None
) -> tuple[MoLIndex | None, Docs, bool, dict[str, Any] | None]:
    try:
        folder = find_saved_folder(folder, "store.json", kind=STORE_KIND)
    except FileNotFoundError as exc:
        raise FileNotFoundError(f"no MoL store at {folder} (missing store.json)") from exc
    path = folder / "store.json"
    data = read_json(path, object_only=False)
    if not isinstance(data, dict) or data.get("format") != FORMAT_NAME or data.get("format_version") != FORMAT_VERSION:
        got = (data.get("format"), data.get("format_version")) if isinstance(data, dict) else type(data).__name__
        raise ValueError(f"{path} is not a {FORMAT_NAME} v{FORMAT_VERSION} file (got {got!r})")
    index = MoLIndex.load(folder / "index", device=device) if (folder / "index").is_dir() else None
    ids, texts, metas = data.get("ids"), data.get("texts"), data.get("metadatas")
    if not (isinstance(ids, list) and isinstance(texts, list) and isinstance(metas, list)
            and all(isinstance(v, str) for v in [*ids, *texts]) and all(isinstance(m, dict) for m in metas)):
        raise ValueError(f"{path}: 'ids' and 'texts' must be lists of strings and 'metadatas' a list of objects "
                         "(corrupt store.json)")
    held = set() if index is None else set(index.ids)
    if not (len(ids) == len(texts) == len(metas)) or len(set(ids)) != len(ids) or set(ids) != held:
        raise ValueError(f"{folder}: store.json and index/ disagree on the stored ids (or store.json lists one twice)")
    docs = {i: (t, m) for i, t, m in zip(ids, texts, metas, strict=True)}
    options = None if index is not None or "index_options" not in data else read_options(data["index_options"], str(path))
    return index, docs, data.get("auto_head") is True, options
