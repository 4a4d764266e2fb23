"""Information-retrieval metrics over ranked id lists and graded relevance judgements.

A *ranking* is a sequence of document ids, best first. *Qrels* map document ids to graded
relevance; a grade > 0 is relevant, a missing id has grade 0. Definitions follow trec_eval (and
so ``ir-measures``/pytrec_eval, which the tests compare against to 1e-6):

- ``recall@k`` = relevant retrieved in the top k / all relevant;
- ``precision@k`` = relevant in the top k / k (trec_eval's P_k divides by k even when the
  ranking is shorter);
- ``hit_rate@k`` = 1 if any relevant document is in the top k (ir-measures ``Success@k``);
- ``mrr`` / ``mrr@k`` = 1 / rank of the first relevant document (0 if none);
- ``ndcg@k``: DCG with a ``log2(rank + 1)`` discount over the ideal DCG of all judged documents.
  ``gain="linear"`` uses the grade itself (trec_eval's ``ndcg_cut``); ``gain="exponential"``
  uses ``2**grade - 1`` (Burges et al. 2005). With binary grades they coincide;
- ``map@k`` = sum of precision at each relevant rank within k, divided by the number of relevant
  documents in total (trec_eval's ``map_cut``, ir-measures ``AP@k``).

Queries with no relevant document score 0 on every metric by default; ``skip_empty=True`` leaves
them out of the mean instead. This matches trec_eval/ir-measures: a query present in the qrels with
only non-relevant judgements is averaged in with 0, while a query absent from the qrels is skipped.

Grades are compared with ``> 0``; trec_eval's binary measures use ``rel >= 1``, which is the same
for the integer grades that TREC qrels hold.

A ranking may also be a 1-D integer ``torch.Tensor`` (e.g. one row of ``torch.topk(...).indices``):
it is read as the list of its ids (``.tolist()``). Other tensors (floating or bool dtype, 0-D or
2-D) are a ``TypeError``: the elements of a tensor are 0-d tensors, which hash by identity and so
would match no qrels entry; a sequence holding such tensors (``list(tensor)``) is refused too.
"""

from __future__ import annotations

import math
import numbers
import re
import sys
from collections.abc import Hashable, Mapping, Sequence
from typing import TYPE_CHECKING

from rag_relax_plugins.core.scalars import check_k

if TYPE_CHECKING:
    import torch

__all__ = [
    "METRIC_NAMES",
    "DocId",
    "Qrels",
    "Ranking",
    "average_precision_at_k",
    "check_metrics",
    "deepest_cutoff",
    "evaluate",
    "evaluate_per_query",
    "hit_rate_at_k",
    "ndcg_at_k",
    "paired_difference",
    "precision_at_k",
    "rankings_from_scores",
    "recall_at_k",
    "reciprocal_rank",
]

DocId = str | int
Ranking = Sequence[DocId]
"""Document ids, best first (any hashable id works at run time)."""
Qrels = Mapping[DocId, float]
"""Graded relevance per document id; > 0 is relevant, a missing id has grade 0."""

METRIC_NAMES = ("recall", "precision", "hit_rate", "mrr", "ndcg", "ndcg_linear", "map")
_METRIC_RE = re.compile(r"^(recall|precision|hit_rate|mrr|ndcg|ndcg_linear|map)(?:@(\d+))?$")


def _tensor_ranking(ranking: object, name: str) -> object:
    """A 1-D integer ``torch.Tensor`` as the list of its ids (``.tolist()``); anything else as is.

    Its elements would be 0-d tensors, which hash by identity. torch is looked up only if already
    imported (no tensor can exist otherwise), so this module still loads without it.
    """
    torch = sys.modules.get("torch")
    if torch is None:
        return ranking
    if not isinstance(ranking, torch.Tensor):
        if any(isinstance(d, torch.Tensor) for d in ranking):  # type: ignore[attr-defined]
            raise TypeError(
                f"{name} holds torch tensors (e.g. list(torch.topk(...).indices)), which hash by "
                "identity and would match no qrels entry: pass tensor.tolist() or the 1-D tensor itself"
            )
        return ranking
    if ranking.dim() != 1 or ranking.is_floating_point() or ranking.is_complex() or ranking.dtype == torch.bool:
        raise TypeError(
            f"{name} given as a tensor must be a 1-D integer tensor of document ids (one row of "
            f"torch.topk(...).indices), got shape {tuple(ranking.shape)} and dtype {ranking.dtype}; "
            "rankings_from_scores turns a score matrix into rankings"
        )
    return ranking.tolist()


