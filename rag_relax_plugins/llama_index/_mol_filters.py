"""LlamaIndex ``MetadataFilters`` evaluated on a node's metadata dict (for pre-filtering).

Semantics follow llama-index-core's ``build_metadata_filter_fn`` (``SimpleVectorStore``), plus
nested ``MetadataFilters`` and the ``NOT`` condition:

- a missing key (or a ``None`` value) matches only ``NE`` and ``NIN`` (and ``IS_EMPTY``);
- ``EQ NE GT GTE LT LTE`` compare the value; ``IN NIN`` test membership of the value in the
  filter's list; ``CONTAINS`` tests the filter value in a list-valued field, or as a substring
  of a string field (``SimpleVectorStore`` evaluates ``value in field`` for both); ``ANY ALL``
  test each of a list of filter values the same way (member of a list-valued field, substring of
  a string field) and need one of them / all of them; ``TEXT_MATCH`` is a substring test
  (``TEXT_MATCH_INSENSITIVE`` case-insensitive); ``IS_EMPTY`` matches missing, ``""`` or ``[]``;
- an ordering between incomparable types (``"a" > 1``) is a non-match, not an error;
- unlike upstream, a single string given to ``IN NIN ANY ALL`` is one value (upstream iterates
  its characters: ``IN "en"`` matched ``"e"`` and ``"n"``), and ``CONTAINS ANY ALL`` on a
  dict-valued field never match (upstream tests the dict's keys);
- ``AND`` needs every filter, ``OR`` any, ``NOT`` none of them; an empty filter list matches all;
- the keys llama-index-core adds to every stored node's metadata (``node_to_metadata_dict``) can
  be filtered on as in ``SimpleVectorStore``: ``doc_id``, ``ref_doc_id`` and ``document_id``
  (the node's ``ref_doc_id``, or ``"None"``) and ``_node_type`` (its class name); they take
  precedence over node metadata of the same name, as upstream (:data:`NODE_FIELDS`,
  :func:`filter_keys`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from llama_index.core.vector_stores.types import (
    FilterCondition,
    FilterOperator,
    MetadataFilter,
    MetadataFilters,
)

__all__ = ["NODE_FIELDS", "check_filters", "compile_filters", "doc_key", "filter_keys", "matches", "with_node_fields"]

NODE_FIELDS = frozenset({"doc_id", "ref_doc_id", "document_id", "_node_type"})

_ORDER: dict[FilterOperator, Callable[[Any, Any], bool]] = {
    FilterOperator.GT: lambda a, b: a > b,
    FilterOperator.GTE: lambda a, b: a >= b,
    FilterOperator.LT: lambda a, b: a < b,
    FilterOperator.LTE: lambda a, b: a <= b,
}


def _as_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, (list, tuple, set)) else [value]


def _contains(actual: Any, value: Any) -> bool:
    """``value in actual`` as ``SimpleVectorStore`` evaluates it, without its ``TypeError``s.

    A string field is searched for ``value`` as a substring (``value`` must be a string too); a
    list-valued field for ``value`` as a member; any other field contains nothing.
    """
    if isinstance(actual, str):
        return isinstance(value, str) and value in actual
    return isinstance(actual, (list, tuple, set)) and value in actual


def _one(flt: MetadataFilter, metadata: Mapping[str, Any]) -> bool:
    op = flt.operator
    value = flt.value
    actual = metadata.get(flt.key)
    if op == FilterOperator.IS_EMPTY:
        return actual is None or actual in ("", [])
    if actual is None:
        return op in (FilterOperator.NE, FilterOperator.NIN)
    if op == FilterOperator.EQ:
        return bool(actual == value)
    if op == FilterOperator.NE:
        return bool(actual != value)
    if op in _ORDER:
        try:
            return bool(_ORDER[op](actual, value))
        except TypeError:
            return False
    if op == FilterOperator.IN:
        return actual in _as_list(value)
    if op == FilterOperator.NIN:
        return actual not in _as_list(value)
    if op == FilterOperator.CONTAINS:
        return _contains(actual, value)
    if op == FilterOperator.ANY:
        return any(_contains(actual, v) for v in _as_list(value))
    if op == FilterOperator.ALL:
        return all(_contains(actual, v) for v in _as_list(value))
    if op in (FilterOperator.TEXT_MATCH, FilterOperator.TEXT_MATCH_INSENSITIVE):
        if not isinstance(actual, str) or not isinstance(value, str):
            return False
        if op == FilterOperator.TEXT_MATCH_INSENSITIVE:
            return value.lower() in actual.lower()
        return value in actual
    raise ValueError(f"filters: unsupported operator {op!r}")


def matches(filters: MetadataFilters, metadata: Mapping[str, Any]) -> bool:
    """Whether ``metadata`` passes ``filters`` (see the module docstring); to test many records,
    compile the filters once with :func:`compile_filters`."""
    return compile_filters(filters)(metadata)


_PLAIN = frozenset({str, int, float})  # exact types: an EQ on them is ``==`` (bool left to _one)


def compile_filters(filters: MetadataFilters) -> Callable[[Mapping[str, Any]], bool]:
    """``metadata -> matches(filters, metadata)``, with the filters read once: a query tests every
    stored node, and :func:`matches` re-read the condition, built a generator and walked the
    operator chain per node, most of a filtered query's time.
    An ``EQ`` on a string or number is ``metadata.get(key) == value`` (a missing key or ``None``
    never equals it, as in :func:`_one`); every other filter is :func:`_one` itself."""
    parts = [compile_filters(f) if isinstance(f, MetadataFilters) else _compile_one(f) for f in filters.filters]
    condition = filters.condition or FilterCondition.AND
    if condition == FilterCondition.AND:
        if len(parts) == 1:
            return parts[0]

        def every(md: Mapping[str, Any]) -> bool:
            for p in parts:  # noqa: SIM110 - a loop, not all(generator): a query calls this per node
                if not p(md):
                    return False
            return True

        return every
    if condition == FilterCondition.OR:

        def some(md: Mapping[str, Any]) -> bool:
            for p in parts:
                if p(md):
                    return True
            return not parts  # an empty OR matches all, as matches()

        return some
    if condition == FilterCondition.NOT:

        def none(md: Mapping[str, Any]) -> bool:
            for p in parts:  # noqa: SIM110
                if p(md):
                    return False
            return True

        return none
    raise ValueError(f"filters: unsupported condition {condition!r}")


def _compile_one(flt: MetadataFilter) -> Callable[[Mapping[str, Any]], bool]:
    key, value = flt.key, flt.value
    if flt.operator == FilterOperator.EQ and type(value) in _PLAIN:
        return lambda md: bool(md.get(key) == value)
    return lambda md: _one(flt, md)


def check_filters(filters: object) -> MetadataFilters | None:
    """``None`` or a ``MetadataFilters``; anything else is a ``TypeError`` naming ``filters``."""
    if filters is None or isinstance(filters, MetadataFilters):
        return filters
    raise TypeError(f"filters must be a MetadataFilters or None, got {type(filters).__name__}")


def filter_keys(filters: MetadataFilters) -> set[str]:
    """Every metadata key ``filters`` reads, nested filters included."""
    keys: set[str] = set()
    for f in filters.filters:
        keys |= filter_keys(f) if isinstance(f, MetadataFilters) else {f.key}
    return keys


def doc_key(ref_doc_id: str | None) -> str:
    """A node's source document as core stores it (``"None"`` for a node without one): what the
    ``doc_id`` filter keys, ``delete(ref_doc_id)`` and ``doc_ids`` compare with."""
    return ref_doc_id or "None"


def with_node_fields(metadata: Mapping[str, Any], node_type: str, ref_doc_id: str | None) -> dict[str, Any]:
    """``metadata`` plus the :data:`NODE_FIELDS` core's ``node_to_metadata_dict`` stores (a new dict)."""
    ref = doc_key(ref_doc_id)
    return {**metadata, "_node_type": node_type, "document_id": ref, "doc_id": ref, "ref_doc_id": ref}
