"""Isotropy regularisers for embeddings: SIGReg (Epps-Pulley), covariance matching, variance.

- :func:`sigreg` is SIGReg from LeJEPA (Balestriero & LeCun, "LeJEPA: Provable and Scalable
  Self-Supervised Learning Without the Heuristics", 2025): project the batch on random unit
  directions and test each 1-D projection against N(0, 1) with the Epps-Pulley statistic
  (Epps & Pulley, Biometrika 1983), i.e. the weighted L2 distance between the empirical and the
  standard-normal characteristic functions, integrated with the trapezoid rule.
- :func:`covariance_isotropy_penalty` is the "isotropy" penalty of RAGCUN (a Frobenius distance
  between the batch covariance and the identity, plus the squared mean), kept as a baseline.
- :func:`variance_regularization` is the hinge on per-dimension std of VICReg (Bardes et al. 2022).
- :class:`PredictorHead` and :func:`predictor_loss`: a query -> document predictor trained
  against a stop-gradient target (as in BYOL / JEPA).

Departures from LeJEPA: the empirical characteristic function is computed per rank (only the
slices are synchronised across ``torch.distributed`` ranks); the paper averages it over the
global batch.
"""

from __future__ import annotations

import torch
from torch import nn

from rag_relax_plugins.core.device import work_dtype
from rag_relax_plugins.core.validation import (
    check_count,
    check_finite,
    check_floating,
    check_ndim,
    check_positive,
)

__all__ = [
    "PredictorHead",
    "covariance_isotropy_penalty",
    "effective_rank",
    "epps_pulley",
    "epps_pulley_null_mean",
    "predictor_loss",
    "sample_slices",
    "sigreg",
    "variance_regularization",
]