def _check_ranking(ranking: Ranking) -> Ranking:
    """Validate a ranking; return it, or a 1-D integer tensor's ids as a list."""
    if isinstance(ranking, (str, bytes)):
        raise TypeError("ranking must be a sequence of document ids, not a string")
    ranking = _tensor_ranking(ranking, "ranking")  # type: ignore[assignment]
    if len(set(ranking)) != len(ranking):
        seen: set[Hashable] = set()
        dup = next(d for d in ranking if d in seen or seen.add(d))  # type: ignore[func-returns-value]
        raise ValueError(f"ranking contains the document id {dup!r} more than once")
    return ranking


def _relevant(qrels: Qrels) -> int:
    return sum(1 for g in qrels.values() if g > 0)


def recall_at_k(ranking: Ranking, qrels: Qrels, k: int) -> float:
    """Fraction of the relevant documents found in the top ``k`` (0 when none is relevant)."""
    k = check_k("k", k)
    ranking = _check_ranking(ranking)
    n_rel = _relevant(qrels)
    if n_rel == 0:
        return 0.0
    return sum(1 for d in ranking[:k] if qrels.get(d, 0) > 0) / n_rel


def precision_at_k(ranking: Ranking, qrels: Qrels, k: int) -> float:
    """Relevant documents in the top ``k`` divided by ``k``."""
    k = check_k("k", k)
    ranking = _check_ranking(ranking)
    return sum(1 for d in ranking[:k] if qrels.get(d, 0) > 0) / k


def hit_rate_at_k(ranking: Ranking, qrels: Qrels, k: int) -> float:
    """1.0 when at least one relevant document is in the top ``k``, else 0.0."""
    k = check_k("k", k)
    ranking = _check_ranking(ranking)
    return 1.0 if any(qrels.get(d, 0) > 0 for d in ranking[:k]) else 0.0


def reciprocal_rank(ranking: Ranking, qrels: Qrels, k: int | None = None) -> float:
    """``1 / rank`` of the first relevant document within the top ``k`` (all when ``None``)."""
    if k is not None:
        k = check_k("k", k)
    ranking = _check_ranking(ranking)
    cut = ranking if k is None else ranking[:k]
    for i, d in enumerate(cut, start=1):
        if qrels.get(d, 0) > 0:
            return 1.0 / i
    return 0.0


def _gain(grade: float, gain: str) -> float:
    if gain == "linear":
        return float(grade)
    if float(grade) > 1000:  # 2 ** 1024 overflows a float (OverflowError deep in an evaluation)
        raise ValueError(f"relevance grade {grade!r} is too large for ndcg's exponential gain 2^grade - 1 "
                         "(at most 1000); use ndcg_linear, or grades on a small scale (0-3 as in TREC)")
    return 2.0 ** float(grade) - 1.0


def ndcg_at_k(ranking: Ranking, qrels: Qrels, k: int, gain: str = "exponential") -> float:
    """Normalised discounted cumulative gain at ``k``.

    Args:
        ranking: document ids, best first.
        qrels: graded relevance; grades <= 0 contribute no gain.
        k: cut-off.
        gain: ``"exponential"`` (``2**g - 1``) or ``"linear"`` (``g``, as trec_eval).
    """
    k = check_k("k", k)
    ranking = _check_ranking(ranking)
    if gain not in ("exponential", "linear"):
        raise ValueError(f"gain must be 'exponential' or 'linear', got {gain!r}")
    dcg = sum(
        _gain(qrels.get(d, 0), gain) / math.log2(i + 1)
        for i, d in enumerate(ranking[:k], start=1)
        if qrels.get(d, 0) > 0
    )
    ideal = sorted((g for g in qrels.values() if g > 0), reverse=True)[:k]
    idcg = sum(_gain(g, gain) / math.log2(i + 1) for i, g in enumerate(ideal, start=1))
    return dcg / idcg if idcg > 0 else 0.0


