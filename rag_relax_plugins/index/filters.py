"""Filters and input checks for :class:`~rag_relax_plugins.index.MoLIndex`.

A filter restricts the searchable ids *before* scoring (pre-filtering), never by post-filtering
a fixed fetch. A filter is one of:

- ``None``: the whole index;
- a sequence of ids (shared by all queries);
- a sequence of ``B`` sequences of ids (one subset per query);
- a ``dict``: items whose metadata has every ``key == value`` (JSON equality, see
  :func:`metadata_matches`: booleans match only booleans, so ``{"flag": True}`` does not match
  ``1`` or ``1.0``; ``1`` does match ``1.0``);
- a callable ``predicate(metadata: Mapping) -> bool`` (a read-only view of the stored dict).

Ids inside a filter must be strings (``TypeError`` otherwise, naming the offending element) and
must exist (``ValueError`` otherwise). When fewer than ``k`` items pass the
filter, search returns the ones that exist: the score tensor is ``(B, K)`` with
``K = min(k, max allowed)``; a query with fewer hits has ``-inf`` scores in its trailing
columns and a shorter id list. Subsets of at most ``exact_filter_threshold`` items are always
scored exactly (brute force over the subset); larger ones go through the chosen strategy with the
subset as a mask in the first stage. :func:`group_filter` turns a filter into groups of queries
that share a row subset.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType
from typing import Any

import torch

from rag_relax_plugins.core.validation import check_unicode

__all__ = [
    "Filter",
    "check_dict_filter",
    "check_ids",
    "check_metadata",
    "group_filter",
    "ids_matching",
    "metadata_matches",
    "positions_matching",
]

Filter = (
    Sequence[str]
    | Sequence[Sequence[str]]
    | Mapping[str, Any]
    | Callable[[dict[str, Any]], bool]
    | None
)


def group_filter(
    filter: Filter,
    b: int,
    rows_of: Callable[[str, Sequence[str]], torch.Tensor],
    rows_where: Callable[[Any], torch.Tensor],
    device: torch.device,
) -> list[tuple[torch.Tensor, torch.Tensor | None]]:
    """Resolve ``filter`` into groups of query indices sharing one row subset.

    Args:
        filter: see :data:`Filter`.
        b: number of queries ``B``.
        rows_of: maps ``(argument name, ids)`` to ``(m,) x long`` rows, raising on unknown ids.
        rows_where: maps a dict or predicate to the ``(m,) x long`` matching rows, ascending.
        device: device of the returned tensors.

    Returns:
        ``[(query indices (B',) x long, rows (m,) x long or None for no restriction), ...]``.
    """
    everyone = torch.arange(b, device=device)
    if filter is None:
        return [(everyone, None)]
    if isinstance(filter, Mapping) or callable(filter):
        return [(everyone, rows_where(filter))]
    if isinstance(filter, str) or not isinstance(filter, Sequence):
        raise TypeError(
            f"filter must be None, a sequence of ids, a list of per-query id lists, a dict or a callable, got {type(filter).__name__}"
        )
    if any(isinstance(f, str) for f in filter) or not any(_is_id_list(f) for f in filter):
        # a shared id list (possibly empty); check_ids names a non-str element
        return [(everyone, rows_of("filter", check_ids("filter", filter, unique=False)).unique())]
    if len(filter) != b:
        raise ValueError(
            f"a per-query filter must have one id list per query ({b}), got {len(filter)}"
        )
    groups: dict[tuple[str, ...], list[int]] = {}
    for q, subset in enumerate(filter):
        if not _is_id_list(subset):
            raise TypeError(
                f"filter[{q}] must be a sequence of ids (a per-query filter holds one id list "
                f"per query), got {type(subset).__name__}"
            )
        key = tuple(sorted(set(check_ids(f"filter[{q}]", subset, unique=False))))
        groups.setdefault(key, []).append(q)
    return [
        (torch.tensor(qs, device=device), rows_of(f"filter[{qs[0]}]", list(key)).unique())
        for key, qs in groups.items()
    ]


def _is_id_list(x: object) -> bool:
    return isinstance(x, Sequence) and not isinstance(x, str)


_UTF8_FILES = "the saved files are UTF-8"  # why the index refuses such text
_SCALARS = frozenset({str, int, float, type(None)})  # exact types: bool is not among them


def _json_equal(a: object, b: object) -> bool:
    if type(a) in _SCALARS and type(b) in _SCALARS:  # the usual case, first: a filter scans every item
        return a == b
    if type(a).__module__ == "numpy" or type(b).__module__ == "numpy":  # a stored numpy scalar (the
        return _json_equal(_plain(a), _plain(b))  # LangChain store keeps them): np.int64(1) == [1, 2] is an array
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return a.keys() == b.keys() and all(_json_equal(a[k], b[k]) for k in a)
    if _is_id_list(a) and _is_id_list(b):
        la, lb = list(a), list(b)  # type: ignore[call-overload]
        return len(la) == len(lb) and all(_json_equal(x, y) for x, y in zip(la, lb, strict=True))
    equal = a == b  # a stored value that is not JSON (a tensor, an object) may not compare to a bool
    return equal if type(equal) is bool else False


def _plain(value: object) -> object:
    """A filter value as the JSON value it stands for: numpy scalars and arrays (a value read from a
    DataFrame) become Python ones, inside lists and dicts too. ``np.bool_(True)`` never matched a
    stored ``True``, and a numpy scalar compared with a stored list raised numpy's "truth value
    of an array is ambiguous"."""
    if type(value).__module__ == "numpy" and hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def metadata_matches(metadata: Mapping[str, Any], want: Mapping[str, Any]) -> bool:
    """Whether ``metadata`` has every ``key: value`` of ``want`` (JSON equality).

    Values compare as JSON values, recursively: booleans equal only booleans (Python's
    ``True == 1`` is not a match), numbers compare numerically (``1`` matches ``1.0``), lists
    and dicts element by element.
    """
    return all(k in metadata and _json_equal(metadata[k], v) for k, v in want.items())


def id_list(name: str, ids: Any) -> Any:
    """``ids`` itself, unless it is one string (the adapters' ``delete("abc")`` would otherwise
    take ``a``, ``b``, ``c``); the items are left to the caller (numpy arrays pass).

    Raises:
        TypeError: ``ids`` is a ``str`` or ``bytes``.
    """
    if isinstance(ids, (str, bytes)):
        raise TypeError(f"{name} must be a list of ids, got a {type(ids).__name__}: pass [{ids!r}] for one id")
    return ids


def check_ids(name: str, ids: object, *, unique: bool) -> list[str]:
    """Require a sequence of ``str`` ids, UTF-8 encodable (unique when ``unique``); returns it as a list."""
    if isinstance(ids, str) or not isinstance(ids, Sequence):
        raise TypeError(f"{name} must be a sequence of str, got {type(ids).__name__}")
    out = list(ids)
    bad = [i for i in out if not isinstance(i, str)]
    if bad:
        raise TypeError(
            f"{name} must contain only str ids, got {type(bad[0]).__name__} ({bad[0]!r})"
        )
    try:
        "".join(out).encode("utf-8")  # one pass over all the ids; the loop below names the bad one
    except UnicodeEncodeError:
        for i in out:
            check_unicode(f"{name} entry {i!r}", i, why=_UTF8_FILES)
    if unique and len(set(out)) != len(out):
        dups = sorted(i for i, c in Counter(out).items() if c > 1)[:5]  # linear: list.count was quadratic
        raise ValueError(f"{name} must be unique, got duplicates {dups!r}")
    return out


def check_metadata(metadata: Sequence[dict[str, Any]] | None, n: int) -> list[dict[str, Any]]:
    """Require ``n`` JSON-serialisable dicts (``None`` -> empty dicts); returns JSON copies.

    Strict JSON: keys must be strings at every depth (``json.dumps`` would turn ``{1: "a"}``
    into ``{"1": "a"}`` and let it overwrite a ``"1"`` key), numbers finite (``NaN`` is not
    JSON and equals nothing, so a filter on it could never match) and text encodable as UTF-8 (no
    lone surrogate: a save could never write it).
    """
    if metadata is None:
        return [{} for _ in range(n)]
    if isinstance(metadata, (str, Mapping)) or not isinstance(metadata, Sequence):
        raise TypeError(f"metadata must be a list of dicts or None, got {type(metadata).__name__}")
    if len(metadata) != n:
        raise ValueError(f"metadata must have one dict per id ({n}), got {len(metadata)}")
    out = []
    for i, m in enumerate(metadata):
        if not isinstance(m, Mapping):
            raise TypeError(f"metadata[{i}] must be a dict, got {type(m).__name__}")
        bad_key = _non_string_keys(m)
        if bad_key:
            raise ValueError(
                f"metadata[{i}] must have string keys at every depth, got {type(bad_key[0]).__name__} "
                f"key {bad_key[0]!r}"
            )
        try:
            encoded = json.dumps(dict(m), allow_nan=False, ensure_ascii=False)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"metadata[{i}] must be JSON-serialisable (finite numbers): {exc}") from exc
        check_unicode(f"metadata[{i}]", encoded, why=_UTF8_FILES)
        out.append(json.loads(encoded))
    return out


def _non_string_keys(value: object) -> list[object]:
    """``[key]``: the first non-``str`` dict key inside ``value`` (nested dicts and lists); ``[]`` if none."""
    if isinstance(value, Mapping):
        for key, inner in value.items():
            found = [key] if not isinstance(key, str) else _non_string_keys(inner)
            if found:
                return found
    elif isinstance(value, (list, tuple)):
        for inner in value:
            found = _non_string_keys(inner)
            if found:
                return found
    return []


def check_dict_filter(filter: Mapping[str, Any]) -> None:
    """Refuse query-language filters (``{"k": {"$in": [...]}}``, ``{"$and": ...}``) clearly.

    A dict filter is plain metadata equality (:func:`metadata_matches`); an operator dict would
    otherwise silently match nothing (no stored value equals ``{"$in": ...}``).
    """
    for key, value in filter.items():
        operators = [k for k in value if isinstance(k, str) and k.startswith("$")] if isinstance(value, Mapping) else []
        if (isinstance(key, str) and key.startswith("$")) or operators:
            raise TypeError(
                f"filter {key!r}: operator filters ({(operators or [key])[0]!r}) are not supported; "
                "a dict filter matches metadata values by equality, for anything else pass a "
                "callable predicate"
            )


def ids_matching(
    ids: Sequence[str],
    metadata: Sequence[dict[str, Any]],
    predicate: Callable[[Mapping[str, Any]], bool] | Mapping[str, Any],
) -> list[str]:
    """The ``ids`` whose ``metadata`` (aligned with them) passes a dict or a predicate
    (:func:`positions_matching`), in order."""
    return [ids[p] for p in positions_matching(metadata, predicate)]


_MISSING = object()
_FAST_TYPES = frozenset({str, int, float, bool, type(None)})


def _positions_where(metadata: Sequence[Mapping[str, Any]], positions: Sequence[int], key: str, value: object) -> list[int]:
    """The ``positions`` whose metadata has ``key`` equal to the (plain) filter ``value``, in
    order, by :func:`_json_equal`. For a string, number, boolean or ``None`` the usual case is
    decided inline (a stored value of the same type that ``==`` the value: no call per item, a
    filter scans every item); only a value that ``==`` it with another type (``True == 1``,
    ``1.0 == 1``, a numpy scalar, a one-element array) goes through :func:`_json_equal`. A stored
    value whose ``==`` gives an array whose truth value raises (a numpy array or torch tensor,
    which the LangChain store keeps as given) sends the whole scan the general way."""
    t = type(value)
    if t in _FAST_TYPES:
        try:
            return [p for p in positions
                    if (v := metadata[p].get(key, _MISSING)) == value and (type(v) is t or _json_equal(v, value))]
        except (ValueError, RuntimeError):  # "the truth value of an array ... is ambiguous"
            pass
    return [p for p in positions if key in metadata[p] and _json_equal(metadata[p][key], value)]


def positions_matching(
    metadata: Sequence[dict[str, Any]],
    predicate: Callable[[Mapping[str, Any]], bool] | Mapping[str, Any],
) -> list[int]:
    """The ascending positions of the ``metadata`` dicts that pass a dict or a predicate.

    A dict matches by :func:`metadata_matches` (operator dicts refused: :func:`check_dict_filter`),
    one key at a time: the first key scans every item, each further key only the items left (a
    two-key filter cost 2.2x a one-key one when every item was checked against both keys). A
    predicate gets a read-only view of each stored dict (no copy: a filter is O(N) per query
    and must stay cheap; nested values are the stored ones, and a predicate must not modify them).
    """
    if isinstance(predicate, Mapping):
        check_dict_filter(predicate)
        kept: Sequence[int] = range(len(metadata))
        for key, value in predicate.items():
            kept = _positions_where(metadata, kept, key, _plain(value))
        return list(kept)
    if not callable(predicate):
        raise TypeError(f"predicate must be a callable or a dict, got {type(predicate).__name__}")
    return [p for p, m in enumerate(metadata) if predicate(MappingProxyType(m))]
