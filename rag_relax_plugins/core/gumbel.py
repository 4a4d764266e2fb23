"""Gumbel-softmax and relaxed top-k masks.

The relaxed top-k mask is the selection operator of Gumbel Reranking (Huang et al., "Gumbel
Reranking: Differentiable End-to-End Reranker Optimization", ACL 2025): reranker scores are scaled
by ``kappa``, perturbed with Gumbel noise and relaxed with temperature ``tau``; the mask then
enters a reader's attention as ``log(mask)`` (:func:`attention_log_mask`).

Three relaxations are offered:

- ``"l2x"``: element-wise maximum of ``k`` independent Gumbel-softmax samples (Chen et al.,
  "Learning to Explain", ICML 2018), the form used by Gumbel Reranking. Values lie in ``[0, 1]``;
  the sum is at most ``k``.
- ``"subset"``: sequential relaxed sampling without replacement (Xie & Ermon, "Reparameterizable
  Subset Sampling via Continuous Relaxations", IJCAI 2019). The ``k`` rounds are inherently
  sequential; each round is vectorised over the batch and the items. The rounds' sum can give an
  item more than 1 when ``tau`` is large relative to the score gaps; departing from the paper, the
  sum is then mapped onto the capped simplex ``{m in [0, 1]^N, sum m = k}`` by differentiable
  water-filling (:mod:`.subset_relaxation`), so the mask is a valid attention mask and still sums
  to ``k``.
- ``"straight_through"``: the hard top-k of the perturbed scores in the forward pass, the
  gradient of the ``"subset"`` relaxation in the backward pass.

All functions take ``(B, N)`` or ``(N,)`` scores and return tensors on the input's device and
dtype. float16 / bfloat16 inputs are computed in float32 and cast back (``kappa * s / tau``
overflows float16 above 65504, and float16's smallest normal, 6.1e-5, is too coarse for
``log(mask)``). Randomness comes from an explicit :class:`torch.Generator` (on the scores'
device) or an explicit ``noise`` tensor, so results are reproducible.
"""

from __future__ import annotations

import operator
from typing import Literal

import torch

from rag_relax_plugins.core.device import work_dtype
from rag_relax_plugins.core.subset_relaxation import subset_relaxation
from rag_relax_plugins.core.validation import (
    MASK_HINT,
    check_finite,
    check_floating,
    check_k,
    check_mask,
    check_ndim,
    check_positive,
    check_real,
)

__all__ = [
    "RelaxedTopKMode",
    "attention_log_mask",
    "gumbel_softmax",
    "hard_topk_mask",
    "relaxed_topk",
    "sample_gumbel",
]

RelaxedTopKMode = Literal["l2x", "subset", "straight_through"]
_MODES = ("l2x", "subset", "straight_through")


def sample_gumbel(
    shape: tuple[int, ...] | torch.Size,
    *,
    like: torch.Tensor,
    generator: torch.Generator | None = None,
    eps: float = 1e-10,
) -> torch.Tensor:
    """Standard Gumbel noise ``-log(-log(U))``, ``U ~ Uniform(0, 1)``.

    Args:
        shape: output shape.
        like: a tensor whose device and floating dtype the noise takes.
        generator: optional generator; it must live on ``like.device``.
        eps: clamp for the uniform draw, keeping the noise finite.

    Returns:
        ``shape x like.dtype`` noise on ``like.device``. For float16 / bfloat16 ``like`` the draw
        and the logs run in float32 and the noise is then cast: drawn in half precision, ``U``
        can round to 0 (infinite noise, float16) or have only 8 random bits (bfloat16 noise that
        never exceeds 5.5).
    """
    check_floating("like", like)
    work = work_dtype(like.dtype)
    u = torch.rand(shape, generator=generator, device=like.device, dtype=work)
    u = u.clamp(min=eps, max=1.0 - eps)
    return (-torch.log(-torch.log(u))).to(like.dtype)


