"""Second derivatives of soft_rank / soft_sort (double backward), and the ranks of tied values.

The ``"kl"`` backward used to reuse tensors saved in the forward pass outside the graph, so
``create_graph=True`` gave wrong Hessian-vector products (review 2026-12): the backward is now
made of differentiable ops of the saved input.
"""

from __future__ import annotations

import pytest
import torch

from rag_relax_plugins.core.softsort import soft_rank, soft_sort

OPS = {"soft_rank": soft_rank, "soft_sort": soft_sort}


def _separated(seed: int) -> torch.Tensor:
    # distinct, well-separated values: away from the kinks where the sort or the blocks change
    return (torch.randperm(8, generator=torch.Generator().manual_seed(seed)).to(torch.float64) * 0.7).view(2, 4)


@pytest.mark.parametrize("reg", ["l2", "kl"])
@pytest.mark.parametrize("descending", [False, True])
@pytest.mark.parametrize("op", sorted(OPS))
@pytest.mark.parametrize("strength", [0.8, 3.0])
def test_gradgradcheck(op, reg, descending, strength):
    fn = OPS[op]
    x = _separated(5).requires_grad_(True)
    assert torch.autograd.gradgradcheck(lambda t: fn(t, strength, reg, descending=descending), (x,))


@pytest.mark.parametrize("op", sorted(OPS))
def test_kl_hessian_vector_product_matches_finite_differences(op):
    fn = OPS[op]
    x = torch.tensor([[0.3, -0.2, 1.1, 0.9]], dtype=torch.float64, requires_grad=True)
    w = torch.tensor([[1.0, -2.0, 0.5, 3.0]], dtype=torch.float64)
    v = torch.tensor([[0.4, 1.0, -0.7, 0.2]], dtype=torch.float64)

    def grad_at(t: torch.Tensor) -> torch.Tensor:
        t = t.detach().requires_grad_()
        return torch.autograd.grad((w * fn(t, 2.0, "kl")).sum(), t)[0]

    (g,) = torch.autograd.grad((w * fn(x, 2.0, "kl")).sum(), x, create_graph=True)
    (hv,) = torch.autograd.grad((g * v).sum(), x)
    fd = (grad_at(x + 1e-6 * v) - grad_at(x - 1e-6 * v)) / 2e-6
    assert float(fd.abs().max()) > 0.04  # the case has curvature to get wrong
    torch.testing.assert_close(hv, fd, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("op", sorted(OPS))
def test_gradient_penalty_through_kl_matches_finite_differences(op):
    """A gradient penalty with a constant upstream gradient (the case ``once_differentiable`` would
    miss: no error, the penalty's dependence through the Jacobian silently dropped)."""
    fn = OPS[op]
    w = torch.tensor([[1.0, -2.0, 0.5, 3.0]], dtype=torch.float64)

    def penalty(t: torch.Tensor, create_graph: bool) -> torch.Tensor:
        (g,) = torch.autograd.grad((w * fn(t, 2.0, "kl")).sum(), t, create_graph=create_graph)
        return g.pow(2).sum() + t.sum()

    x = torch.tensor([[0.3, -0.2, 1.1, 0.9]], dtype=torch.float64, requires_grad=True)
    (got,) = torch.autograd.grad(penalty(x, True), x)
    e = torch.eye(4, dtype=torch.float64)
    fd = torch.stack([
        (penalty((x + 1e-6 * e[i]).detach().requires_grad_(), False)
         - penalty((x - 1e-6 * e[i]).detach().requires_grad_(), False)) / 2e-6
        for i in range(4)
    ]).view(1, 4).detach()
    assert float((fd - 1).abs().max()) > 0.01  # the penalty does depend on x
    torch.testing.assert_close(got, fd, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("reg", ["l2", "kl"])
def test_tied_values_get_their_average_rank(reg):
    """As documented: ties are pooled (average rank), not broken by position."""
    r = soft_rank(torch.tensor([1.0, 1.0, 2.0, 0.0], dtype=torch.float64), 1e-6, reg)
    torch.testing.assert_close(r, torch.tensor([2.5, 2.5, 4.0, 1.0], dtype=torch.float64), atol=1e-6, rtol=0)
    assert "stable sort" not in (soft_rank.__doc__ or "") and "average rank" in (soft_rank.__doc__ or "")
