"""Mixture-of-Logits (MoL) learned similarity.

Ding & Zhai, "Retrieval with Learned Similarities" (WWW 2025, arXiv 2407.15462), building on
Zhai et al., "Revisiting Neural Retrieval on Accelerators" (KDD 2023). Implemented from the papers.

A query ``q`` gives ``P_q`` component embeddings ``f_i(q)`` and an item ``x`` gives ``P_x``
component embeddings ``g_j(x)``, all in ``R^{d_P}`` and L2-normalised. The ``P = P_q * P_x``
pairwise dot products ``s_p(q, x) = <f_i(q), g_j(x)>`` (pair ``p = i * P_x + j``) are mixed by
adaptive gating weights::

    phi(q, x) = sum_p pi_p(q, x) * s_p(q, x) / tau,      pi(q, x) = softmax_p(gate logits)

Gate (a SiLU-gated MLP over query features, item features and the ``P`` dot products, decomposed
as in the papers so the item part can be cached)::

    a(q) = MLP_q(q)  (P,)          b(x) = MLP_x(x)  (P,)        (Linear -> SiLU -> Linear)
    logits(q, x) = (W_s s(q, x) + c) * SiLU(a(q) + b(x))

At inference ``pi`` is a convex combination, hence ``min_p s_p / tau <= phi <= max_p s_p / tau``:
the bound the exact two-pass retrieval in :mod:`rag_relax_plugins.index` relies on.

Training adds (i) softmax dropout on ``pi`` and (ii) the mutual-information load-balancing loss
``L_MI = -H(mean pi) + mean H(pi)`` over the positive pairs, weighted by ``mi_loss_weight`` and
returned in ``aux_losses["mol_mi"]`` (an empty dict in eval mode).

Departures from the paper: component embeddings come from linear projections of given features
(the paper also shares and compresses embeddings); the gate is the three-part decomposition above.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from rag_relax_plugins.core.device import autocast_enabled, work_dtype
from rag_relax_plugins.core.mol_config import MoLConfig, MoLItemState, MoLQueryState
from rag_relax_plugins.core.validation import (
    check_finite,
    check_floating,
    check_ndim,
    check_optional_count,
)

__all__ = [
    "MoLConfig",
    "MoLItemState",
    "MoLQueryState",
    "MoLSimilarity",
    "mol_component_dots",
    "mol_mi_loss",
]

_CHUNK_ELEMENTS = 1 << 22  # (B, n, P) elements per chunk in score_all


def mol_component_dots(
    query_components: torch.Tensor, item_components: torch.Tensor
) -> torch.Tensor:
    """All-pairs component dot products.

    Args:
        query_components: ``(B, P_q, d) x float``.
        item_components: ``(N, P_x, d) x float`` (shared by all queries) or ``(B, K, P_x, d)``
            (per-query candidates).

    Returns:
        ``(B, N, P) x float`` (or ``(B, K, P)``) with ``P = P_q * P_x``, pair ``p = i * P_x + j``.
    """
    b, p_q, d = query_components.shape
    if item_components.dim() == 3:
        n, p_x, _ = item_components.shape
        # (B*P_q, d) @ (d, N*P_x) -> (B, P_q, N, P_x)
        dots = (query_components.reshape(b * p_q, d) @ item_components.reshape(n * p_x, d).T).view(
            b, p_q, n, p_x
        )
        return dots.permute(0, 2, 1, 3).reshape(b, n, p_q * p_x)
    _, k, p_x, _ = item_components.shape
    # (B, 1, P_q, d) x (B, K*P_x, d)^T -> (B, P_q, K, P_x)
    dots = torch.bmm(query_components, item_components.reshape(b, k * p_x, d).transpose(1, 2)).view(
        b, p_q, k, p_x
    )
    return dots.permute(0, 2, 1, 3).reshape(b, k, p_q * p_x)


def mol_mi_loss(weights: torch.Tensor, eps: float = 1e-9) -> torch.Tensor:
    """Mutual-information load-balancing loss ``-H(mean_m w_m) + mean_m H(w_m)`` (unweighted).

    Minimising it spreads usage over the ``P`` logits (high marginal entropy) while keeping each
    pair's mixture peaked (low conditional entropy).

    Args:
        weights: ``(M, P) x float`` gating weights of ``M`` (positive) pairs, rows summing to 1.
        eps: floor inside the logarithms.

    Returns:
        ``() x float`` scalar; 0 when ``P == 1`` or ``M == 0`` (no pair: 0 in the graph, not NaN).
    """
    check_floating("weights", weights)
    check_ndim("weights", weights, 2)
    if weights.shape[0] == 0:
        return weights.sum()
    w = weights.to(work_dtype(weights.dtype))  # eps = 1e-9 is 0 in float16: 0 * log(0) = NaN
    marginal = w.mean(dim=0)
    h_marginal = -(marginal * torch.log(marginal.clamp_min(eps))).sum()
    h_conditional = -(w * torch.log(w.clamp_min(eps))).sum(dim=-1).mean()
    return (h_conditional - h_marginal).to(weights.dtype)


class _GateMLP(nn.Module):
    """Linear -> SiLU -> Linear, ``(..., D) -> (..., P)``."""

    def __init__(self, in_dim: int, hidden: int, out_dim: int) -> None:
        super().__init__()
        self.inner = nn.Linear(in_dim, hidden)
        self.outer = nn.Linear(hidden, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.outer(F.silu(self.inner(x)))


def _unit(x: torch.Tensor) -> torch.Tensor:
    """``x / ||x||`` over the last dim, 0 for a zero vector; divided by its largest magnitude
    first, so the squares neither overflow nor underflow float32 (``F.normalize`` alone gave 0
    for a component of norm 1e20 and 1e-13 for one of norm 1e-25: cosine scores of 0 for the
    same direction). The divisor is a constant for autograd: the unit vector does not depend on it.
    A zero vector is divided by 1 (a divisor of ``tiny`` made its gradient inf, and NaN on the
    projection weights through a zero feature row).
    """
    peak = x.detach().abs().amax(dim=-1, keepdim=True)
    scale = torch.where(peak > 0, peak, torch.ones_like(peak))
    return F.normalize(x / scale, dim=-1)


class MoLSimilarity(nn.Module):
    """Mixture-of-Logits similarity returning ``(scores, aux_losses)``.

    Usage::

        sim = MoLSimilarity(MoLConfig(query_dim=384, item_dim=384))
        scores, aux = sim(queries, items)           # (B, D_q), (N, D_x) -> (B, N)
        loss = F.cross_entropy(scores, torch.arange(B)) + sum(aux.values())

    For retrieval, cache :meth:`encode_items` once and call :meth:`score_all` /
    :meth:`score_candidates`; the item towers never run again at search time.
    """

    def __init__(self, config: MoLConfig) -> None:
        super().__init__()
        if not isinstance(config, MoLConfig):
            raise TypeError(f"config must be a MoLConfig, got {type(config).__name__}")
        self.config = config
        c = config
        p = c.num_pairs
        self.query_proj = nn.Linear(
            c.query_dim, c.num_query_embeddings * c.component_dim, bias=not c.identity_init
        )
        self.item_proj = nn.Linear(
            c.item_dim, c.num_item_embeddings * c.component_dim, bias=not c.identity_init
        )
        self.query_gate = _GateMLP(c.query_dim, c.gate_hidden_dim, p)
        self.item_gate = _GateMLP(c.item_dim, c.gate_hidden_dim, p)
        self.dot_gate = nn.Linear(p, p)
        if c.identity_init:
            with torch.no_grad():
                self.query_proj.weight.copy_(torch.eye(c.component_dim))
                self.item_proj.weight.copy_(torch.eye(c.component_dim))

    @classmethod
    def cosine(cls, dim: int, *, tau: float = 1.0) -> MoLSimilarity:
        """An untrained similarity that is exactly ``cos(q, x) / tau`` (``P_q = P_x = 1``).

        With one pair the gate's softmax is identically 1, and identity projections followed by
        L2 normalisation give the cosine. Every item is its own best match (self-maximal), which
        vector-store contracts assume. ``tau=1.0`` keeps scores in ``[-1, 1]``.
        """
        config = MoLConfig(
            query_dim=dim,
            item_dim=dim,
            num_query_embeddings=1,
            num_item_embeddings=1,
            component_dim=dim,
            tau=tau,
            gate_hidden_dim=1,
            identity_init=True,
        )
        return cls(config).eval()

    # ----------------------------------------------------------------- towers (cacheable)
    def _check_features(
        self, name: str, x: torch.Tensor, dim: int, ndims: tuple[int, ...] = (2,)
    ) -> None:
        check_floating(name, x)
        check_ndim(name, x, ndims)
        if x.shape[-1] != dim:
            raise ValueError(f"{name} must have last dimension {dim}, got shape {tuple(x.shape)}")
        weight = getattr(self.query_proj, "weight", None)  # a method on a dynamically quantized Linear,
        # which takes float32 activations
        wdt = weight.dtype if isinstance(weight, torch.Tensor) and weight.is_floating_point() else torch.float32
        if x.dtype != wdt and not autocast_enabled(x.device.type):  # was "expected m1 and m2 to have the same dtype"
            module = f" or the module (.to({x.dtype}))" if isinstance(weight, torch.Tensor) else ""  # not a quantized one
            raise TypeError(f"{name} must have the similarity's dtype {wdt}, got {x.dtype}; "
                            f"cast the features ({name}.to({wdt})){module}")

    def encode_queries(self, query_features: torch.Tensor) -> MoLQueryState:
        """Query towers.

        Args:
            query_features: ``(B, D_q) x float``.

        Returns:
            :class:`MoLQueryState` with components ``(B, P_q, d_P)`` and gate logits ``(B, P)``.
        """
        c = self.config
        self._check_features("query_features", query_features, c.query_dim)
        comps = self.query_proj(query_features).view(-1, c.num_query_embeddings, c.component_dim)
        return MoLQueryState(_unit(comps), self.query_gate(query_features))

    def encode_items(self, item_features: torch.Tensor) -> MoLItemState:
        """Item towers (an index runs them once per item).

        Args:
            item_features: ``(..., D_x) x float``, e.g. ``(N, D_x)`` or ``(B, K, D_x)``.

        Returns:
            :class:`MoLItemState` with components ``(..., P_x, d_P)`` and gate logits ``(..., P)``.
        """
        c = self.config
        self._check_features("item_features", item_features, c.item_dim, (2, 3))
        lead = item_features.shape[:-1]
        comps = self.item_proj(item_features).view(*lead, c.num_item_embeddings, c.component_dim)
        return MoLItemState(_unit(comps), self.item_gate(item_features))

    # ----------------------------------------------------------------- mixing
    def mix(
        self, dots: torch.Tensor, query_gate: torch.Tensor, item_gate: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Gate and mix component logits.

        Args:
            dots: ``(B, M, P) x float`` component dot products ``s_p``.
            query_gate: ``(B, P) x float`` query gate logits.
            item_gate: ``(M, P)`` (shared items) or ``(B, M, P)`` (per-query candidates).

        Returns:
            ``(scores (B, M), weights (B, M, P))``; ``weights`` sum to 1 over ``P`` (before
            softmax dropout, which is applied to the mixture only in training mode and only when
            ``P > 1``: with one pair the score is ``s / tau`` in both modes).
        """
        item_gate = item_gate.to(dots.dtype)
        if item_gate.dim() == 2:
            item_gate = item_gate.unsqueeze(0)  # (1, M, P)
        logits = self.dot_gate(dots) * F.silu(query_gate.unsqueeze(1) + item_gate)  # (B, M, P)
        weights = torch.softmax(logits, dim=-1)
        mixed = weights
        # one pair: pi == 1 and dropping the only component would give 0 or s / ((1 - p) tau)
        if self.training and self.config.softmax_dropout > 0 and weights.shape[-1] > 1:
            mixed = F.dropout(weights, p=self.config.softmax_dropout, training=True)
        scores = (mixed * dots).sum(dim=-1) / self.config.tau
        return scores, weights

    def _check_pair(self, queries: MoLQueryState, items: MoLItemState) -> None:
        c = self.config
        if queries.components.shape[-2:] != (c.num_query_embeddings, c.component_dim):
            raise ValueError(
                f"queries.components must be (B, {c.num_query_embeddings}, {c.component_dim}), "
                f"got {tuple(queries.components.shape)}"
            )
        if items.components.shape[-2:] != (c.num_item_embeddings, c.component_dim):
            raise ValueError(
                f"items.components must be (..., {c.num_item_embeddings}, {c.component_dim}), "
                f"got {tuple(items.components.shape)}"
            )

    def score_all(
        self, queries: MoLQueryState, items: MoLItemState, *, chunk_size: int | None = None
    ) -> torch.Tensor:
        """Scores of every query against every cached item, chunked over items (no aux losses).

        Args:
            queries: from :meth:`encode_queries`, ``B`` queries.
            items: from :meth:`encode_items`, components ``(N, P_x, d_P)``, gate ``(N, P)``; may
                be stored in bf16/fp16 (each chunk is cast to the queries' dtype).
            chunk_size: items per chunk, an int ``>= 1``; ``None`` (default) keeps
                ``B * chunk * P`` near 4M elements.

        Returns:
            ``(B, N) x float`` scores ``phi(q, x)``.

        Raises:
            ValueError: ``chunk_size`` is not ``None`` or an int ``>= 1``; mismatched shapes.
        """
        chunk_size = check_optional_count("chunk_size", chunk_size, 1)  # numpy integers too
        self._check_pair(queries, items)
        if items.components.dim() != 3:
            raise ValueError(
                f"items.components must be (N, P_x, d_P), got {tuple(items.components.shape)}"
            )
        b, n = len(queries), len(items)
        if chunk_size is None:
            chunk_size = max(1, _CHUNK_ELEMENTS // max(1, b * self.config.num_pairs))
        dtype = queries.components.dtype
        out = torch.empty(b, n, dtype=dtype, device=queries.components.device)
        for start in range(0, n, chunk_size):
            comps = items.components[start : start + chunk_size].to(dtype)
            dots = mol_component_dots(queries.components, comps)  # (B, n, P)
            out[:, start : start + chunk_size] = self.mix(
                dots, queries.gate, items.gate[start : start + chunk_size]
            )[0]
        return out

    def score_candidates(self, queries: MoLQueryState, candidates: MoLItemState) -> torch.Tensor:
        """Scores of per-query candidates (gathered cached state).

        Args:
            queries: ``B`` queries.
            candidates: components ``(B, K, P_x, d_P)``, gate ``(B, K, P)``.

        Returns:
            ``(B, K) x float``.
        """
        self._check_pair(queries, candidates)
        if candidates.components.dim() != 4 or candidates.components.shape[0] != len(queries):
            raise ValueError(
                f"candidates.components must be (B={len(queries)}, K, P_x, d_P), got {tuple(candidates.components.shape)}"
            )
        dtype = queries.components.dtype
        dots = mol_component_dots(queries.components, candidates.components.to(dtype))  # (B, K, P)
        return self.mix(dots, queries.gate, candidates.gate)[0]

    # ----------------------------------------------------------------- training entry point
    def forward(
        self,
        query_features: torch.Tensor,
        item_features: torch.Tensor,
        *,
        positives: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Score queries against items, with aux losses in training mode.

        Args:
            query_features: ``(B, D_q) x float``.
            item_features: ``(N, D_x)`` shared items (e.g. in-batch negatives) or ``(B, K, D_x)``
                per-query candidates.
            positives: ``(B,) x int`` (any integer dtype), the column of each query's positive
                item, used for the MI loss. Default: ``arange(B)`` for shared items (needs ``N >= B``; item ``b`` is
                query ``b``'s positive) and ``0`` for per-query candidates.

        Returns:
            ``(scores, aux_losses)``: scores ``(B, N)`` or ``(B, K)``; ``aux_losses`` is
            ``{"mol_mi": weighted L_MI}`` in training mode and ``{}`` in eval mode.

        Raises:
            ValueError: non-finite features in eval mode (checked here only: :meth:`encode_queries`
                and :meth:`encode_items` leave the check to their callers; in training the loss
                refuses the non-finite scores they give), mismatched shapes, or ``positives`` not
                a ``(B,)`` integer tensor of columns in range.
        """
        if not self.training:
            # here, not in encode_*: on the retrieval path it costs a sizeable share of an encode plus
            # a host sync per batch, and MoLIndex checks the encoded states itself; not in
            # training either (two host syncs per step; the training loss checks the scores)
            check_finite("query_features", query_features)
            check_finite("item_features", item_features)
        q = self.encode_queries(query_features)
        x = self.encode_items(item_features)
        b = len(q)
        if item_features.dim() == 3 and item_features.shape[0] != b:
            raise ValueError(
                f"item_features must be (B={b}, K, D_x) when 3-D, got shape {tuple(item_features.shape)}"
            )
        dots = mol_component_dots(q.components, x.components)  # (B, M, P)
        scores, weights = self.mix(dots, q.gate, x.gate)
        aux: dict[str, torch.Tensor] = {}
        if self.training and self.config.mi_loss_weight > 0:
            m = scores.shape[1]
            if positives is None:
                if item_features.dim() == 2 and m < b:
                    raise ValueError(
                        f"positives is required when there are fewer items ({m}) than queries ({b})"
                    )
                positives = (
                    torch.arange(b, device=scores.device)
                    if item_features.dim() == 2
                    else torch.zeros(b, dtype=torch.long, device=scores.device)
                )
            if (
                not isinstance(positives, torch.Tensor)
                or positives.dtype.is_floating_point
                or positives.dtype.is_complex
                or positives.dtype == torch.bool
                or positives.shape != (b,)
            ):
                got = (
                    f"{tuple(positives.shape)} {positives.dtype}"
                    if isinstance(positives, torch.Tensor)
                    else repr(positives)
                )
                raise ValueError(f"positives must be a (B={b},) integer tensor, got {got}")
            positives = positives.to(device=scores.device, dtype=torch.long)
            if bool(((positives < 0) | (positives >= m)).any()):
                raise ValueError(
                    f"positives must index columns in [0, {m}), got values outside that range"
                )
            pos_weights = weights[torch.arange(b, device=weights.device), positives]  # (B, P)
            aux["mol_mi"] = self.config.mi_loss_weight * mol_mi_loss(pos_weights)
        return scores, aux