def _prepare(
    scores: torch.Tensor, mask: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor, bool]:
    """Validate ``scores`` (B, N) or (N,), return a 2-D view, a 2-D mask, and whether it was 1-D."""
    check_floating("scores", scores)
    check_ndim("scores", scores, (1, 2))
    if scores.shape[-1] == 0:
        raise ValueError(f"scores must hold at least one item, got shape {tuple(scores.shape)}")
    check_finite("scores", scores, hint=MASK_HINT)
    valid = check_mask("mask", mask, "scores", scores)
    squeeze = scores.dim() == 1
    if squeeze:
        # (N,) -> (1, N)
        scores, valid = scores.unsqueeze(0), valid.unsqueeze(0)
    return scores, valid, squeeze


def _check_k_valid(k: object, valid: torch.Tensor, mask: torch.Tensor | None) -> int:
    """``check_k`` against the fewest valid items of a row, named as such when there is a mask.

    An empty batch ``(0, N)`` has no row to bound ``k`` by: ``k`` is checked against ``N``.
    """
    if valid.shape[0] == 0:
        return check_k("k", k, valid.shape[-1])
    what = "the number of items" if mask is None else "the valid (unmasked) items in the emptiest row"
    return check_k("k", k, int(valid.sum(dim=-1).min().item()), what)


def _check_noise(noise: object, expected: tuple[int, ...], what: str) -> torch.Tensor:
    """Require a finite floating ``noise`` tensor of shape ``expected``."""
    g = check_floating("noise", noise)
    if tuple(g.shape) != expected:
        raise ValueError(f"noise must have shape {expected}{what}, got {tuple(g.shape)}")
    check_finite("noise", g)
    return g


def gumbel_softmax(
    logits: torch.Tensor,
    tau: float = 1.0,
    *,
    hard: bool = False,
    generator: torch.Generator | None = None,
    noise: torch.Tensor | None = None,
    dim: int = -1,
) -> torch.Tensor:
    """Gumbel-softmax sample ``softmax((logits + g) / tau)`` (Jang et al.; Maddison et al., 2017).

    Args:
        logits: ``(..., N) x float`` unnormalised log-probabilities.
        tau: temperature > 0; ``tau -> 0`` approaches a one-hot sample.
        hard: return the one-hot arg-max in the forward pass with the soft gradient
            (straight-through).
        generator: generator for the noise (on ``logits.device``).
        noise: explicit Gumbel noise shaped like ``logits`` (overrides ``generator``), finite,
            floating (cast to ``logits``' dtype); pass zeros for a deterministic softmax.
        dim: the dimension to normalise over.

    Returns:
        Tensor shaped like ``logits``, in its dtype, summing to 1 over ``dim``. float16 /
        bfloat16 logits are computed in float32 and cast back.

    Raises:
        ValueError: no class along ``dim`` (or a 0-d ``logits``), NaN / inf logits, ``tau <= 0``.
    """
    check_floating("logits", logits)
    if logits.dim():  # a bad dim was a bare IndexError
        try:  # a numpy / 0-d tensor integer is a dim too, as torch takes it
            axis = -1 - logits.dim() if isinstance(dim, bool) else operator.index(dim)
        except TypeError:
            axis = -1 - logits.dim()
        if not -logits.dim() <= axis < logits.dim():
            raise ValueError(f"dim must be an int in [{-logits.dim()}, {logits.dim() - 1}] for logits of shape "
                             f"{tuple(logits.shape)}, got {dim!r}")
        dim = axis
    if logits.dim() == 0 or logits.shape[dim] == 0:  # hard=True failed inside argmax, soft gave no row summing to 1
        raise ValueError(f"logits must hold at least one class along dim {dim}, got shape {tuple(logits.shape)}")
    check_finite("logits", logits)
    tau = check_positive("tau", tau)
    z = logits.to(work_dtype(logits.dtype))  # half precision: (logits + g) / tau overflows float16
    if noise is None:
        noise = sample_gumbel(logits.shape, like=z, generator=generator)
    else:
        noise = _check_noise(noise, tuple(logits.shape), " (the shape of logits)")
    y = torch.softmax((z + noise.to(z.dtype)) / tau, dim=dim)
    if not hard:
        return y.to(logits.dtype)
    index = y.argmax(dim=dim, keepdim=True)
    y_hard = torch.zeros_like(y).scatter_(dim, index, 1.0)
    return (y_hard - y.detach() + y).to(logits.dtype)


