"""Configuration of the isotropic Gaussian embedder (a frozen dataclass saved as ``config.json``)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from rag_relax_plugins.core.config_dict import DictConfig, plain_scalars
from rag_relax_plugins.core.scalars import check_int

__all__ = ["FORMAT_VERSION", "FREEZE_MODES", "GEOMETRIES", "HEAD_INITS", "GaussianConfig"]

FORMAT_VERSION = 1
GEOMETRIES = ("euclidean", "inner_product")
FREEZE_MODES = ("none", "all", "first_n")
HEAD_INITS = ("identity", "random")


@dataclass(frozen=True)
class GaussianConfig(DictConfig):
    """Everything needed to rebuild a :class:`~rag_relax_plugins.embedders.gaussian.GaussianEmbedder`.

    Attributes:
        backbone: local sentence-transformers folder; ``None`` means the offline MiniLM package;
            ``"hashing:DIM[:SEED]"`` selects the model-free hashing encoder (a frozen test double).
        output_dim: dimension ``D`` of the projection head's output (>= 1).
        hidden_dim: hidden width of the head; ``None`` uses twice the backbone dimension (which
            the identity initialisation needs).
        dropout: dropout between the two head layers, in ``[0, 1)``.
        head_init: ``"identity"`` (geometry-preserving start, see ``ProjectionHead``) or ``"random"``.
        freeze: ``"none"``, ``"all"`` (whole backbone) or ``"first_n"`` (token embeddings plus
            the first ``freeze_layers`` transformer layers).
        freeze_layers: number of early layers frozen when ``freeze == "first_n"``.
        geometry: retrieval geometry used by every score, retriever and adapter:
            ``"euclidean"`` (score = minus the L2 distance) or ``"inner_product"``.
        max_seq_length: token limit of the backbone; ``None`` keeps the backbone's own. At most
            what its position embeddings cover (512 for MiniLM), else ``ValueError`` when built.
    """

    _config_name = "keys in Gaussian embedder config"

    backbone: str | None = None
    output_dim: int = 384
    hidden_dim: int | None = None
    dropout: float = 0.1
    head_init: str = "identity"
    freeze: str = "none"
    freeze_layers: int = 0
    geometry: str = "euclidean"
    max_seq_length: int | None = None

    def __post_init__(self) -> None:
        plain_scalars(self)
        if self.backbone is not None and not isinstance(self.backbone, str):
            raise TypeError(f"backbone must be a str path or None, got {type(self.backbone).__name__}")
        check_int("output_dim", self.output_dim, 1)
        check_int("freeze_layers", self.freeze_layers, 0)
        for name in ("hidden_dim", "max_seq_length"):  # None: the output width / the backbone's own
            if getattr(self, name) is not None:
                check_int(name, getattr(self, name), 1)
        if (
            isinstance(self.dropout, bool)
            or not isinstance(self.dropout, (int, float))
            or not math.isfinite(self.dropout)
            or not 0.0 <= self.dropout < 1.0
        ):
            raise ValueError(f"dropout must be a number in [0, 1), got {self.dropout!r}")
        if self.head_init not in HEAD_INITS:
            raise ValueError(f"head_init must be one of {HEAD_INITS}, got {self.head_init!r}")
        if self.freeze not in FREEZE_MODES:
            raise ValueError(f"freeze must be one of {FREEZE_MODES}, got {self.freeze!r}")
        if self.geometry not in GEOMETRIES:
            raise ValueError(f"geometry must be one of {GEOMETRIES}, got {self.geometry!r}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict, with the format version."""
        return {"format_version": FORMAT_VERSION, **super().to_dict()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GaussianConfig:
        """Inverse of :meth:`to_dict`; rejects unknown format versions and keys."""
        if not isinstance(data, dict):
            raise TypeError(f"data must be a dict, got {type(data).__name__}")
        version = data.get("format_version", FORMAT_VERSION)
        if version != FORMAT_VERSION:
            raise ValueError(
                f"unsupported Gaussian embedder format_version {version!r} (expected {FORMAT_VERSION})"
            )
        return super().from_dict({k: v for k, v in data.items() if k != "format_version"})
