"""What the LlamaIndex MoL store is given, read: node vectors, the MMR weight, and the node ids
a ``VectorStoreIndex`` passes for a store that keeps text."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from llama_index.core.base.embeddings.base import BaseEmbedding
from llama_index.core.schema import BaseNode, ImageNode, IndexNode, MetadataMode

from rag_relax_plugins.core.scalars import check_real
from rag_relax_plugins.core.validation import NONFINITE_VECTOR, first_nonfinite_row
from rag_relax_plugins.index._guards import float_rows
from rag_relax_plugins.index.filters import id_list
from rag_relax_plugins.llama_index._mol_persist import Record

__all__ = ["IMAGE_OR_INDEX", "index_struct_ids", "mmr_weight", "node_vectors"]

# the node types a VectorStoreIndex over a store that keeps text lists in its index struct
IMAGE_OR_INDEX = frozenset({ImageNode.class_name(), IndexNode.class_name()})


def node_vectors(nodes: list[BaseNode], positions: list[int], embed_model: BaseEmbedding | None) -> torch.Tensor:
    """``(N, D)`` vectors of ``nodes``, which are the caller's ``nodes[positions[i]]``."""
    missing = [i for i, node in enumerate(nodes) if node.embedding is None]
    if missing and embed_model is None:
        raise ValueError(f"nodes[{positions[missing[0]]}] has no embedding and the store has no embed_model")
    rows: list[list[float] | None] = [node.embedding for node in nodes]
    if missing and embed_model is not None:
        texts = [nodes[i].get_content(metadata_mode=MetadataMode.EMBED) for i in missing]
        for i, emb in zip(missing, embed_model.get_text_embedding_batch(texts), strict=True):
            rows[i] = emb
    widths = {len(r) for r in rows if r is not None}
    if len(widths) != 1 or 0 in widths:
        raise ValueError(f"node embeddings must be non-empty and of one width, got widths {sorted(widths)}")
    matrix = float_rows(rows)
    row = first_nonfinite_row(matrix)
    if row is not None:  # named here: the index blamed "item_features"
        source = "embedding" if row not in missing else "embedding from the embed_model"
        raise ValueError(f"nodes[{positions[row]}] {source} {NONFINITE_VECTOR}")
    return matrix


def index_struct_ids(node_ids: list[str], nodes: Mapping[str, Record], seen: set[str] | None) -> bool:
    """``node_ids`` are what ``VectorStoreIndex.as_retriever`` passes for a store that keeps
    text: the ids its index struct lists, which are ``ImageNode`` / ``IndexNode`` ids only, kept
    there after a delete or an upsert as another type, and not always all of the store's (two
    indexes over one store; a node the store holds before the index lists it). Told by: every
    id was added to this store as such a node at some time. Such ids are then no restriction
    (they hid every text node); a user's restriction to some of those nodes alone reads the
    same, and a filter (on ``_node_type``, or a metadata key) gives it.

    Args:
        node_ids: the query's non-empty ``node_ids``.
        nodes: the store's records by node id.
        seen: every id ever added to the store as an ``ImageNode`` / ``IndexNode``; ``None``
            for a store loaded from a manifest written before that was recorded, whose deleted
            ids are unknown (an id it does not hold is then taken as one of them).
    """
    id_list("node_ids", node_ids)
    for i in set(node_ids):
        if seen is not None and i in seen:
            continue
        if i in nodes and nodes[i][0] in IMAGE_OR_INDEX:  # (seen is None) stored as such a node
            continue
        if seen is None and i not in nodes:  # an older manifest: perhaps a deleted one
            continue
        return False
    return True


def mmr_weight(from_kwargs: object, from_query: object) -> float:
    """The MMR relevance weight: ``query(mmr_threshold=...)``, else the query's, else 0.5."""
    name, lam = "mmr_threshold", from_kwargs
    if lam is None:
        name, lam = "query.mmr_threshold", from_query
    if lam is None:
        return 0.5
    value = check_real(name, lam)  # numpy floats too
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must lie in [0, 1] (the relevance weight), got {lam}")
    return value