def hard_topk_mask(scores: torch.Tensor, k: int, *, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Deterministic 0/1 mask of the ``k`` largest scores (ties go to the lower index).

    Args:
        scores: ``(B, N)`` or ``(N,)`` float scores; ``B = 0`` gives an empty ``(0, N)`` mask.
        k: number of items to keep, ``1 <= k <= `` valid items of every row.
        mask: optional ``bool`` mask shaped like ``scores``; False items are never selected.

    Returns:
        Float mask shaped like ``scores`` with exactly ``k`` ones per row.
    """
    s, valid, squeeze = _prepare(scores, mask)
    k = _check_k_valid(k, valid, mask)
    filled = s.masked_fill(~valid, float("-inf"))
    # stable sort keeps the lower index first among ties
    order = torch.sort(filled, dim=-1, descending=True, stable=True).indices[:, :k]
    out = torch.zeros_like(s).scatter_(-1, order, 1.0)
    return out.squeeze(0) if squeeze else out


def relaxed_topk(
    scores: torch.Tensor,
    k: int,
    *,
    mode: RelaxedTopKMode = "l2x",
    tau: float = 0.5,
    kappa: float = 1.0,
    generator: torch.Generator | None = None,
    noise: torch.Tensor | None = None,
    mask: torch.Tensor | None = None,
    add_noise: bool = True,
) -> torch.Tensor:
    """Differentiable top-``k`` selection mask (Gumbel Reranking's relaxed top-k).

    Scores are scaled by ``kappa`` and perturbed with Gumbel noise ``g``; then:

    - ``"l2x"``: ``m_i = max_j softmax((kappa * s + g_j) / tau)_i`` over ``k`` independent noise
      draws ``g_1..g_k`` (all ``k`` softmaxes computed in one batched op);
    - ``"subset"``: ``k`` rounds of ``p_j = softmax(a_j / tau)``, ``a_{j+1} = a_j + log(1 - p_j)``,
      ``a_1 = kappa * s + g``; mask ``= sum_j p_j`` mapped into ``[0, 1]`` with the same sum
      (entries above 1 capped, the excess shared among the others in proportion);
    - ``"straight_through"``: hard top-k of ``kappa * s + g`` forward, ``"subset"`` gradient backward.

    Args:
        scores: ``(B, N)`` or ``(N,)`` float reranker scores; ``B = 0`` gives an empty ``(0, N)``
            mask (``k`` is then checked against ``N``).
        k: number of items to select, ``1 <= k <=`` valid items of every row.
        mode: ``"l2x"`` (default), ``"subset"`` or ``"straight_through"``.
        tau: temperature > 0; ``tau -> 0`` with no noise gives the hard top-k mask (``"subset"``,
            ``"straight_through"``) or the top-1 one-hot (``"l2x"``, whose k draws then coincide).
        kappa: scale > 0 applied to the scores before the noise (sharpens the sampling distribution).
        generator: generator for the noise, on the scores' device.
        noise: explicit finite noise, ``(k, B, N)`` for ``"l2x"`` or ``(B, N)`` otherwise (for the
            1-D form drop ``B``); overrides ``generator``. Used for reproducible tests.
        mask: optional ``bool`` mask shaped like ``scores``; False items get (numerically) zero mass.
        add_noise: ``False`` for no noise. Deterministic, but not a top-``k`` relaxation for
            ``"l2x"``: its ``k`` draws then coincide, so the mask is the single softmax
            ``softmax(kappa * s / tau)``, which sums to 1 (top-1 as ``tau -> 0``). For a
            deterministic top-``k`` use ``"subset"`` / ``"straight_through"`` without noise, or
            :func:`hard_topk_mask`.

    Returns:
        Float mask shaped like ``scores``, in its dtype (float16 / bfloat16 scores are relaxed in
        float32 and cast back), with values in ``[0, 1]``; summing to ``k`` for ``"subset"`` and
        ``"straight_through"`` (forward), at most ``k`` for ``"l2x"``.

    Raises:
        ValueError: bad ``k``, ``tau``, ``kappa``, ``mode``, shapes, or non-finite scores or noise.
        TypeError: non-float scores or noise, or a non-bool mask.
    """
    if mode not in _MODES:
        raise ValueError(f"mode must be one of {_MODES}, got {mode!r}")
    s, valid, squeeze = _prepare(scores, mask)
    k = _check_k_valid(k, valid, mask)
    tau = check_positive("tau", tau)
    kappa = check_positive("kappa", kappa)
    scaled = s.to(work_dtype(s.dtype)) * kappa  # half precision: kappa * s / tau overflows float16
    draws = (k,) if mode == "l2x" else ()
    if noise is not None:
        g = _check_noise(noise, (*draws, *scores.shape), f" for mode {mode!r}")
        g = g.unsqueeze(-2) if squeeze else g
        g = g.to(dtype=scaled.dtype)
    elif add_noise:
        g = sample_gumbel((*draws, *s.shape), like=scaled, generator=generator)
    else:
        g = torch.zeros((*draws, *s.shape), dtype=scaled.dtype, device=s.device)

    if mode == "l2x":
        neg = torch.finfo(scaled.dtype).min / 4
        # (k, B, N): k independent Gumbel-softmax samples in one batched softmax
        logits = (scaled.unsqueeze(0) + g).masked_fill(~valid.unsqueeze(0), neg)
        out = torch.softmax(logits / tau, dim=-1).amax(dim=0)
    else:
        perturbed = scaled + g
        out = subset_relaxation(perturbed, valid, k, tau)
        if mode == "straight_through":
            hard = hard_topk_mask(perturbed.detach(), k, mask=valid)
            out = hard - out.detach() + out
    out = out.to(s.dtype)
    return out.squeeze(0) if squeeze else out


def attention_log_mask(mask: torch.Tensor, *, floor: float | None = None) -> torch.Tensor:
    """``log(mask)`` clamped to a finite floor, to add to attention logits.

    A document whose mask is 1 is attended as usual (bias 0); a mask of 0 becomes a large finite
    negative bias, which removes the document after the softmax without producing NaN in the
    backward pass.

    Args:
        mask: float tensor of any shape with values in ``[0, 1]``.
        floor: the smallest bias, a finite number ``<= 0`` within the dtype's range; defaults to
            ``finfo(dtype).min / 2`` (the half keeps room for adding the model's own causal bias
            without overflow).

    Returns:
        Tensor shaped like ``mask``, in its dtype; differentiable where ``mask > 0``. For float16 /
        bfloat16 masks the log is taken in float32 and cast back, so float16's subnormal values
        (down to 6e-8) keep their own log and gradient ``1 / mask``; the gradient itself is cast
        to float16 and is ``inf`` where ``upstream / mask`` exceeds 65504.

    Raises:
        ValueError: mask values outside ``[0, 1]``, or a ``floor`` above 0 (it would raise every
            bias to it) or below the dtype's range.
    """
    check_floating("mask", mask)
    if bool(((mask < 0) | (mask > 1) | torch.isnan(mask)).any()):
        raise ValueError("mask values must lie in [0, 1]")
    lowest = torch.finfo(mask.dtype).min
    if floor is not None:
        floor = check_real("floor", floor)  # numpy scalars too
        if not lowest <= floor <= 0:
            raise ValueError(f"floor must lie in [{lowest:.4g}, 0] for {mask.dtype}, got {floor}")
    low = lowest / 2 if floor is None else float(floor)
    work = work_dtype(mask.dtype)  # a clamp at float16's tiny (6.1e-5) froze all smaller values
    logm = torch.log(mask.to(work).clamp_min(torch.finfo(work).tiny)).clamp_min(low).to(mask.dtype)
    # exactly-zero entries get the floor itself (log(tiny) alone is only about -87 in fp32)
    return torch.where(mask > 0, logm, torch.full_like(logm, low))
