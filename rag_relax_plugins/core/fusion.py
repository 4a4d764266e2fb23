"""Rank fusion: combine several rankings or score lists into one.

- Reciprocal rank fusion (Cormack, Clarke & Buettcher, SIGIR 2009): ``sum_r w_r / (k + rank_r(d))``
  with 1-indexed ranks and ``k = 60`` by default.
- CombSUM and CombMNZ (Fox & Shaw, TREC-2 1994) over normalised scores.
- Distribution-based score fusion (DBSF, as in Qdrant's ``score_fusion.rs``): each list is
  normalised with ``(s - (mu - 3 sigma)) / (6 sigma)`` using the sample standard deviation
  (``n - 1``, Welford in Qdrant), then summed. Departures: scores are clipped to [0, 1] (Qdrant
  does not clip) and weights are accepted.

A ranking may be a 1-D integer ``torch.Tensor``, read as its list of ids (as in
:mod:`.metrics`). Scores may be any finite real numbers (``numbers.Real``: ``int``, ``float``,
numpy scalars), taken as Python floats; the options ``k`` and ``top_n`` take numpy integers too
(``bool`` is refused).

Every function returns ``[(doc_id, fused_score), ...]`` best first. Ties keep the order in which
documents first appear: list by list in the order given, and within a list by rank (for score
lists: by descending raw score, equal raw scores in the mapping's iteration order). Results are
therefore deterministic.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Mapping, Sequence

from rag_relax_plugins.core.metrics import DocId, Ranking, _tensor_ranking
from rag_relax_plugins.core.scalars import check_count, check_optional_count

__all__ = [
    "comb_mnz",
    "comb_sum",
    "distribution_based_fusion",
    "reciprocal_rank_fusion",
    "weighted_rrf",
]

Fused = list[tuple[DocId, float]]


def _check_weights(weights: Sequence[float] | None, n: int) -> list[float]:
    if weights is None:
        return [1.0] * n
    if len(weights) != n:
        raise ValueError(f"weights must have one entry per list ({n}), got {len(weights)}")
    for w in weights:
        if isinstance(w, bool) or not isinstance(w, numbers.Real):  # numpy scalars too, as scores
            raise TypeError(f"weights must hold real numbers, got {type(w).__name__}")
        if not math.isfinite(w) or w < 0:
            raise ValueError(f"weights must be finite and >= 0, got {w}")
    return [float(w) for w in weights]


def _check_top_n(top_n: object) -> int | None:
    """``top_n`` as an ``int >= 1`` (numpy integers included, ``bool`` refused) or ``None``."""
    return check_optional_count("top_n", top_n, 1)


def _exact_sum(terms: list[float]) -> float:
    """The sum of ``terms`` correctly rounded (``math.fsum``): the same terms give the same sum in
    any order, so an exact tie stays a tie and first appearance decides it (a running ``+`` gave
    two documents with the same terms sums one ulp apart). Overflow falls back to the plain sum."""
    try:
        return math.fsum(terms)
    except (OverflowError, ValueError):  # a partial sum past the float range, or inf - inf
        return sum(terms)


def _finish(scores: dict[DocId, float], first_seen: dict[DocId, int], top_n: int | None) -> Fused:
    items = sorted(scores.items(), key=lambda kv: (-kv[1], first_seen[kv[0]]))
    return items if top_n is None else items[:top_n]


def reciprocal_rank_fusion(
    rankings: Sequence[Ranking],
    k: int = 60,
    weights: Sequence[float] | None = None,
    top_n: int | None = None,
) -> Fused:
    """Weighted reciprocal rank fusion.

    Args:
        rankings: lists of document ids, each best first.
        k: the RRF constant (>= 0); larger values flatten the contribution of top ranks.
        weights: one weight per ranking (default all 1: plain RRF).
        top_n: keep only the best ``top_n`` documents.

    Returns:
        ``[(doc_id, score)]`` sorted by fused score.
    """
    if isinstance(rankings, (str, bytes)):
        raise TypeError("rankings must be a sequence of rankings, not a string")
    if len(rankings) == 0:  # not `not rankings`: a 2-D tensor or array of rankings has no truth value
        raise ValueError("rankings must hold at least one ranking")
    k = check_count("k", k, 0)
    ws = _check_weights(weights, len(rankings))
    top_n = _check_top_n(top_n)
    terms: dict[DocId, list[float]] = {}
    first: dict[DocId, int] = {}
    for i, (w, ranking) in enumerate(zip(ws, rankings, strict=True)):
        if isinstance(ranking, (str, bytes)):
            raise TypeError(f"rankings[{i}] must be a sequence of document ids, not a string")
        ranking = _tensor_ranking(ranking, f"rankings[{i}]")  # type: ignore[assignment]
        if len(set(ranking)) != len(ranking):
            raise ValueError(f"rankings[{i}] must list each document id at most once")
        for rank, doc in enumerate(ranking, start=1):
            first.setdefault(doc, len(first))
            terms.setdefault(doc, []).append(w / (k + rank))
    return _finish({d: _exact_sum(t) for d, t in terms.items()}, first, top_n)


def _check_score_lists(score_lists: Sequence[Mapping[DocId, float]]) -> list[Mapping[DocId, float]]:
    """Validate the score lists; return them with numpy (any non-builtin real) scores as floats."""
    if not score_lists:
        raise ValueError("score_lists must hold at least one list")
    out: list[Mapping[DocId, float]] = []
    for i, sl in enumerate(score_lists):
        if not isinstance(sl, Mapping):
            raise TypeError(f"score_lists[{i}] must be a mapping {{doc_id: score}}, got {type(sl).__name__}")
        plain = all(type(s) is float or type(s) is int for s in sl.values())  # the usual case: no ABC check per score
        for doc, s in sl.items():
            if (not plain and (isinstance(s, bool) or not isinstance(s, numbers.Real))) or not math.isfinite(s):
                raise ValueError(f"score_lists[{i}][{doc!r}] must be a finite number, got {s!r}")
        exotic = not plain and any(not isinstance(s, (int, float)) for s in sl.values())
        out.append({d: float(s) for d, s in sl.items()} if exotic else sl)
    return out


def _normalise(sl: Mapping[DocId, float], how: str) -> dict[DocId, float]:
    if not sl:
        return {}
    if how == "none":
        return dict(sl)
    if how not in ("minmax", "zscore", "dbsf"):
        raise ValueError(f"normalization must be 'minmax', 'zscore', 'dbsf' or 'none', got {how!r}")
    lo, hi = min(sl.values()), max(sl.values())
    if lo == hi or (how == "dbsf" and len(sl) < 2):  # equal scores: their rounded mean gave a spread
        return dict.fromkeys(sl, {"minmax": 1.0, "zscore": 0.0, "dbsf": 0.5}[how])  # of 1e-17, zscore -1
    # every normalisation is unchanged by a positive scale: where a span, a sum or a square leaves
    # the float range (scores near 1e308, or spreads below about 1e-154), the scores are divided by
    # their largest magnitude and the figures computed again; ordinary lists are computed as they
    # always were, bit for bit
    if how == "minmax":
        span = hi - lo  # exact for integers (timestamps past 2**53 included; int / int divides exactly)
        if not isinstance(span, int) and not math.isfinite(span):
            scale = max(abs(lo), abs(hi))
            lo, span = lo / scale, hi / scale - lo / scale
            return {d: (s / scale - lo) / span for d, s in sl.items()}
        return {d: (s - lo) / span for d, s in sl.items()}
    ddof = 0 if how == "zscore" else 1  # dbsf: the sample std, as Qdrant
    vals = dict(sl)
    mu, sd = _mean_sd(vals.values(), ddof)
    if not (math.isfinite(sd) and sd > 1e-150):  # overflowed, or squares near or below the subnormals
        scale = max(abs(lo), abs(hi))
        vals = {d: s / scale for d, s in sl.items()}
        mu, sd = _mean_sd(vals.values(), ddof)
        if not (math.isfinite(sd) and sd > 0):  # scores a few ulps apart
            return dict.fromkeys(sl, 0.0 if how == "zscore" else 0.5)
    if how == "zscore":
        return {d: (s - mu) / sd for d, s in vals.items()}
    lo = mu - 3 * sd
    return {d: min(1.0, max(0.0, (s - lo) / (6 * sd))) for d, s in vals.items()}


def _mean_sd(values: Iterable[float], ddof: int) -> tuple[float, float]:
    """Mean and standard deviation (``ddof`` 0: population, 1: sample); ``nan`` for the deviation
    when a sum or a square overflows (the caller scales and computes again)."""
    vals = list(values)
    try:
        mu = sum(vals) / len(vals)
        return mu, math.sqrt(sum((v - mu) ** 2 for v in vals) / (len(vals) - ddof))
    except OverflowError:
        return math.nan, math.nan


def _combine(
    score_lists: Sequence[Mapping[DocId, float]],
    normalization: str,
    weights: Sequence[float] | None,
    top_n: int | None,
    mnz: bool,
) -> Fused:
    score_lists = _check_score_lists(score_lists)
    if normalization not in ("minmax", "zscore", "none", "dbsf"):
        raise ValueError(f"normalization must be 'minmax', 'zscore', 'dbsf' or 'none', got {normalization!r}")
    ws = _check_weights(weights, len(score_lists))
    top_n = _check_top_n(top_n)
    terms: dict[DocId, list[float]] = {}
    hits: dict[DocId, int] = {}
    first: dict[DocId, int] = {}
    for w, sl in zip(ws, score_lists, strict=True):
        # keep each list's own best-first order for first appearance
        for doc, s in sorted(_normalise(sl, normalization).items(), key=lambda kv: -sl[kv[0]]):
            first.setdefault(doc, len(first))
            terms.setdefault(doc, []).append(w * s)
            if w > 0:  # a weight-0 list is left out of the MNZ count, as if it were not given
                hits[doc] = hits.get(doc, 0) + 1
    scores = {d: _exact_sum(t) for d, t in terms.items()}
    if mnz:
        scores = {d: s * hits.get(d, 0) for d, s in scores.items()}
    return _finish(scores, first, top_n)


def comb_sum(
    score_lists: Sequence[Mapping[DocId, float]],
    normalization: str = "minmax",
    weights: Sequence[float] | None = None,
    top_n: int | None = None,
) -> Fused:
    """CombSUM: the (weighted) sum of each document's normalised scores.

    Args:
        score_lists: one ``{doc_id: score}`` mapping per retriever (higher is better).
        normalization: ``"minmax"`` (to [0, 1]; a list of equal scores maps to 1), ``"zscore"``
            (population standard deviation; a list of equal scores maps to 0) or ``"none"``.
        weights: one finite weight >= 0 per list (default all 1).
        top_n: keep only the best ``top_n`` documents.

    Returns:
        ``[(doc_id, score)]`` best first; a document absent from a list contributes 0 there.
    """
    return _combine(score_lists, normalization, weights, top_n, mnz=False)


def comb_mnz(
    score_lists: Sequence[Mapping[DocId, float]],
    normalization: str = "minmax",
    weights: Sequence[float] | None = None,
    top_n: int | None = None,
) -> Fused:
    """CombMNZ: CombSUM times the number of lists that contain the document.

    Only lists with a weight > 0 count towards that number, so a weight of 0 is the same as
    leaving the list out, except that documents found only in that list are still returned, with
    score 0. Arguments and return value as :func:`comb_sum`.
    """
    return _combine(score_lists, normalization, weights, top_n, mnz=True)


def distribution_based_fusion(
    score_lists: Sequence[Mapping[DocId, float]],
    weights: Sequence[float] | None = None,
    top_n: int | None = None,
) -> Fused:
    """Distribution-based score fusion: normalise each list by ``mu +- 3 sigma``, clip, sum.

    Args:
        score_lists: one ``{doc_id: score}`` mapping per retriever (higher is better).
        weights: one finite weight >= 0 per list (default all 1, as Qdrant).
        top_n: keep only the best ``top_n`` documents.

    Returns:
        ``[(doc_id, score)]`` best first. A list with one document, or whose scores are all
        equal, maps every document to 0.5 (as Qdrant).
    """
    return _combine(score_lists, "dbsf", weights, top_n, mnz=False)


def weighted_rrf(
    rankings: Sequence[Ranking],
    weights: Sequence[float],
    k: int = 60,
    top_n: int | None = None,
) -> Fused:
    """Weighted RRF, ``sum_r w_r / (k + rank_r(d))``: :func:`reciprocal_rank_fusion` with weights required."""
    if weights is None:
        raise ValueError("weights must be given for weighted_rrf (use reciprocal_rank_fusion for plain RRF)")
    return reciprocal_rank_fusion(rankings, k=k, weights=weights, top_n=top_n)
