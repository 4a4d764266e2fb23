"""The ``"subset"`` relaxation of :func:`~rag_relax_plugins.core.gumbel.relaxed_topk`.

Sequential relaxed sampling without replacement (Xie & Ermon, "Reparameterizable Subset Sampling
via Continuous Relaxations", IJCAI 2019): ``k`` softmax rounds over the perturbed scores, each
round lowering the logits by ``log(1 - p)`` of the previous one (:func:`softmax_round`, exact
where ``p`` rounds to 1), then the rounds' sum mapped onto the capped simplex
``{m in [0, 1]^N, sum m = k}`` by differentiable water-filling (:func:`cap_at_one`). Called by
``relaxed_topk``, which validates the input and adds the Gumbel noise; shapes are ``(B, N)``.
"""

from __future__ import annotations

import torch

from rag_relax_plugins.core.device import work_dtype

__all__ = ["cap_at_one", "softmax_round", "subset_relaxation"]


def softmax_round(z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One round of the subset relaxation: ``log_softmax(z)`` and ``log(1 - softmax(z))``.

    ``log1p(-p)`` is accurate for every entry but the row's largest, whose probability is the only
    one that can exceed 1/2 (``p_i <= p_top`` and ``p_i + p_top <= 1``); for that entry, when
    above 1/2 (so never one of tied entries),
    ``log(1 - p_top) = log(sum of the other p_i)``, a sum of positives with no cancellation. Where
    that sum falls below ``sqrt(tiny)`` (the top entry dominates by more than about 40 nats in
    float32, and the sum may have lost precision or be 0) it is replaced by
    ``logsumexp(z_others) - logsumexp(z)``, exact and finite when ``p_top`` rounds to 1 (a clamp
    at ``tiny`` would cap the penalty at about -87 in float32). On the CPU the fallback is computed
    only for batches that need it; on an accelerator always (a test would cost a host sync each
    round, more than the ``logsumexp`` it saves).

    Args:
        z: ``(B, N) x float`` logits with at least two finite entries per row.

    Returns:
        ``(log_p, log1m_p)``, both ``(B, N)``, finite, with finite gradients.
    """
    lse = torch.logsumexp(z, dim=-1, keepdim=True)  # (B, 1)
    log_p = z - lse  # (B, N) log_softmax
    top = log_p.argmax(dim=-1, keepdim=True)  # (B, 1)
    p = log_p.exp()  # (B, N)
    # renormalised: at |z| ~ 1e4 (scores / tau) the rounding of lse (an ulp of z) made every
    # round's p sum to 1 - 2e-4 (k = 2 over [7, 7, -7] at tau 1e-3 gave 0.9998 twice); tied
    # entries now share p exactly and none of them exceeds 1/2
    total = p.sum(dim=-1, keepdim=True)  # (B, 1)
    p = p / total
    log_p = log_p - torch.log(total)
    p_top = p.gather(-1, top)  # (B, 1)
    p_rest = p.scatter(-1, top, 0.0)  # (B, N) top entry zeroed (its log1p may be -inf), set below
    rest = p_rest.sum(dim=-1, keepdim=True)  # (B, 1) 1 - p_top
    floor = torch.finfo(z.dtype).tiny ** 0.5
    small = rest < floor  # (B, 1)
    if small.device.type != "cpu" or bool(small.any()):
        exact = torch.logsumexp(z.scatter(-1, top, float("-inf")), dim=-1, keepdim=True) - lse
        log_rest = torch.where(small, exact, torch.log(rest.clamp_min(floor)))
    else:
        log_rest = torch.log(rest)
    # up to 1/2 log1p(-p_top) is accurate too, and tied entries keep one formula: log(rest) for
    # the top one alone carried the rounding of sum(p) = 1 + d, which 1 / tau amplified over the
    # rounds (four equal scores, k 3, tau 1e-3 gave 0.58 / 0.81 / 0.81 / 0.81 in float32)
    # (clamped: the branch not taken must have a finite gradient, or where() passes on NaN)
    log_top = torch.where(p_top > 0.5, log_rest, torch.log1p(-p_top.clamp_max(0.5)))
    return log_p, torch.log1p(-p_rest).scatter(-1, top, log_top)


def subset_relaxation(perturbed: torch.Tensor, valid: torch.Tensor, k: int, tau: float) -> torch.Tensor:
    """Xie & Ermon (2019) relaxed subset: k softmax rounds with ``log(1 - p)`` updates.

    Runs in float32 for half-precision input (cast back at the end); the update uses the exact
    :func:`softmax_round`, in the scaled space ``z = a / tau`` (``z += log(1 - p) / tau``; masked
    items sit at a large finite negative value and their ``log(1 - p)`` is 0). The rounds' sum is
    kept in log space too (``log_khot``, the ``logsumexp`` of the rounds' ``log_softmax``), so
    :func:`cap_at_one` can share an excess in proportion even where the probabilities underflow
    to 0.

    Args:
        perturbed: ``(B, N)`` scaled scores plus Gumbel noise.
        valid: ``(B, N) x bool``; at least ``k`` True per row.
        k: subset size.
        tau: temperature.

    Returns:
        ``(B, N)`` mask in ``[0, 1]`` summing to ``k`` over valid items (the rounds' sum mapped
        onto the capped simplex by :func:`cap_at_one`), in ``perturbed``'s dtype.
    """
    work = work_dtype(perturbed.dtype)
    neg = torch.finfo(work).min / 4  # finite: masked items never produce inf or NaN
    z = (perturbed.to(work) / tau).masked_fill(~valid, neg)  # (B, N)
    khot = torch.zeros_like(z)
    log_rounds = []
    for j in range(k):  # sequential in k by construction; vectorised over (B, N)
        log_p, log1m_p = softmax_round(z)  # (B, N) each
        khot = khot + log_p.exp()
        log_rounds.append(log_p)
        if j + 1 < k:
            z = z + log1m_p / tau
    log_khot = torch.logsumexp(torch.stack(log_rounds), dim=0)  # (k, B, N) -> (B, N)
    return cap_at_one(khot, log_khot, k).to(perturbed.dtype)


def cap_at_one(khot: torch.Tensor, log_khot: torch.Tensor, k: int) -> torch.Tensor:
    """Map non-negative ``(B, N)`` rows summing to ``k`` into ``[0, 1]`` keeping the sum ``k``.

    Water-filling: entries above 1 are set to 1 and their excess is shared among the entries below
    1 in proportion to their values; an entry pushed above 1 by the share is capped in the next
    round. Each round caps at least one more entry and at most ``k - 1`` entries can be capped,
    so ``k`` rounds reach the fixed point; the loop stops at the first round with nothing above 1
    (one host sync per round on an accelerator; most rows need no round at all). The
    proportional shares are a softmax of ``log_khot`` over the uncapped entries, so they stay
    exact where ``khot`` itself underflowed to 0 (an item that took a whole round's mass twice,
    e.g. at a small ``tau`` with large score gaps): the row still sums to ``k``. Differentiable
    almost everywhere (``where`` and a softmax), with finite gradients.

    Args:
        khot: ``(B, N) x float`` non-negative rows summing to ``k`` (which entries exceed 1).
        log_khot: ``(B, N) x float`` its logarithm, finite (masked items hugely negative).
        k: the row sum.

    Returns:
        ``(B, N)`` rows in ``[0, 1]`` summing to ``min(k, N)`` up to rounding.
    """
    x = khot
    for _ in range(k):
        if not bool((x > 1.0).any()):  # fixed point reached (usual at once): skip the rounds left
            break
        capped = x >= 1.0  # (B, N)
        room = k - capped.sum(dim=-1, keepdim=True).to(x.dtype)  # (B, 1) mass the free entries get
        free_logits = log_khot.masked_fill(capped, float("-inf"))  # (B, N)
        top = free_logits.amax(dim=-1, keepdim=True).detach()  # (B, 1) a stabiliser only
        top = torch.where(torch.isfinite(top), top, torch.zeros_like(top))  # every entry capped
        e = torch.exp(free_logits - top)  # (B, N) 0 at capped entries
        total = e.sum(dim=-1, keepdim=True)  # (B, 1) >= 1 unless every entry is capped
        share = e / torch.where(total > 0, total, torch.ones_like(total))
        x = torch.where(capped, torch.ones_like(x), room * share)
    return x.clamp(max=1.0)  # rounding only: the fixed point is already <= 1
