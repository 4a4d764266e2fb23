"""A query tower that adds a learned per-user embedding to a history encoder.

The MoL recommendation models of Ding & Zhai (WWW 2025, arXiv 2407.15462; their public
configurations for MovieLens) give the query side one extra component: a learned embedding of the
user id, with dropout 0.5, next to the components computed from the user's history. Here the
user vector is concatenated to the history encoder's output, ``(B, D_h + D)``, so that a
Mixture-of-Logits scorer can read it as one of its query components (with the identity warm
start of :func:`~rag_relax_plugins.training.mol_recipes.identity_warm_start` one component starts
as exactly that vector), or added to it, ``(B, D)``, which is what a single-vector dot product
needs. Departure from the paper: the user vector goes through MoL's learned query projection
(started at the identity) instead of being used as a component as it is.

Input rows are ``[user id, history...]`` (:meth:`~rag_relax_plugins.training.mol_data.NextItemData.with_user_ids`);
user id 0 means "unknown user" and maps to the zero vector (a new user is served from the
history alone).
"""

from __future__ import annotations

import torch
from torch import nn

from rag_relax_plugins.core.validation import check_count, check_ndim
from rag_relax_plugins.training.mol_towers import HistoryQueryTower, _check_ids

__all__ = ["UserQueryTower"]


class UserQueryTower(nn.Module):
    """History encoder + a learned embedding of the user id.

    Args:
        history: the history encoder (its output width ``D_h`` is ``D`` or ``H * D``).
        num_users: table size (user ids ``0..num_users-1``; id 0 is the zero "unknown" vector).
        dropout: dropout on the user vector in training (the paper uses 0.5).
        combine: ``"concat"`` (output ``(B, D_h + D)``, for MoL) or ``"sum"`` (output ``(B, D)``,
            needs ``D_h == D``).
        init_std: standard deviation of the normal initialisation of the table.
    """

    def __init__(
        self,
        history: HistoryQueryTower,
        num_users: int,
        *,
        dropout: float = 0.5,
        combine: str = "concat",
        init_std: float = 0.02,
    ) -> None:
        super().__init__()
        num_users = check_count("num_users", num_users, 2, hint="id 0 is the unknown user")
        if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
        if combine not in ("concat", "sum"):
            raise ValueError(f"combine must be 'concat' or 'sum', got {combine!r}")
        dim = history.items.dim
        if combine == "sum" and history.out_dim != dim:
            raise ValueError(
                f"combine='sum' needs a history output of width {dim}, got {history.out_dim} "
                "(use interest_combine='linear' for several interests)"
            )
        self.history = history
        self.combine = combine
        self.users = nn.Embedding(num_users, dim, padding_idx=0)
        nn.init.normal_(self.users.weight, std=init_std)
        with torch.no_grad():
            self.users.weight[0].zero_()
        self.dropout = nn.Dropout(dropout)

    @property
    def num_users(self) -> int:
        return int(self.users.num_embeddings)

    @property
    def out_dim(self) -> int:
        """``D_h + D`` (concat) or ``D`` (sum)."""
        return self.history.out_dim + (self.users.embedding_dim if self.combine == "concat" else 0)

    def forward(self, queries: torch.Tensor) -> torch.Tensor:
        """Encode ``[user id, history]`` rows.

        Args:
            queries: ``(B, 1 + L) x long``: column 0 the user id (0 = unknown), then the
                right-aligned history of :class:`HistoryQueryTower`.

        Returns:
            ``(B, D_h + D) x float`` (concat) or ``(B, D)`` (sum).
        """
        check_ndim("queries", queries, 2)
        if queries.shape[1] != 1 + self.history.max_len:
            raise ValueError(
                f"queries must have 1 + max_len = {1 + self.history.max_len} columns (user id, history), "
                f"got {queries.shape[1]}"
            )
        users = _check_ids("user ids", queries[:, 0], self.num_users)  # long, in [0, num_users)
        h = self.history(queries[:, 1:])  # (B, D_h)
        u = self.dropout(self.users(users))  # (B, D)
        return torch.cat([h, u], dim=1) if self.combine == "concat" else h + u