def average_precision_at_k(ranking: Ranking, qrels: Qrels, k: int) -> float:
    """Average precision over the top ``k``, divided by the total number of relevant documents."""
    k = check_k("k", k)
    ranking = _check_ranking(ranking)
    n_rel = _relevant(qrels)
    if n_rel == 0:
        return 0.0
    hits, total = 0, 0.0
    for i, d in enumerate(ranking[:k], start=1):
        if qrels.get(d, 0) > 0:
            hits += 1
            total += hits / i
    return total / n_rel


def _parse(name: str) -> tuple[str, int | None]:
    m = _METRIC_RE.match(name)
    if not m:
        raise ValueError(
            f"unknown metric {name!r}; expected one of {METRIC_NAMES} with '@k' "
            "(e.g. 'recall@10', 'ndcg@10', 'mrr', 'map@100')"
        )
    base, k = m.group(1), m.group(2)
    if k is None and base != "mrr":
        raise ValueError(f"metric {name!r} needs a cut-off, e.g. '{base}@10'")
    if k is not None and int(k) < 1:
        raise ValueError(f"metric {name!r}: the cut-off k must be >= 1, got {int(k)}")
    return base, (int(k) if k is not None else None)


def check_metrics(metrics: Sequence[str]) -> list[str]:
    """The metric names of ``metrics`` as a list, checked as :func:`evaluate` checks them: call it
    before expensive work (encoding a corpus) whose result is scored with them.

    Raises:
        TypeError: a single string (``list("mrr")`` would ask for ``"m"``, ``"r"``, ``"r"``), or
            a name that is not a string.
        ValueError: an unknown metric, a missing or bad cut-off, a metric named twice.
    """
    return [name for name, _, _ in _parse_metrics(metrics)]


def deepest_cutoff(metrics: Sequence[str]) -> int | None:
    """The largest cut-off ``k`` among ``metrics`` (checked as :func:`check_metrics` checks them),
    or ``None`` when none has one (plain ``"mrr"``): how deep a ranking must go to score them."""
    ks = [k for _, _, k in _parse_metrics(metrics) if k is not None]
    return max(ks) if ks else None


def _parse_metrics(metrics: Sequence[str]) -> list[tuple[str, str, int | None]]:
    """``(name, base, k)`` per metric name; a name given twice is refused (its per-query list
    would hold every query twice, and :func:`paired_difference` would count them twice)."""
    if isinstance(metrics, str):  # list("mrr") would ask for the metrics "m", "r", "r"
        raise TypeError(f"metrics must be a sequence of metric names, got the string {metrics!r}; pass [{metrics!r}]")
    metrics = list(metrics)  # read once: a generator would be empty the second time
    seen: dict[tuple[str, int | None], str] = {}
    for name in metrics:
        if not isinstance(name, str):
            raise TypeError(f"metrics must hold metric names (str), got {type(name).__name__}")
        key = _parse(name)  # "mrr@1" and "mrr@01" are one metric
        if key in seen:
            twice = f"{name!r} more than once" if seen[key] == name else f"{seen[key]!r} and {name!r}, the same metric"
            raise ValueError(f"metrics must name each metric once, got {twice}")
        seen[key] = name
    return [(name, *_parse(name)) for name in metrics]


