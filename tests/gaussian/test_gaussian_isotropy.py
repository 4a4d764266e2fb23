"""SIGReg, covariance penalty, variance regulariser, predictor: values, gradients, limits."""

from __future__ import annotations

import pytest
import torch

from rag_relax_plugins.core.isotropy import (
    PredictorHead,
    covariance_isotropy_penalty,
    effective_rank,
    epps_pulley,
    epps_pulley_null_mean,
    predictor_loss,
    sample_slices,
    sigreg,
    variance_regularization,
)
from rag_relax_plugins.training.gaussian_train import TrainConfig, lr_at, training_loss


def _g(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_sigreg_near_null_for_standard_normal() -> None:
    x = torch.randn(2048, 32, generator=_g())
    stat = sigreg(x, seed=1).item()
    null = epps_pulley_null_mean()
    assert 0.6 * null < stat < 1.5 * null


@pytest.mark.parametrize(
    "make",
    [
        lambda g: torch.zeros(512, 16) + 1e-3 * torch.randn(512, 16, generator=g),  # collapsed
        lambda g: torch.randn(512, 16, generator=g) * torch.linspace(0.05, 4.0, 16),  # anisotropic
        lambda g: torch.randn(512, 16, generator=g) + 2.0,  # shifted
        lambda g: torch.randn(512, 1, generator=g).expand(512, 16).clone(),  # rank one
    ],
)
def test_sigreg_large_for_non_gaussian(make) -> None:
    assert sigreg(make(_g()), seed=0).item() > 10 * epps_pulley_null_mean()


def test_epps_pulley_matches_closed_form_for_constant() -> None:
    # all samples at 0: phi_N(t) = 1, so EP = 2N * sum w (1 - e^{-t^2/2})^2 e^{-t^2/2}
    z = torch.zeros(10, 1, dtype=torch.float64)
    t = torch.linspace(0, 3, 17, dtype=torch.float64)
    w = torch.full_like(t, 3 / 16)
    w[0] = w[-1] = 3 / 32
    g = torch.exp(-0.5 * t * t)
    expected = 2 * 10 * ((1 - g) ** 2 * g * w).sum()
    assert torch.allclose(epps_pulley(z)[0], expected)


def test_gradcheck_losses() -> None:
    x = torch.randn(12, 5, dtype=torch.float64, generator=_g(), requires_grad=True)
    slices = sample_slices(5, 8, seed=3, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda a: sigreg(a, slices=slices, num_points=5), (x,))
    assert torch.autograd.gradcheck(covariance_isotropy_penalty, (x,))
    assert torch.autograd.gradcheck(lambda a: variance_regularization(a, target_std=2.0), (x,))
    y = torch.randn(12, 5, dtype=torch.float64, generator=_g(1), requires_grad=True)
    assert torch.autograd.gradcheck(lambda a: predictor_loss(a, y.detach()), (x,))
    cfg = TrainConfig(train_file="-", isotropy="sigreg", lambda_isotropy=0.1, num_slices=4, lambda_reg=0.1)
    q = torch.randn(4, 3, dtype=torch.float64, generator=_g(2), requires_grad=True)
    d = torch.randn(4, 3, dtype=torch.float64, generator=_g(3), requires_grad=True)
    # training_loss computes in float32, which gradcheck cannot take (its float64 check of the
    # same objective is test_gradcheck_training_objective): here, a finite, non-zero gradient
    loss, parts = training_loss(q, d, None, cfg, step=0)
    loss.backward()
    assert set(parts) == {"contrastive", "isotropy", "variance"}
    assert q.grad is not None and torch.isfinite(q.grad).all() and q.grad.abs().sum() > 0


def test_predictor_stop_gradient() -> None:
    pred = torch.randn(4, 3, requires_grad=True)
    target = torch.randn(4, 3, requires_grad=True)
    predictor_loss(pred, target).backward()
    assert target.grad is None and pred.grad is not None
    assert PredictorHead(3)(pred).shape == (4, 3)


def test_covariance_penalty_zero_for_whitened() -> None:
    x = torch.randn(256, 4, dtype=torch.float64, generator=_g())
    x = x - x.mean(0)
    evals, evecs = torch.linalg.eigh(x.T @ x / 255)
    white = x @ evecs @ torch.diag(evals.rsqrt()) @ evecs.T
    assert covariance_isotropy_penalty(white).item() < 1e-10
    assert covariance_isotropy_penalty(3 * white).item() > 1.0


def test_variance_regularization_hinge() -> None:
    x = torch.randn(512, 8, generator=_g()) * 3
    assert variance_regularization(x, target_std=1.0).item() == 0.0
    assert variance_regularization(0.1 * x, target_std=1.0).item() > 0.5


def test_slices_seeded_unit_norm() -> None:
    a, b, c = sample_slices(16, 32, seed=5), sample_slices(16, 32, seed=5), sample_slices(16, 32, seed=6)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert torch.allclose(a.norm(dim=0), torch.ones(32), atol=1e-6)


def test_effective_rank_limits() -> None:
    assert effective_rank(torch.randn(2000, 8, generator=_g())).item() > 7.5
    assert effective_rank(torch.randn(100, 1, generator=_g()).expand(100, 8)).item() < 1.01


def test_bad_input() -> None:
    with pytest.raises(ValueError, match="x"):
        sigreg(torch.randn(5))
    with pytest.raises(ValueError, match="at least 2"):
        epps_pulley(torch.randn(1, 3))
    with pytest.raises(ValueError, match="slices"):
        sigreg(torch.randn(8, 3), slices=torch.randn(4, 2))
    with pytest.raises(ValueError, match="num_slices"):
        sample_slices(3, 0)
    with pytest.raises(ValueError, match=r"finite|NaN|nan"):
        sigreg(torch.tensor([[float("nan"), 0.0], [0.0, 1.0]]))


def test_lr_schedule_pure_per_step() -> None:
    lrs = [lr_at(s, warmup_steps=4, total_steps=10) for s in range(12)]
    assert lrs[:4] == [0.2, 0.4, 0.6, 0.8]
    assert lrs[4] == 1.0 and lrs[9] < lrs[5] and lrs[10] == 0.0 and lrs[11] == 0.0
    assert lrs == [lr_at(s, warmup_steps=4, total_steps=10) for s in range(12)]


def _sync_worker(rank: int, path: str, out: str) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{path}", rank=rank, world_size=2)
    s = sample_slices(8, 4, seed=100 + rank)  # different seeds: rank 0's slices must win
    torch.save(s, f"{out}/slices_{rank}.pt")
    dist.destroy_process_group()


def test_slices_synchronised_across_ranks(tmp_path) -> None:
    import torch.multiprocessing as mp

    # fork: the children reuse the imported torch (spawn would re-import it: seconds per process)
    mp.start_processes(_sync_worker, args=(str(tmp_path / "store"), str(tmp_path)), nprocs=2, join=True, start_method="fork")
    s0 = torch.load(tmp_path / "slices_0.pt", weights_only=True)
    s1 = torch.load(tmp_path / "slices_1.pt", weights_only=True)
    assert torch.equal(s0, s1)
    assert torch.equal(s0, sample_slices(8, 4, seed=100))


def _epps_pulley_reference(z: torch.Tensor, t_max: float = 3.0, num_points: int = 17) -> torch.Tensor:
    """Brute force: complex empirical CF per slice, trapezoid over the symmetric grid [-t_max, t_max]."""
    t = torch.linspace(-t_max, t_max, 2 * num_points - 1, dtype=torch.float64)
    out = []
    for s in range(z.shape[1]):
        ecf = torch.stack([torch.exp(1j * tt * z[:, s].to(torch.complex128)).mean() for tt in t])
        phi = torch.exp(-0.5 * t * t)
        out.append(z.shape[0] * torch.trapezoid((ecf - phi).abs() ** 2 * phi, t))
    return torch.stack(out)


def test_epps_pulley_matches_brute_force() -> None:
    z = torch.randn(40, 3, dtype=torch.float64, generator=_g(7)) * torch.tensor([0.5, 1.0, 2.0], dtype=torch.float64) + 0.3
    assert torch.allclose(epps_pulley(z), _epps_pulley_reference(z), rtol=1e-10, atol=1e-12)
    x = torch.randn(40, 6, dtype=torch.float64, generator=_g(8))
    slices = sample_slices(6, 5, seed=2, dtype=torch.float64)
    assert torch.allclose(sigreg(x, slices=slices), _epps_pulley_reference(x @ slices).mean(), rtol=1e-10)


def test_epps_pulley_of_many_rows_is_computed_in_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    """The (N, S, T) phase tensor took ~35 kB per row: 1.4 GB for a 40k-document evaluation's
    diagnostics (review 2026-12-05). Past a size the rows go a chunk at a time, same values and
    gradients; a training batch is computed in one pass as before."""
    import rag_relax_plugins.core.isotropy as iso

    z = (torch.randn(103, 4, dtype=torch.float64, generator=_g(9)) * 1.3 + 0.2).requires_grad_()
    whole = epps_pulley(z)
    (g_whole,) = torch.autograd.grad(whole.sum(), z)
    monkeypatch.setattr(iso, "_EP_CHUNK_ELEMENTS", 4 * 17 * 10)  # 10 rows a chunk, the last one 3
    chunked = epps_pulley(z.detach())
    assert torch.allclose(chunked, whole, rtol=1e-12) and torch.allclose(chunked, _epps_pulley_reference(z.detach()))
    with_grad = epps_pulley(z)  # a training loss keeps every chunk for backward: one pass, bit for bit
    assert torch.equal(with_grad, whole) and torch.equal(torch.autograd.grad(with_grad.sum(), z)[0], g_whole)
    monkeypatch.setattr(iso, "_EP_CHUNK_ELEMENTS", 1)  # one row a chunk
    assert torch.allclose(epps_pulley(z.detach()), whole, rtol=1e-12)
    # half precision: the chunks' sums are kept in float32 (float16 ones passed 65504 and gave inf)
    half = torch.randn(70000, 3, generator=_g(10)).half()
    for dtype in (torch.float16, torch.bfloat16):
        monkeypatch.setattr(iso, "_EP_CHUNK_ELEMENTS", 1 << 30)
        one_pass = epps_pulley(half.to(dtype))  # (its mean reduces in float32)
        monkeypatch.setattr(iso, "_EP_CHUNK_ELEMENTS", 3 * 17 * 5000)
        got = epps_pulley(half.to(dtype))
        assert got.dtype == dtype and torch.isfinite(got).all()
        assert torch.allclose(got.float(), one_pass.float(), rtol=1e-2), (dtype, got, one_pass)
    assert torch.allclose(epps_pulley(half.half()).double(), epps_pulley(half.double()), rtol=0.05, atol=0.05)


def test_sigreg_null_mean_matches_monte_carlo() -> None:
    stats = torch.stack([sigreg(torch.randn(256, 16, generator=_g(s)), seed=s) for s in range(20)])
    assert abs(stats.mean().item() - epps_pulley_null_mean()) < 0.1 * epps_pulley_null_mean()


@pytest.mark.parametrize(("loss", "isotropy", "geometry"), [("infonce", "sigreg", "euclidean"), ("triplet", "covariance", "inner_product"), ("infonce", "covariance", "inner_product")])
def test_gradcheck_training_objective(loss: str, isotropy: str, geometry: str) -> None:
    cfg = TrainConfig(train_file="-", loss=loss, isotropy=isotropy, lambda_isotropy=0.1, num_slices=4, lambda_reg=0.1, target_std=2.0)
    q = torch.randn(4, 3, dtype=torch.float64, generator=_g(2), requires_grad=True)
    d = torch.randn(4, 3, dtype=torch.float64, generator=_g(3), requires_grad=True)
    n = torch.randn(4, 3, dtype=torch.float64, generator=_g(4), requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b, c: training_loss(a, b, c, cfg, 0, geometry=geometry)[0], (q, d, n))
    assert training_loss(q, d, n, cfg, 0, geometry=geometry)[0].dtype == torch.float64


def test_multiple_hard_negatives() -> None:
    q, d = torch.randn(4, 3, generator=_g(1)), torch.randn(4, 3, generator=_g(2))
    n = torch.randn(4, 2, 3, generator=_g(3))
    for loss in ("infonce", "triplet"):
        cfg = TrainConfig(train_file="-", loss=loss, isotropy="covariance", lambda_isotropy=0.1)
        one = training_loss(q, d, n[:, 0], cfg, 0)[0]
        assert torch.allclose(one, training_loss(q, d, n[:, :1], cfg, 0)[0])
        assert not torch.allclose(one, training_loss(q, d, n, cfg, 0)[0])
    with pytest.raises(ValueError, match="neg"):
        training_loss(q, d, torch.randn(3, 3), cfg, 0)