def sample_slices(
    dim: int,
    num_slices: int = 256,
    *,
    seed: int | None = None,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Random unit-norm directions, identical on every ``torch.distributed`` rank.

    Directions are drawn on the CPU from ``generator`` (or a generator seeded with ``seed``), then
    moved to ``device``. When a process group is initialised, rank 0's directions are broadcast
    so all ranks use the same slices.

    Args:
        dim: embedding dimension ``D`` (>= 1).
        num_slices: number of directions ``S`` (>= 1).
        seed: seed for a fresh generator (ignored when ``generator`` is given); ``None`` means
            0: the directions are deterministic unless a ``generator`` is passed.
        generator: a CPU ``torch.Generator``.
        device: where the result lives.
        dtype: floating dtype of the result.

    Returns:
        ``(D, S) x float``: columns of unit norm.
    """
    dim = check_count("dim", dim, 1)  # ints (numpy ones too), a named error for 2.0 or True
    num_slices = check_count("num_slices", num_slices, 1)
    if generator is None:
        generator = torch.Generator().manual_seed(0 if seed is None else int(seed))
    a = torch.randn(dim, num_slices, generator=generator, dtype=torch.float64)
    a = a / a.norm(dim=0, keepdim=True)  # unit columns, (D, S)
    a = a.to(dtype=dtype, device=device)
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized():
        dist.broadcast(a, src=0)
    return a


def _check_quadrature(num_points: object, t_max: object) -> tuple[int, float]:
    """``num_points`` as an int ``>= 2`` and ``t_max`` as a finite float ``> 0``, named when wrong."""
    return check_count("num_points", num_points, 2), check_positive("t_max", t_max)


def _trapezoid_weights(num_points: int, t_max: float, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Integration points ``t`` on ``[0, t_max]`` and trapezoid weights, both ``(T,)``."""
    t = torch.linspace(0.0, t_max, num_points, dtype=like.dtype, device=like.device)
    w = torch.full_like(t, t_max / (num_points - 1))
    w[0] = w[-1] = w[0] / 2
    return t, w


_EP_CHUNK_ELEMENTS = 1 << 24  # (rows, slices, points) elements epps_pulley builds at once


def epps_pulley(z: torch.Tensor, *, num_points: int = 17, t_max: float = 3.0) -> torch.Tensor:
    """Epps-Pulley statistic of each column of ``z`` against N(0, 1).

    ``EP = N * integral_{-t_max}^{t_max} |phi_N(t) - exp(-t^2/2)|^2 exp(-t^2/2) dt`` where
    ``phi_N`` is the empirical characteristic function; the integrand is even, so it is
    integrated on ``[0, t_max]`` and doubled.

    Args:
        z: ``(N, S) x float``: ``N`` samples of ``S`` 1-D projections.
        num_points: trapezoid points, an int ``>= 2``.
        t_max: upper integration limit, a finite number ``> 0``.

    Returns:
        ``(S,) x float`` statistics; their null expectation is :func:`epps_pulley_null_mean`.

    Raises:
        TypeError: ``z`` not a floating tensor, ``t_max`` not a number.
        ValueError: ``z`` not 2-D, with fewer than 2 samples or holding NaN / inf,
            ``num_points`` not an int ``>= 2``, ``t_max <= 0`` or not finite.
    """
    z = check_floating("z", z)
    check_ndim("z", z, 2)
    check_finite("z", z)  # NaN gave a NaN statistic, silently (sigreg refused it)
    num_points, t_max = _check_quadrature(num_points, t_max)
    out_dtype = z.dtype
    z = z.to(work_dtype(z.dtype))  # N * |phi_N - phi|^2 with phi_N rounded to bf16 was biased upwards
    n = z.shape[0]
    if n < 2:
        raise ValueError(f"z must hold at least 2 samples, got shape {tuple(z.shape)}")
    t, w = _trapezoid_weights(num_points, t_max, z)
    grad = torch.is_grad_enabled() and z.requires_grad  # autograd keeps every chunk anyway
    if grad or n * z.shape[1] * t.shape[0] <= _EP_CHUNK_ELEMENTS:  # a training batch: one pass
        tz = z.unsqueeze(-1) * t  # (N, S, T)
        re = torch.cos(tz).mean(dim=0)  # (S, T) real part of the empirical CF
        im = torch.sin(tz).mean(dim=0)  # (S, T) imaginary part
    else:  # rows a chunk at a time: (N, S, T) took ~35 kB per row (34 GB for a 1M-document evaluation)
        rows = max(1, _EP_CHUNK_ELEMENTS // (z.shape[1] * t.shape[0]))
        acc = torch.promote_types(z.dtype, torch.float32)  # half-precision sums past 65k rows overflowed
        re = im = z.new_zeros(z.shape[1], t.shape[0], dtype=acc)
        for start in range(0, n, rows):
            tz = z[start : start + rows].unsqueeze(-1) * t
            re, im = re + torch.cos(tz).sum(dim=0, dtype=acc), im + torch.sin(tz).sum(dim=0, dtype=acc)
        re, im = (re / n).to(z.dtype), (im / n).to(z.dtype)
    gauss = torch.exp(-0.5 * t * t)  # (T,) CF of N(0, 1), also the weight
    err = (re - gauss) ** 2 + im**2  # (S, T)
    return (2.0 * n * (err * gauss * w).sum(dim=-1)).to(out_dtype)


def epps_pulley_null_mean(*, num_points: int = 17, t_max: float = 3.0) -> float:
    """Expectation of :func:`epps_pulley` for i.i.d. N(0, 1) samples (same quadrature).

    ``E|phi_N(t) - phi(t)|^2 = (1 - exp(-t^2)) / N``, so the expectation does not depend on ``N``.
    """
    num_points, t_max = _check_quadrature(num_points, t_max)
    t, w = _trapezoid_weights(num_points, t_max, torch.zeros((), dtype=torch.float64))
    return float(2.0 * ((1 - torch.exp(-t * t)) * torch.exp(-0.5 * t * t) * w).sum())


def sigreg(
    x: torch.Tensor,
    *,
    num_slices: int = 256,
    num_points: int = 17,
    t_max: float = 3.0,
    seed: int | None = 0,
    slices: torch.Tensor | None = None,
) -> torch.Tensor:
    """SIGReg: mean Epps-Pulley statistic of random 1-D projections of ``x`` (LeJEPA).

    Small when the rows of ``x`` look like samples of an isotropic standard Gaussian, large for
    collapsed, shifted or anisotropic batches.

    Args:
        x: ``(N, D) x float`` embeddings (N >= 2).
        num_slices: number of random directions when ``slices`` is not given.
        num_points: trapezoid points on ``[0, t_max]``.
        t_max: upper integration limit.
        seed: seed of the directions (vary it per step for fresh slices; the same seed on every
            rank gives the same slices, and with a process group rank 0's slices are broadcast);
            ``None`` means 0, not fresh random directions.
        slices: ``(D, S) x float`` directions to use instead of sampling.

    Returns:
        ``() x float`` the mean statistic, differentiable w.r.t. ``x``.

    Example:
        >>> loss = sigreg(torch.randn(512, 64))  # close to epps_pulley_null_mean()
    """
    x = check_floating("x", x)
    check_ndim("x", x, 2)
    check_finite("x", x)
    work = work_dtype(x.dtype)
    if slices is None:
        slices = sample_slices(x.shape[1], num_slices, seed=seed, device=x.device, dtype=work)
    elif slices.dim() != 2 or slices.shape[0] != x.shape[1] or slices.shape[1] == 0:  # S = 0: a NaN mean
        raise ValueError(f"slices must have shape (D={x.shape[1]}, S) with S >= 1, got {tuple(slices.shape)}")
    z = x.to(work) @ slices.to(dtype=work, device=x.device)  # (N, S) projections
    return epps_pulley(z, num_points=num_points, t_max=t_max).mean().to(x.dtype)


def covariance_isotropy_penalty(x: torch.Tensor) -> torch.Tensor:
    """RAGCUN's covariance-matching penalty: ``||Cov(x) - I||_F^2 / D + ||mean(x)||^2``.

    Args:
        x: ``(N, D) x float`` embeddings (N >= 2).

    Returns:
        ``() x float``; zero for a batch with zero mean and identity covariance.
    """
    x = check_floating("x", x)
    check_ndim("x", x, 2)
    check_finite("x", x)
    if x.shape[0] < 2:
        raise ValueError(f"x must hold at least 2 rows, got shape {tuple(x.shape)}")
    xw = x.to(work_dtype(x.dtype))  # xc.T @ xc sums N products: past 65504 in float16
    mu = xw.mean(dim=0)
    xc = xw - mu
    cov = xc.T @ xc / (x.shape[0] - 1)  # (D, D)
    eye = torch.eye(x.shape[1], dtype=xw.dtype, device=x.device)
    return (((cov - eye) ** 2).sum() / x.shape[1] + (mu**2).sum()).to(x.dtype)


def variance_regularization(x: torch.Tensor, target_std: float = 1.0, eps: float = 1e-4) -> torch.Tensor:
    """Hinge pushing every dimension's std up to ``target_std`` (VICReg's variance term).

    Args:
        x: ``(N, D) x float`` embeddings (N >= 2).
        target_std: the std each dimension should at least reach (> 0).
        eps: added to the variance before the square root.

    Returns:
        ``() x float``: ``mean_d relu(target_std - sqrt(var_d + eps))``.
    """
    x = check_floating("x", x)
    check_ndim("x", x, 2)
    check_finite("x", x)
    if x.shape[0] < 2:
        raise ValueError(f"x must hold at least 2 rows, got shape {tuple(x.shape)}")
    if not target_std > 0:
        raise ValueError(f"target_std must be > 0, got {target_std}")
    if not eps >= 0:  # a negative eps gave NaN (sqrt of a negative variance)
        raise ValueError(f"eps must be >= 0, got {eps}")
    std = torch.sqrt(x.var(dim=0) + eps)
    return torch.relu(target_std - std).mean()


def effective_rank(x: torch.Tensor) -> torch.Tensor:
    """Effective rank (Roy & Vetterli 2007): ``exp`` of the entropy of normalised singular values.

    Args:
        x: ``(N, D) x float`` embeddings; centred before the SVD.

    Returns:
        ``() x float`` in ``[1, min(N, D)]``.
    """
    x = check_floating("x", x)
    check_ndim("x", x, 2)
    check_finite("x", x)
    xf = x.to(work_dtype(x.dtype))  # no half-precision SVD on CPU
    s = torch.linalg.svdvals(xf - xf.mean(dim=0))
    p = s / s.sum().clamp_min(torch.finfo(s.dtype).tiny)
    p = p[p > 0]
    return torch.exp(-(p * p.log()).sum()).to(x.dtype)


class PredictorHead(nn.Module):
    """A small MLP mapping query embeddings onto document embeddings (``D -> hidden -> D``)."""

    def __init__(self, dim: int, hidden_dim: int | None = None) -> None:
        super().__init__()
        if dim < 1:
            raise ValueError(f"dim must be >= 1, got {dim}")
        hidden = hidden_dim or dim
        self.net = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, D) x float -> (B, D) x float``."""
        return self.net(x)


def predictor_loss(predicted: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared distance between predictions and a stop-gradient target.

    Args:
        predicted: ``(B, D) x float`` predictor outputs.
        target: ``(B, D) x float`` document embeddings; no gradient flows into them.

    Returns:
        ``() x float``.
    """
    if predicted.shape != target.shape:
        raise ValueError(f"predicted and target must have the same shape, got {tuple(predicted.shape)} and {tuple(target.shape)}")
    return ((predicted - target.detach()) ** 2).sum(dim=-1).mean()