def _from_grades(base: str, k: int | None, grades: list[float], qrels: Qrels, n_rel: int) -> float:
    """One metric from the grades of the ranked documents (validation already done)."""
    cut = grades if k is None else grades[:k]
    if base == "mrr":
        return next((1.0 / i for i, g in enumerate(cut, start=1) if g > 0), 0.0)
    assert k is not None  # guaranteed by _parse
    if base == "hit_rate":
        return 1.0 if any(g > 0 for g in cut) else 0.0
    if base == "precision":
        return sum(1 for g in cut if g > 0) / k
    if n_rel == 0:
        return 0.0
    if base == "recall":
        return sum(1 for g in cut if g > 0) / n_rel
    if base == "map":
        hits, total = 0, 0.0
        for i, g in enumerate(cut, start=1):
            if g > 0:
                hits += 1
                total += hits / i
        return total / n_rel
    gain = "linear" if base == "ndcg_linear" else "exponential"
    dcg = sum(_gain(g, gain) / math.log2(i + 1) for i, g in enumerate(cut, start=1) if g > 0)
    ideal = sorted((g for g in qrels.values() if g > 0), reverse=True)[:k]
    idcg = sum(_gain(g, gain) / math.log2(i + 1) for i, g in enumerate(ideal, start=1))
    return dcg / idcg if idcg > 0 else 0.0


def evaluate_per_query(
    rankings: Sequence[Ranking],
    qrels: Sequence[Qrels],
    metrics: Sequence[str],
    *,
    skip_empty: bool = False,
) -> dict[str, list[float]]:
    """Every metric for every query.

    Args:
        rankings: one ranking per query.
        qrels: one qrels mapping per query, aligned with ``rankings``.
        metrics: names such as ``"recall@10"``, ``"precision@5"``, ``"hit_rate@10"``, ``"mrr"``,
            ``"mrr@10"``, ``"ndcg@10"`` (exponential gain), ``"ndcg_linear@10"``, ``"map@100"``.
        skip_empty: leave out queries without any relevant document.

    Returns:
        ``{metric: [value per kept query]}``.

    Raises:
        TypeError: ``metrics`` is a single string; a ranking of the wrong type.
        ValueError: unknown metric, a metric named twice, ``rankings`` and ``qrels`` of different
            lengths, a ranking holding an id twice.
    """
    if len(rankings) != len(qrels):
        raise ValueError(f"rankings and qrels must have the same length, got {len(rankings)} and {len(qrels)}")
    parsed = _parse_metrics(metrics)
    # grades are needed up to the largest cut-off; an uncut "mrr" needs the whole ranking
    depth = None if any(k is None for _, _, k in parsed) else max((k or 0 for _, _, k in parsed), default=0)
    out: dict[str, list[float]] = {name: [] for name, _, _ in parsed}
    for i, (ranking, q) in enumerate(zip(rankings, qrels, strict=True)):
        try:
            ranking = _check_ranking(ranking)
        except (TypeError, ValueError) as err:
            raise type(err)(f"rankings[{i}]: {err}") from None
        n_rel = _relevant(q)
        if skip_empty and n_rel == 0:
            continue
        head = ranking if depth is None else ranking[:depth]
        grades = [q.get(d, 0) for d in head]
        for name, base, k in parsed:
            out[name].append(_from_grades(base, k, grades, q, n_rel))
    return out


def evaluate(
    rankings: Sequence[Ranking],
    qrels: Sequence[Qrels],
    metrics: Sequence[str],
    *,
    skip_empty: bool = False,
) -> dict[str, float]:
    """Mean of each metric over queries (see :func:`evaluate_per_query` for the arguments and
    errors; a metric named twice is refused there too)."""
    names = check_metrics(metrics)  # a generator is read here, once
    if len(rankings) == 0:
        raise ValueError("rankings must hold at least one query")
    per = evaluate_per_query(rankings, qrels, names, skip_empty=skip_empty)
    return {name: (sum(vals) / len(vals) if vals else 0.0) for name, vals in per.items()}


