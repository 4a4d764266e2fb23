"""Backbones of the Gaussian embedder: a local sentence-transformers model, or the hashing double."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

__all__ = ["EncoderBackbone", "default_backbone_path", "embedding_dim", "load_sentence_transformer", "transformer_parts"]


def default_backbone_path() -> str:
    """Folder of the offline MiniLM (needs the ``st`` extra)."""
    from rag_relax_plugins.embedders.sentence_transformer import default_model_path

    return str(default_model_path())


def transformer_parts(backbone: Any) -> tuple[nn.Module | None, list[nn.Module]]:
    """The token-embedding module and the transformer blocks of a sentence-transformers model."""
    try:
        auto = getattr(backbone[0], "auto_model", None)
    except (TypeError, IndexError, KeyError):
        return None, []
    if auto is None:
        return None, []
    emb = getattr(auto, "embeddings", None)
    enc = getattr(auto, "encoder", None)
    layers = getattr(enc, "layer", None) or getattr(auto, "layers", None) or []
    return emb, list(layers)


class EncoderBackbone(nn.Module):
    """Wraps a parameter-free ``TextEncoder`` (the hashing test double) as a frozen backbone.

    Selected with ``GaussianConfig(backbone="hashing:DIM[:SEED]")``; meant for fast tests.
    """

    def __init__(self, encoder: Any, spec: str) -> None:
        super().__init__()
        self.encoder = encoder
        self.spec = spec
        self.max_seq_length: int | None = None

    def get_embedding_dimension(self) -> int:
        """Backbone dimension ``H``."""
        return int(self.encoder.dim)

    def encode(self, texts: list[str], **_: Any) -> torch.Tensor:
        """``(N, H) x float32`` unit-norm rows (like MiniLM's output)."""
        return self.encoder.encode(list(texts), normalize=True).float()

    @classmethod
    def from_spec(cls, spec: str) -> EncoderBackbone:
        """Build from ``"hashing:DIM[:SEED]"``."""
        parts = spec.split(":")
        if parts[0] != "hashing" or len(parts) not in (2, 3) or not all(p.isdigit() for p in parts[1:]):
            raise ValueError(f"backbone spec must look like 'hashing:DIM[:SEED]', got {spec!r}")
        from rag_relax_plugins.embedders.hashing import HashingEncoder

        dim, seed = int(parts[1]), int(parts[2]) if len(parts) == 3 else 0
        return cls(HashingEncoder(dim=dim, seed=seed), spec)


def load_sentence_transformer(backbone: str | None) -> Any:
    """A local sentence-transformers model on the CPU; hub ids are refused (never downloads).

    Raises:
        FileNotFoundError / ValueError: as :func:`~.sentence_transformer.resolve_model_path` and
            :func:`~.sentence_transformer.load_local_model`.
    """
    from rag_relax_plugins.embedders.sentence_transformer import (
        load_local_model,
        resolve_model_path,
    )

    return load_local_model(resolve_model_path(backbone), "cpu")


def embedding_dim(backbone: Any) -> int:
    fn = getattr(backbone, "get_embedding_dimension", None) or backbone.get_sentence_embedding_dimension
    return int(fn())
