"""The interface every reranker implements, and the validation they share.

A reranker scores ``N`` candidate texts against one query and returns them best first. The
framework adapters (LangChain compressors, LlamaIndex postprocessors) only ever call
:meth:`BaseReranker.rerank` / :meth:`BaseReranker.score`, so any subclass plugs into both.
"""

from __future__ import annotations

import abc
import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from rag_relax_plugins.core.validation import check_unicode
from rag_relax_plugins.embedders._texts import check_texts

__all__ = [
    "ADAPTER_FIELDS",
    "OWN_VALUE_FIELDS",
    "BaseReranker",
    "RerankResult",
    "adapter_field",
    "check_candidates",
    "check_top_n",
    "check_unused_build_fields",
    "distinct_texts",
    "plain_int",
    "reranker_own_fields",
    "sigmoid_relevance",
]


@dataclass(frozen=True)
class RerankResult:
    """One reranked candidate.

    Attributes:
        index: position of the candidate in the input list.
        score: the raw reranker score (higher is better); its scale depends on the reranker.
    """

    index: int
    score: float


def plain_int(value: object) -> object:
    """``value`` as a Python ``int`` when it is a non-``bool`` integer of another type (a numpy
    one), else unchanged: for pydantic ``strict`` int fields, which refuse ``numpy.int64``."""
    if isinstance(value, numbers.Integral) and not isinstance(value, bool) and type(value) is not int:
        return int(value)
    return value


def check_top_n(top_n: object, *, allow_none: bool = True) -> int | None:
    """Validate ``top_n``: ``None`` (keep all, when allowed) or an int >= 1.

    Any ``numbers.Integral`` (``numpy.int64`` included) is returned as a Python ``int``.

    Raises:
        TypeError: not an integer (``bool`` is rejected).
        ValueError: ``top_n < 1``.
    """
    if top_n is None and allow_none:
        return None
    if isinstance(top_n, bool) or not isinstance(top_n, numbers.Integral):
        raise TypeError(f"top_n must be an int >= 1{' or None' if allow_none else ''}, got {top_n!r}")
    if top_n < 1:
        raise ValueError(f"top_n must be >= 1, got {top_n}")
    return int(top_n)


def check_candidates(query: object, documents: object) -> tuple[str, list[str]]:
    """Validate a query string and a sequence of candidate strings.

    An empty candidate list is allowed (rerankers return ``[]``); a non-string entry is not.

    Raises:
        TypeError: ``query`` not a ``str``, ``documents`` not a sequence, or an entry not a ``str``
            (the message gives its position and type).
        ValueError: the query or an entry holds a lone surrogate (not valid Unicode).
    """
    if not isinstance(query, str):
        raise TypeError(f"query must be a str, got {type(query).__name__}")
    check_unicode("query", query)
    return query, check_texts(documents, "documents")


ADAPTER_FIELDS = ("top_n", "batch_size", "device")
"""Fields the LangChain compressors and LlamaIndex postprocessors both take (``batch_size`` and
``device`` on some subclasses only), normalised by :func:`adapter_field` before validation."""


def adapter_field(name: str, value: object) -> object:
    """The before-validator of the adapters' shared field ``name``: ``top_n`` checked
    (:func:`check_top_n`), a numpy ``batch_size`` made an ``int`` (:func:`plain_int`), a
    ``torch.device`` named (:func:`device_name`)."""
    if name == "top_n":
        return check_top_n(value)
    if name == "batch_size":
        return plain_int(value)
    return device_name(value)


def device_name(value: object) -> object:
    """An adapter's ``device`` field as a string: a ``torch.device`` becomes its name
    (``torch.device("cuda", 1)`` -> ``"cuda:1"``); anything else is left to the field's own
    validation (``str`` or ``None``)."""
    return str(value) if isinstance(value, torch.device) else value


OWN_VALUE_FIELDS = ("batch_size",)  # build fields a reranker instance holds a value of its own for


