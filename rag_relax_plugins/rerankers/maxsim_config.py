"""Configuration of the MaxSim reranker (saved as ``config.json`` next to ``model.safetensors``)."""

from __future__ import annotations

from dataclasses import dataclass

from rag_relax_plugins.core.config_dict import DictConfig, plain_scalars
from rag_relax_plugins.core.scalars import check_int

__all__ = ["MaxSimConfig", "check_int"]


@dataclass(frozen=True)
class MaxSimConfig(DictConfig):
    """Everything that defines a MaxSim reranker (saved as ``config.json``).

    Attributes:
        backbone: local sentence-transformers folder; ``None`` = the offline MiniLM.
        projection_dim: output size of the linear projection; ``None`` = no projection.
        query_marker: prefix added to queries before encoding.
        document_marker: prefix added to documents before encoding.
        max_seq_length: word pieces kept per text (special tokens and marker included), >= 8.
        token_dim: size of the backbone token vectors (384 for MiniLM); checked at load.
        trained_layers: number of final backbone layers whose weights are stored with the
            reranker (set by training with ``train_last_layers``; 0 = backbone as shipped).
        seed: seed of the projection's initialisation.
    """

    _config_name = "MaxSimConfig fields"

    backbone: str | None = None
    projection_dim: int | None = 128
    query_marker: str = "[Q] "
    document_marker: str = "[D] "
    max_seq_length: int = 256
    token_dim: int = 384
    trained_layers: int = 0
    seed: int = 0

    def __post_init__(self) -> None:
        plain_scalars(self)
        # [CLS], [SEP] and a marker such as "[D] " take about 5 word pieces: below 8 every text is
        # cut to about the marker alone and all candidates score alike (as PairScorer's floor)
        check_int("max_seq_length", self.max_seq_length, 8)
        check_int("token_dim", self.token_dim, 1)
        if self.projection_dim is not None:
            check_int("projection_dim", self.projection_dim, 1)
        check_int("trained_layers", self.trained_layers, 0)
        check_int("seed", self.seed, 0)
        for name in ("query_marker", "document_marker"):
            if not isinstance(getattr(self, name), str):
                raise TypeError(f"{name} must be a str, got {type(getattr(self, name)).__name__}")
        if self.backbone is not None and not isinstance(self.backbone, str):
            raise TypeError(f"backbone must be a str path or None, got {type(self.backbone).__name__}")

    @property
    def output_dim(self) -> int:
        """Dimension of the scored token vectors."""
        return self.token_dim if self.projection_dim is None else self.projection_dim


