"""Token vectors of the MaxSim reranker: texts packed back to back without padding, and the
projection head (orthonormal-initialised, bias-free ``Linear`` then L2 normalisation) that maps
backbone token vectors into the scoring space. Used by :mod:`rag_relax_plugins.rerankers.maxsim`
and its training (:mod:`rag_relax_plugins.training.maxsim_train`)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from rag_relax_plugins.embedders.base import TokenEmbeddings

__all__ = ["MaxSimHead", "PackedTokens", "pack_tokens"]


@dataclass(frozen=True)
class PackedTokens:
    """Token vectors of ``N`` texts stored back to back.

    Attributes:
        tokens: ``(T, D) x float`` every token of text 0, then text 1, ...
        offsets: ``(N + 1,) x long``; text ``n`` owns rows ``offsets[n]:offsets[n + 1]``.
    """

    tokens: torch.Tensor
    offsets: torch.Tensor

    @property
    def lengths(self) -> torch.Tensor:
        """``(N,) x long`` tokens per text."""
        return self.offsets[1:] - self.offsets[:-1]


def pack_tokens(emb: TokenEmbeddings) -> PackedTokens:
    """Drop the padding of ``(N, L, D)`` token embeddings.

    Args:
        emb: padded ``(N, L, D)`` embeddings with an ``(N, L) x bool`` mask (real tokens may sit
            anywhere in a row; their order is kept).

    Returns:
        :class:`PackedTokens` with ``T = mask.sum()`` rows.
    """
    mask = emb.mask
    tokens = emb.embeddings[mask]  # (T, D): row-major order = text by text, token by token
    lengths = mask.sum(dim=1)
    offsets = torch.cat([lengths.new_zeros(1), torch.cumsum(lengths, 0)])
    return PackedTokens(tokens=tokens, offsets=offsets)


class MaxSimHead(nn.Module):
    """Optional bias-free linear projection followed by L2 normalisation of token vectors.

    Args:
        in_dim: backbone token size ``D``.
        out_dim: projected size ``d``; ``None`` keeps ``D`` (normalisation only).
        seed: seed of the orthonormal initialisation (a ``torch.Generator``).
    """

    def __init__(self, in_dim: int, out_dim: int | None, seed: int = 0) -> None:
        super().__init__()
        self.in_dim = in_dim
        self.out_dim = in_dim if out_dim is None else out_dim
        self.proj: nn.Linear | None = None
        if out_dim is not None:
            self.proj = nn.Linear(in_dim, out_dim, bias=False)
            gen = torch.Generator().manual_seed(seed)
            w = torch.randn(max(in_dim, out_dim), min(in_dim, out_dim), generator=gen)
            q, _ = torch.linalg.qr(w)  # orthonormal columns
            with torch.no_grad():  # rows orthonormal (out <= in): cosines roughly preserved
                self.proj.weight.copy_(q.T if out_dim <= in_dim else q)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Project and normalise.

        Args:
            x: ``(..., D) x float`` token vectors.

        Returns:
            ``(..., d) x float`` unit vectors (a zero vector stays zero).
        """
        if self.proj is not None:
            x = self.proj(x.to(self.proj.weight.dtype))
        return F.normalize(x, dim=-1)
