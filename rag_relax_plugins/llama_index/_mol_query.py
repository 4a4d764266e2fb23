"""What a query of the LlamaIndex MoL store searches with and over: the query vector (given, or
embedded from ``query_str``) and the stored ids that ``node_ids`` / ``doc_ids`` /
``MetadataFilters`` select, the id subset handed to the index before scoring (pre-filtering);
``get_nodes`` and ``delete_nodes`` select what they touch the same way."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from llama_index.core.base.embeddings.base import BaseEmbedding
from llama_index.core.vector_stores.types import MetadataFilters, VectorStoreQuery

from rag_relax_plugins.core.validation import NONFINITE_VECTOR, first_nonfinite_row
from rag_relax_plugins.index import MoLIndex
from rag_relax_plugins.index.filters import id_list
from rag_relax_plugins.llama_index._mol_filters import (
    NODE_FIELDS,
    compile_filters,
    doc_key,
    filter_keys,
    with_node_fields,
)
from rag_relax_plugins.llama_index._mol_inputs import index_struct_ids
from rag_relax_plugins.llama_index._mol_persist import Record

__all__ = ["query_embedding", "query_vector", "select", "subset"]


def query_embedding(query: VectorStoreQuery, embed_model: BaseEmbedding | None) -> list[float]:
    """The query's vector: ``query.query_embedding``, else ``query.query_str`` embedded by
    ``embed_model`` (checked non-empty)."""
    if query.query_embedding is not None:
        emb = query.query_embedding
    elif query.query_str is not None and embed_model is not None:
        emb = embed_model.get_query_embedding(query.query_str)
    else:
        raise ValueError("query.query_embedding is None: pass an embedding or set embed_model on the store")
    # a nested list was named by its outer length ("has 1 dimensions"), a str failed inside torch
    flat = "query.query_embedding must be a flat (1-D) vector of numbers"
    if isinstance(emb, (str, bytes)):
        raise ValueError(f"{flat}, got {type(emb).__name__}")
    try:
        shape = tuple(torch.as_tensor(emb, dtype=torch.float64).shape)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise ValueError(f"{flat} ({exc})") from exc
    if len(shape) != 1:
        raise ValueError(f"{flat}, got shape {shape}")
    if shape[0] == 0:
        raise ValueError("query.query_embedding must be a non-empty vector")
    return emb


def query_vector(emb: list[float], index: MoLIndex | None, has_nodes: bool) -> torch.Tensor:
    """``(1, D) x float32`` of the query embedding ``emb``, its width checked against the head's
    ``query_dim`` when there is something to search (an ``index``, and ``has_nodes``: the store
    holds nodes, read after the query was embedded)."""
    if index is not None and has_nodes and len(emb) != index.similarity.config.query_dim:
        raise ValueError(
            f"query.query_embedding has {len(emb)} dimensions but the similarity expects "
            f"query_dim={index.similarity.config.query_dim}"
        )
    vector = torch.tensor([list(emb)], dtype=torch.float32)
    if first_nonfinite_row(vector) is not None:  # named here: the index blamed "query_features"
        raise ValueError(f"query.query_embedding {NONFINITE_VECTOR}")
    return vector


def select(
    nodes: Mapping[str, Record],
    seen: set[str] | None,
    node_ids: list[str] | None,
    filters: MetadataFilters | None,
    doc_ids: list[str] | None,
) -> list[str] | None:
    """Query restriction: ids passing every given restriction, ``None`` when there is none.

    Empty ``node_ids`` / ``doc_ids`` mean no restriction (``VectorStoreIndex`` passes ``[]``),
    and so do the ``node_ids`` a ``VectorStoreIndex`` passes for a store that keeps text
    (:func:`~._mol_inputs.index_struct_ids`, which reads ``seen``, the ids ever added as
    ``ImageNode`` / ``IndexNode``): as a restriction they hid every text node.
    """
    if node_ids and index_struct_ids(node_ids, nodes, seen):
        node_ids = None
    if not node_ids and not doc_ids and filters is None:
        return None
    return subset(nodes, node_ids or None, filters, doc_ids or None)


def subset(
    nodes: Mapping[str, Record],
    node_ids: list[str] | None,
    filters: MetadataFilters | None,
    doc_ids: list[str] | None = None,
) -> list[str]:
    """Stored ids (keys of ``nodes``) in ``node_ids`` (all when ``None``) of ``doc_ids`` that pass ``filters``."""
    id_list("node_ids", node_ids)  # one string would be read one character at a time
    id_list("doc_ids", doc_ids)
    candidates = list(nodes) if node_ids is None else [i for i in dict.fromkeys(node_ids) if i in nodes]
    refs = None if doc_ids is None else set(doc_ids)
    node_fields = filters is not None and bool(filter_keys(filters) & NODE_FIELDS)
    test = None if filters is None else compile_filters(filters)  # read once, not per node

    def passes(rec: Record) -> bool:
        if test is None:
            return True
        return test(with_node_fields(rec[2], rec[0], rec[1]) if node_fields else rec[2])

    return [
        i for i in candidates
        if (refs is None or doc_key(nodes[i][1]) in refs) and passes(nodes[i])
    ]
