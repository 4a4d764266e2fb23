"""Maximal marginal relevance (MMR) selection over a scored candidate set.

MMR (Carbonell & Goldstein, SIGIR 1998) picks ``k`` items greedily; at each step it takes

    argmax_{i not selected}  lambda * rel(i) - (1 - lambda) * max_{j selected} sim(i, j)

so a result that repeats an already chosen one is pushed down. :func:`mmr_select` is agnostic to
where the numbers come from; :func:`mmr_select_mol` is what the vector stores call: relevance is
the MoL score rescaled to the cosine's range (``tau * phi``), redundancy the cosine between the
candidates' document embeddings.

Departures from the paper: relevance and similarity are taken as given (the paper uses one
similarity for both); ties are broken by the lower candidate position, so the output is
deterministic; the first pick is the most relevant candidate (the paper's formula gives the same
pick when nothing is selected yet). LangChain's ``maximal_marginal_relevance`` uses cosine to the
query for relevance; here the caller decides.
"""

from __future__ import annotations

import math

import torch

from rag_relax_plugins.core.validation import (
    check_finite,
    check_floating,
    check_k,
    check_ndim,
    check_positive,
    check_real,
)

__all__ = ["check_lambda_mult", "mmr_select", "mmr_select_by_embeddings", "mmr_select_mol", "mmr_select_reference"]


def _check_inputs(
    relevance: torch.Tensor, similarity: torch.Tensor, k: int, lambda_mult: float
) -> tuple[int, float]:
    check_floating("relevance", relevance)
    check_ndim("relevance", relevance, 1)
    check_floating("similarity", similarity)
    check_ndim("similarity", similarity, 2)
    n = relevance.shape[0]
    if similarity.shape != (n, n):
        raise ValueError(
            f"similarity must have shape ({n}, {n}) to match relevance, got {tuple(similarity.shape)}"
        )
    check_finite("relevance", relevance)
    check_finite("similarity", similarity)
    check_k("k", k)
    return min(k, n), check_lambda_mult(lambda_mult)


def check_lambda_mult(lambda_mult: object) -> float:
    """``lambda_mult`` as a float in ``[0, 1]``; any real number (``numpy.float32`` included).

    Raises:
        TypeError: not a number (``bool`` included). ValueError: outside ``[0, 1]`` or not finite.
    """
    value = check_real("lambda_mult", lambda_mult)  # numpy scalars too
    if not math.isfinite(value) or not 0.0 <= value <= 1.0:
        raise ValueError(f"lambda_mult must lie in [0, 1], got {value}")
    return value


def mmr_select(
    relevance: torch.Tensor, similarity: torch.Tensor, k: int, lambda_mult: float = 0.5
) -> torch.Tensor:
    """Greedy MMR: indices of ``min(k, N)`` candidates in selection order.

    Args:
        relevance: ``(N,) x float`` relevance of each candidate to the query (higher is better).
        similarity: ``(N, N) x float`` candidate-candidate similarity (e.g. cosine).
        k: number of candidates to select (>= 1); capped at ``N``.
        lambda_mult: weight of relevance in ``[0, 1]``; 1 is a plain top-k by relevance,
            0 maximal diversity.

    Returns:
        ``(min(k, N),) x long`` candidate positions, on ``relevance``'s device; empty when
        ``N == 0``.

    Raises:
        TypeError / ValueError: on non-float inputs, mismatched shapes, NaN/inf, ``k < 1`` or
            ``lambda_mult`` outside ``[0, 1]``.
    """
    steps, lam = _check_inputs(relevance, similarity, k, lambda_mult)
    n = relevance.shape[0]
    out = torch.empty(steps, dtype=torch.long, device=relevance.device)
    if steps == 0:
        return out
    with torch.no_grad():
        rel = relevance.to(torch.float64)
        sim = similarity.to(torch.float64)
        taken = torch.zeros(n, dtype=torch.bool, device=relevance.device)
        # running max similarity of every candidate to the selected set; -inf before any pick
        max_sim = torch.full((n,), -math.inf, dtype=torch.float64, device=relevance.device)
        for step in range(steps):
            if step == 0:
                gain = rel.clone()
            else:
                gain = lam * rel - (1.0 - lam) * max_sim
            gain[taken] = -math.inf
            # argmax returns the first maximal position: ties go to the lower index
            pick = int(torch.argmax(gain))
            out[step] = pick
            taken[pick] = True
            max_sim = torch.maximum(max_sim, sim[:, pick])  # sim(i, pick) for every i
    return out


