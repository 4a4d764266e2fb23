"""Configuration and cached states of the Mixture-of-Logits (MoL) similarity.

Kept apart from :mod:`rag_relax_plugins.core.mol` so that indexes and checkpoints can read and
validate a configuration without building the module.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from rag_relax_plugins.core.config_dict import DictConfig, plain_scalars
from rag_relax_plugins.core.scalars import check_int

__all__ = ["MIN_TAU", "MoLConfig", "MoLItemState", "MoLQueryState"]

MIN_TAU = 1e-6  # the smallest temperature: scores stay below 1e6 in magnitude


@dataclass(frozen=True)
class MoLConfig(DictConfig):
    """All hyper-parameters of :class:`~rag_relax_plugins.core.mol.MoLSimilarity`.

    Attributes:
        query_dim: ``D_q``, width of the query features fed to the query towers.
        item_dim: ``D_x``, width of the item features fed to the item towers.
        num_query_embeddings: ``P_q``, query component embeddings ``f_i(q)``.
        num_item_embeddings: ``P_x``, item component embeddings ``g_j(x)``.
        component_dim: ``d_P``, width of every component embedding (L2-normalised).
        tau: temperature; the score is ``sum_p pi_p <f, g> / tau`` (paper default 0.05), at
            least :data:`MIN_TAU`.
        gate_hidden_dim: ``H``, hidden width of the query-side and item-side gating MLPs.
        softmax_dropout: dropout on the gating weights ``pi``, active in training mode only.
        mi_loss_weight: weight of the mutual-information load-balancing loss (paper: 1e-3).
        identity_init: start the component projections as identity maps (needs
            ``P_q = P_x = 1`` and ``query_dim = item_dim = component_dim``); with it an untrained
            similarity is exactly ``cos(q, x) / tau``. See :meth:`MoLSimilarity.cosine`.
    """

    _config_name = "MoLConfig keys"

    query_dim: int
    item_dim: int
    num_query_embeddings: int = 4
    num_item_embeddings: int = 4
    component_dim: int = 64
    tau: float = 0.05
    gate_hidden_dim: int = 64
    softmax_dropout: float = 0.0
    mi_loss_weight: float = 1e-3
    identity_init: bool = False

    def __post_init__(self) -> None:
        plain_scalars(self)
        check_int("query_dim", self.query_dim, 1)
        check_int("item_dim", self.item_dim, 1)
        check_int("num_query_embeddings", self.num_query_embeddings, 1)
        check_int("num_item_embeddings", self.num_item_embeddings, 1)
        check_int("component_dim", self.component_dim, 1)
        check_int("gate_hidden_dim", self.gate_hidden_dim, 1)
        for name in ("tau", "softmax_dropout", "mi_loss_weight"):
            value = getattr(self, name)
            if (
                isinstance(value, bool)
                or not isinstance(value, (int, float))
                or not math.isfinite(value)
            ):
                raise TypeError(f"{name} must be a finite number, got {value!r}")
        if not self.tau >= MIN_TAU:
            raise ValueError(
                f"tau must be >= {MIN_TAU} (scores are unit-vector logits / tau in float32; "
                f"smaller values overflow or make every score a tie), got {self.tau}"
            )
        if not 0.0 <= self.softmax_dropout < 1.0:
            raise ValueError(f"softmax_dropout must be in [0, 1), got {self.softmax_dropout}")
        if self.mi_loss_weight < 0:
            raise ValueError(f"mi_loss_weight must be >= 0, got {self.mi_loss_weight}")
        if self.identity_init and not (
            self.num_query_embeddings == 1
            and self.num_item_embeddings == 1
            and self.query_dim == self.item_dim == self.component_dim
        ):
            raise ValueError(
                "identity_init needs num_query_embeddings == num_item_embeddings == 1 and "
                f"query_dim == item_dim == component_dim, got P_q={self.num_query_embeddings}, "
                f"P_x={self.num_item_embeddings}, dims=({self.query_dim}, {self.item_dim}, "
                f"{self.component_dim})"
            )

    @property
    def num_pairs(self) -> int:
        """``P = P_q * P_x``, the number of component pairs (logits) mixed by the gate."""
        return self.num_query_embeddings * self.num_item_embeddings


@dataclass(frozen=True)
class MoLQueryState:
    """Everything the scorer needs from a batch of queries (computed once per search).

    Attributes:
        components: ``(B, P_q, d_P) x float``, L2-normalised query component embeddings.
        gate: ``(B, P) x float``, query-side gating logits (``P = P_q * P_x``).
    """

    components: torch.Tensor
    gate: torch.Tensor

    def __len__(self) -> int:
        return int(self.components.shape[0])


@dataclass(frozen=True)
class MoLItemState:
    """Everything the scorer needs from items; an index caches it once per item.

    Leading dimensions are free: ``(N, ...)`` for a corpus, ``(B, K, ...)`` for gathered candidates.

    Attributes:
        components: ``(..., P_x, d_P) x float``, L2-normalised item component embeddings.
        gate: ``(..., P) x float``, item-side gating logits.
    """

    components: torch.Tensor
    gate: torch.Tensor

    def __len__(self) -> int:
        return int(self.components.shape[0])

    def select(self, index: torch.Tensor) -> MoLItemState:
        """Rows ``index`` (any long tensor shape ``S``) -> a state with leading shape ``S``."""
        return MoLItemState(self.components[index], self.gate[index])

    def to(
        self, dtype: torch.dtype | None = None, device: torch.device | str | None = None
    ) -> MoLItemState:
        """Cast / move both tensors (``None`` keeps the current dtype or device)."""
        return MoLItemState(
            self.components.to(device=device, dtype=dtype), self.gate.to(device=device, dtype=dtype)
        )
