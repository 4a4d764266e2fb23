"""The projection head of the isotropic Gaussian embedder: a two-layer MLP over backbone sentence
features, started at a geometry-preserving identity (see :class:`ProjectionHead`). Used by
:class:`~rag_relax_plugins.embedders.gaussian.GaussianEmbedder` (which re-exports it)."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["ProjectionHead"]


class ProjectionHead(nn.Module):
    """``Linear(in, hidden) -> GELU -> Dropout -> Linear(hidden, out)``, un-normalised output.

    ``init="identity"`` (default) starts from ``W1 = [I; -I]`` and ``W2 = s [P, -P]``:
    ``GELU(x) - GELU(-x) = x`` gives ``s P x`` exactly (without dropout), where ``P`` is a seeded
    semi-orthogonal ``(out, in)`` matrix (the identity when ``out == in``) and ``s = sqrt(in)``
    scales unit-norm backbone vectors to unit per-dimension variance. For ``out >= in`` ``P`` has
    orthonormal columns, an isometry: the map preserves the backbone's geometry (distances and
    angles up to the factor ``s``). For ``out < in`` ``P`` has orthonormal *rows*: it is a
    projection onto ``out`` random directions, which loses information and changes rankings. Training then moves away from a good retriever instead of from a
    random projection (which, on a few thousand pairs, loses most of the pre-trained quality).
    This is a departure from RAGCUN, whose head starts from PyTorch's default (random) init;
    ``init="random"`` reproduces that.

    Args:
        in_dim: backbone dimension ``H``.
        hidden_dim: hidden width (``>= 2 H`` for the identity init).
        out_dim: output dimension ``D``.
        dropout: dropout probability between the layers.
        init: ``"identity"`` or ``"random"``.
    """

    def __init__(self, in_dim: int, hidden_dim: int, out_dim: int, dropout: float, init: str = "identity") -> None:
        super().__init__()
        self.in_dim = in_dim
        self.net = nn.Sequential(
            nn.Linear(in_dim, hidden_dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden_dim, out_dim)
        )
        if init == "identity":
            self._identity_init(in_dim, hidden_dim, out_dim)
        elif init != "random":
            raise ValueError(f"init must be 'identity' or 'random', got {init!r}")

    @torch.no_grad()
    def _identity_init(self, in_dim: int, hidden_dim: int, out_dim: int) -> None:
        if hidden_dim < 2 * in_dim:
            raise ValueError(f"identity init needs hidden_dim >= 2 * in_dim ({2 * in_dim}), got {hidden_dim}")
        g = torch.Generator().manual_seed(0)
        if out_dim == in_dim:
            proj = torch.eye(in_dim)
        else:  # semi-orthogonal (out, in): orthonormal rows or columns
            q, _ = torch.linalg.qr(torch.randn(max(in_dim, out_dim), min(in_dim, out_dim), generator=g))
            proj = q.T if out_dim < in_dim else q
        eye = torch.eye(in_dim)
        lin1, lin2 = self.net[0], self.net[3]
        if not isinstance(lin1, nn.Linear) or not isinstance(lin2, nn.Linear):  # pragma: no cover
            raise TypeError("unexpected head layout")
        lin1.weight.zero_()
        lin1.weight[:in_dim] = eye
        lin1.weight[in_dim : 2 * in_dim] = -eye
        lin1.bias.zero_()
        lin2.weight.zero_()
        scale = in_dim**0.5
        lin2.weight[:, :in_dim] = scale * proj
        lin2.weight[:, in_dim : 2 * in_dim] = -scale * proj
        lin2.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, in_dim) x float -> (B, out_dim) x float``."""
        return self.net(x)