def mmr_select_by_embeddings(
    relevance: torch.Tensor, embeddings: torch.Tensor, k: int, lambda_mult: float = 0.5
) -> torch.Tensor:
    """MMR with the cosine between candidate embeddings as the redundancy.

    Args:
        relevance: ``(N,) x float`` relevance of each candidate (e.g. its MoL score).
        embeddings: ``(N, D) x float`` candidate embeddings (zero rows have cosine 0 to all).
        k: number of candidates to select; capped at ``N``.
        lambda_mult: relevance weight in ``[0, 1]``.

    Returns:
        ``(min(k, N),) x long`` candidate positions in selection order.

    Raises:
        TypeError / ValueError: as :func:`mmr_select`, and ``embeddings`` not ``(N, D)``.
    """
    check_floating("relevance", relevance)  # first: its length is what embeddings must match
    check_ndim("relevance", relevance, 1)
    check_floating("embeddings", embeddings)
    check_ndim("embeddings", embeddings, 2)
    check_finite("embeddings", embeddings)  # named here: mmr_select would blame "similarity"
    if embeddings.shape[0] != relevance.shape[0]:
        raise ValueError(
            f"embeddings must have one row per candidate ({relevance.shape[0]}), got shape {tuple(embeddings.shape)}"
        )
    unit = torch.nn.functional.normalize(embeddings.to(torch.float64), dim=-1)
    return mmr_select(relevance, unit @ unit.T, k, lambda_mult)  # (N, N) cosine


def mmr_select_mol(
    scores: torch.Tensor, embeddings: torch.Tensor, k: int, lambda_mult: float = 0.5, *, tau: float
) -> torch.Tensor:
    """MMR over MoL candidates, relevance and redundancy on the same ``[-1, 1]`` scale.

    The raw MoL score ``phi = sum_p pi_p s_p / tau`` lies in ``[-1/tau, 1/tau]`` (the ``s_p`` are
    cosines, ``pi`` a softmax), while the redundancy, a cosine, lies in ``[-1, 1]``. Mixing them
    as they are would make ``lambda_mult`` nearly inert for a trained head (``tau = 0.05``: the
    relevance term is 20 times larger). The relevance used here is therefore ``tau * phi``, a
    convex mix of cosines in ``[-1, 1]``; for the untrained cosine head (``tau = 1``) it is the
    cosine to the query, which makes this LangChain's usual cosine MMR.

    Args:
        scores: ``(N,) x float`` raw MoL scores ``phi`` of the candidates.
        embeddings: ``(N, D) x float`` candidate document embeddings (the redundancy is their cosine).
        k: number of candidates to select; capped at ``N``.
        lambda_mult: relevance weight in ``[0, 1]``.
        tau: the similarity's temperature (``MoLConfig.tau``), ``> 0``.

    Returns:
        ``(min(k, N),) x long`` candidate positions in selection order.

    Raises:
        TypeError / ValueError: on a non-numeric or non-positive ``tau``, or as
            :func:`mmr_select_by_embeddings`.
    """
    tau = check_positive("tau", tau)
    check_floating("scores", scores)
    check_ndim("scores", scores, 1)  # named here: further down it is the relevance
    return mmr_select_by_embeddings(scores.to(torch.float64) * tau, embeddings, k, lambda_mult)


def mmr_select_reference(
    relevance: list[float], similarity: list[list[float]], k: int, lambda_mult: float = 0.5
) -> list[int]:
    """Pure-Python MMR with the same tie rule, the brute-force reference for tests."""
    n = len(relevance)
    chosen: list[int] = []
    while len(chosen) < min(k, n):
        best, best_gain = -1, -math.inf
        for i in range(n):
            if i in chosen:
                continue
            if not chosen:
                gain = relevance[i]
            else:
                red = max(similarity[i][j] for j in chosen)
                gain = lambda_mult * relevance[i] - (1 - lambda_mult) * red
            if gain > best_gain:
                best, best_gain = i, gain
        chosen.append(best)
    return chosen