def paired_difference(a: Sequence[float], b: Sequence[float]) -> dict[str, float]:
    """Mean of the per-query differences ``a - b`` and its standard error.

    For two systems evaluated on the same queries (same order): ``mean`` is the difference of
    their means, ``se`` the sample standard deviation of the differences (``n - 1``) over
    ``sqrt(n)``, the uncertainty that comes from the finite set of queries.

    Returns:
        ``{"mean": ..., "se": ..., "n": ...}``.
    """
    if len(a) != len(b):
        raise ValueError(f"a and b must score the same queries, got {len(a)} and {len(b)} values")
    n = len(a)
    if n < 2:
        raise ValueError(f"a paired standard error needs at least 2 queries, got {n}")
    d = [float(x) - float(y) for x, y in zip(a, b, strict=True)]
    if not all(math.isfinite(v) for v in d):
        raise ValueError("a and b must be finite")
    m = sum(d) / n
    se = math.sqrt(sum((v - m) ** 2 for v in d) / (n - 1) / n)
    return {"mean": m, "se": se, "n": float(n)}


def rankings_from_scores(
    scores: torch.Tensor,
    ids: Sequence[DocId] | int | None = None,
    k: int | None = None,
) -> list[list[DocId]]:
    """Top-``k`` document ids per row of a score matrix.

    Ties are broken by the lower column index, as a stable descending sort orders them (what is
    computed; for a ``k`` well below the row length ``torch.topk``, whose order among equal scores
    is unspecified and differs across devices, with its ties put back in that order).

    Args:
        scores: ``(B, N) x float`` scores, higher is better; NaN/inf are rejected.
        ids: the ``N`` document ids; column positions ``0..N-1`` when ``None``. For backward
            compatibility an ``int`` here is read as ``k`` (old order ``(scores, k, ids)``).
        k: how many ids per query, capped at ``N``; all ``N`` when ``None``.

    Returns:
        ``B`` lists of ids, best first.
    """
    from rag_relax_plugins.core.validation import check_finite, check_floating, check_ndim

    id_list: object = ids
    cut: object = k
    if isinstance(ids, numbers.Integral) and not isinstance(ids, bool):  # numpy ints too
        id_list, cut = k, ids  # legacy call rankings_from_scores(scores, k, ids)
    if id_list is not None and (isinstance(id_list, (str, bytes)) or not isinstance(id_list, Sequence)):
        raise TypeError(f"ids must be a sequence of document ids or None, got {type(id_list).__name__}")
    check_floating("scores", scores)
    check_ndim("scores", scores, 2)
    check_finite("scores", scores)
    n = scores.shape[1]
    top = n if cut is None else check_k("k", cut)
    if id_list is not None and len(id_list) != n:
        raise ValueError(f"ids must have one entry per column of scores ({n}), got {len(id_list)}")
    order = _top_columns(scores.detach(), min(top, n))
    rows: list[list[int]] = order.cpu().tolist()
    if id_list is None:
        return [list(r) for r in rows]
    return [[id_list[i] for i in r] for r in rows]


def _top_columns(scores: torch.Tensor, top: int) -> torch.Tensor:
    """``(B, top) x long`` columns of the ``top`` best scores per row, best first, equal scores by
    ascending column: the first ``top`` columns of a stable descending sort, which is what is
    computed when ``top`` is a sizeable part of the row. Otherwise ``torch.topk`` (much faster
    than sorting 5,000-20,000 columns for 100) and its ties put in column order; a tie at the cut
    that kept a higher column than one it left out is redone from the row."""
    import torch

    n = scores.shape[1]
    if 4 * top >= n:
        return torch.sort(scores, dim=1, descending=True, stable=True).indices[:, :top]
    top_s, top_i = scores.topk(top, dim=1)  # (B, top) best first, ties in kernel order
    order = top_i.argsort(dim=1)  # by column, then stably by score: ties by ascending column
    top_s, top_i = top_s.gather(1, order), top_i.gather(1, order)
    order = top_s.argsort(dim=1, descending=True, stable=True)
    top_s, top_i = top_s.gather(1, order), top_i.gather(1, order)
    kth = top_s[:, -1:]  # (B, 1)
    cut = (scores == kth).sum(dim=1) > (top_s == kth).sum(dim=1)
    for q in cut.nonzero().squeeze(1).tolist():
        keep = int((top_s[q] > kth[q]).sum())
        top_i[q, keep:] = (scores[q] == kth[q]).nonzero().squeeze(1)[: top - keep]
    return top_i
