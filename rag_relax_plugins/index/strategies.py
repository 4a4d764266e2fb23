"""Retrieval strategies for :class:`~rag_relax_plugins.index.MoLIndex` (RAILS, Ding & Zhai 2025).

Each strategy is a small frozen dataclass passed as ``search(..., strategy=...)``. Notation:
``B`` queries, ``N`` items, query components ``f_i(q)`` (``i < P_q``), item components
``g_j(x)`` (``j < P_x``), component logits ``s_ij(q, x) = <f_i(q), g_j(x)>``, MoL score ``phi``.

:class:`BruteForce` -- exact reference.
    1. Score every (filtered) item with ``phi`` in chunks over items.
    2. Return the top ``k``.

:class:`TopKPerEmbd` ``(n)`` -- paper's "TopKPerEmbd".
    1. For every query component ``f_i(q)``, retrieve from the first stage the ``n`` best item
       component vectors ``g_j(x)`` over all ``(x, j)`` (an index of ``N * P_x`` vectors).
    2. Candidates = union of their items (at most ``P_q * n``, de-duplicated).
    3. Rerank the candidates with the exact ``phi``; return the top ``k``.

:class:`TopKAvg` ``(n)`` -- paper's "TopKAvg".
    1. Retrieve the ``n`` items with the best *average* component logit
       ``mean_ij s_ij = <mean_i f_i(q), mean_j g_j(x)>`` (a first stage over the ``N`` mean
       item components).
    2. Rerank them with ``phi``; return the top ``k``.

:class:`Combined` ``(n_per_embd, n_avg)``: union of the candidates of ``TopKPerEmbd(n_per_embd)``
and ``TopKAvg(n_avg)``, reranked with ``phi``.

:class:`ExactTwoPass` ``(budget)`` -- the exact algorithm. Because the gating weights are a
convex combination at inference, ``phi(q, x) <= max_ij s_ij(q, x) / tau``.
    1. Candidates: for every query component, the ``k`` best item components (their items),
       plus the ``k`` best items by the average logit (so there are at least ``k`` distinct
       candidates; per-component hits often repeat items). Any first stage will do: any
       candidate set yields a valid threshold, a better one a tighter threshold.
    2. Score the candidates with ``phi``; threshold ``S`` = the k-th best candidate score (the
       paper takes the minimum over the candidates; the k-th best is tighter and equally exact).
       Every true top-k item has ``phi >= S``, hence some ``s_ij >= S * tau``.
    3. Range search: every item with ``max_ij s_ij >= S * tau`` (exact, chunked matmul).
    4. Rerank that set with ``phi``; return the top ``k``.
    Fallback: when the range set of a query exceeds ``budget`` items, that query is answered by
    :class:`BruteForce` over its (filtered) corpus instead; the result is still exact, only slower
    (logged at DEBUG level). Step 3 always runs over exact (torch) scores, whatever first stage
    the index uses.

Candidate budgets are at least ``k``: a search with ``k`` larger than ``n`` (or ``n_per_embd``,
``n_avg``) uses ``k`` for that budget, and a :class:`TopKPerEmbd` query whose component hits hold
fewer than ``k`` distinct items (up to ``P_x`` hits can be the same item) searches ``k * P_x``
vectors per component instead. Candidates are de-duplicated before the rerank, so results never
repeat an id. With an exact first stage (``"torch"``, ``"flat"``) every strategy therefore returns
``min(k, allowed items)`` results; only an approximate FAISS stage (HNSW, IVF with few probes)
can return fewer. Padding convention: the score tensor is ``(B, K)`` with ``K`` the most results
of any query; a query with fewer has ``-inf`` scores in its trailing columns and a shorter id list.

Approximate strategies equal :class:`BruteForce` when their candidates cover the corpus (e.g.
``n >= N`` with an exact first stage), as :class:`ExactTwoPass` always does, up to float32
rounding: the rerank and BruteForce compute scores with different kernels (about one ulp apart),
so two items whose scores are that close at the ``k``-th place may be exchanged.
"""

from __future__ import annotations

from dataclasses import dataclass

from rag_relax_plugins.core.config_dict import plain_scalars
from rag_relax_plugins.core.scalars import check_int

__all__ = [
    "BruteForce",
    "Combined",
    "ExactTwoPass",
    "Strategy",
    "TopKAvg",
    "TopKPerEmbd",
    "check_strategy",
]


@dataclass(frozen=True)
class BruteForce:
    """Exact: score every item with the MoL similarity."""


@dataclass(frozen=True)
class TopKPerEmbd:
    """Top ``n`` item components per query component, then MoL rerank."""

    n: int = 100

    def __post_init__(self) -> None:
        plain_scalars(self)
        check_int("n", self.n, 1)


@dataclass(frozen=True)
class TopKAvg:
    """Top ``n`` items by the average component logit, then MoL rerank."""

    n: int = 1000

    def __post_init__(self) -> None:
        plain_scalars(self)
        check_int("n", self.n, 1)


@dataclass(frozen=True)
class Combined:
    """Union of ``TopKPerEmbd(n_per_embd)`` and ``TopKAvg(n_avg)`` candidates, then MoL rerank."""

    n_per_embd: int = 100
    n_avg: int = 1000

    def __post_init__(self) -> None:
        plain_scalars(self)
        check_int("n_per_embd", self.n_per_embd, 1)
        check_int("n_avg", self.n_avg, 1)


@dataclass(frozen=True)
class ExactTwoPass:
    """Exact two-pass retrieval with a candidate ``budget`` (see the module docstring)."""

    budget: int = 100_000

    def __post_init__(self) -> None:
        plain_scalars(self)
        check_int("budget", self.budget, 1)


Strategy = BruteForce | TopKPerEmbd | TopKAvg | Combined | ExactTwoPass


def check_strategy(strategy: object) -> Strategy:
    """Return ``strategy`` if it is one of the strategy dataclasses, else raise ``TypeError``."""
    if not isinstance(strategy, (BruteForce, TopKPerEmbd, TopKAvg, Combined, ExactTwoPass)):
        raise TypeError(
            "strategy must be BruteForce(), TopKPerEmbd(n), TopKAvg(n), Combined(n1, n2) or "
            f"ExactTwoPass(budget), got {strategy!r}"
        )
    return strategy