def reranker_own_fields(reranker: object, names: Sequence[str]) -> dict[str, Any]:
    """The values ``reranker`` holds of its own for the adapter build fields ``names`` (its
    ``batch_size``): an adapter given ``reranker=`` takes them for those fields, so the field (and
    ``to_dict()``) reports the value the reranker uses, not the field's default."""
    own = {name: getattr(reranker, name, None) for name in names if name in OWN_VALUE_FIELDS}
    return {name: value for name, value in own.items()
            if isinstance(value, int) and not isinstance(value, bool) and value >= 1}  # else not a batch size


def check_unused_build_fields(adapter: Any, names: Sequence[str], own: dict[str, Any] | None = None) -> None:
    """Refuse, in an adapter given ``reranker=``, the pydantic fields ``names`` that only build a
    reranker (``model_path``, ``device`` ...) when set to anything but their defaults, or, for
    those in ``own`` (:func:`reranker_own_fields`), to anything but the reranker's own value: they
    would be silently unused.

    Raises:
        ValueError: naming the fields and their values.
    """
    own = own or {}
    fields = type(adapter).model_fields
    given = [
        f"{name}={getattr(adapter, name)!r}" + (f" (the reranker's own is {own[name]!r})" if name in own else "")
        for name in names
        if getattr(adapter, name) != own.get(name, fields[name].default)
    ]
    if given:
        raise ValueError(f"{', '.join(given)} only build a reranker; with reranker= they would be ignored: "
                         "pass one or the other")


def distinct_texts(documents: Sequence[str]) -> tuple[list[str], list[int]]:
    """The distinct texts of ``documents`` (first occurrences, in order) and each document's row
    among them: a reranker scores each distinct text once, so exact duplicates get one score and
    keep their input order (scored apart, padding in different batches could split them by an ulp).
    """
    where: dict[str, int] = {}
    rows = [where.setdefault(d, len(where)) for d in documents]
    return list(where), rows


def sigmoid_relevance(score: float) -> float:
    """Map a raw logit to a relevance in ``[0, 1]``: ``sigmoid(score)``, without overflow."""
    if score >= 0:
        return 1.0 / (1.0 + math.exp(-score))
    e = math.exp(score)
    return e / (1.0 + e)


class BaseReranker(abc.ABC):
    """Scores candidates for a query; subclasses implement :meth:`score`.

    Subclasses must be deterministic at inference (same inputs, same scores) and run scoring under
    ``torch.inference_mode()``.
    """

    @abc.abstractmethod
    def score(self, query: str, documents: Sequence[str]) -> torch.Tensor:
        """Score every candidate.

        Args:
            query: the query text.
            documents: ``N >= 1`` candidate texts.

        Returns:
            ``(N,) x float32`` on the CPU, higher is better, finite.
        """

    def relevance_of(self, score: float) -> float:
        """Relevance in ``[0, 1]`` of one raw score: :func:`sigmoid_relevance` unless a subclass
        knows its score's range (the framework adapters report this as ``relevance_score``)."""
        return sigmoid_relevance(score)

    def rerank(self, query: str, documents: Sequence[str], top_n: int | None = None) -> list[RerankResult]:
        """Candidates best first (ties keep input order), cut to ``top_n`` when given.

        Args:
            query: the query text.
            documents: candidate texts; ``[]`` gives ``[]``.
            top_n: how many to keep (``None``: all). Larger than ``N`` keeps all ``N``.

        Raises:
            TypeError, ValueError: bad query, documents or ``top_n``.
        """
        query, docs = check_candidates(query, documents)
        n = check_top_n(top_n)
        if not docs:
            return []
        scores = self.score(query, docs).detach().to("cpu", torch.float32)
        if scores.shape != (len(docs),):
            raise RuntimeError(f"{type(self).__name__}.score returned shape {tuple(scores.shape)}, expected ({len(docs)},)")
        if not bool(torch.isfinite(scores).all()):  # a NaN would sort first and reach the metadata
            bad = int((~torch.isfinite(scores)).nonzero()[0])
            raise RuntimeError(f"{type(self).__name__}.score returned a non-finite score ({float(scores[bad])}) "
                               f"for documents[{bad}]")
        order = torch.sort(scores, descending=True, stable=True).indices.tolist()
        keep = order if n is None else order[:n]
        return [RerankResult(index=i, score=float(scores[i])) for i in keep]
