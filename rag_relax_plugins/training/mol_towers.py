"""Query and item towers, a dot-product scorer, and the two-tower model the MoL trainer optimises.

A :class:`TwoTowerModel` is ``query_tower`` + ``item_tower`` + ``similarity``:

- ``query_tower(inputs) -> (B, Dq)``: any module; inputs are whatever one training example's
  query is (a padded item history ``(B, L) x long``, a question index ``(B,) x long``...);
- ``item_tower(ids) -> (M, Dx)``: any module mapping item ids ``(M,) x long`` to vectors;
- ``similarity(q, x) -> (scores (B, M), aux_losses)``: a Mixture-of-Logits module
  (:class:`rag_relax_plugins.core.mol.MoLSimilarity`) or :class:`DotProductSimilarity`.

Provided towers: :class:`IdEmbeddingTower` (learned item-id table, the MovieLens setting),
:class:`HistoryQueryTower` (a one-layer SASRec-style encoder over the last ``L`` items of a user,
sharing the item table) and :class:`FeatureTower` (frozen precomputed features such as MiniLM
vectors, looked up by index: the common RAG case).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from rag_relax_plugins.core.validation import check_count, check_finite, check_floating, check_ndim

__all__ = [
    "DotProductSimilarity",
    "FeatureTower",
    "HistoryQueryTower",
    "IdEmbeddingTower",
    "TwoTowerModel",
]


def _check_ids(name: str, ids: object, n: int) -> torch.Tensor:
    if not isinstance(ids, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(ids).__name__}")
    if ids.dtype != torch.long:
        raise TypeError(f"{name} must be a long tensor, got dtype {ids.dtype}")
    if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= n):
        raise ValueError(
            f"{name} must hold ids in [0, {n}), got values in [{int(ids.min())}, {int(ids.max())}]"
        )
    return ids


class DotProductSimilarity(nn.Module):
    """Dot product (or cosine) scorer with the similarity-module contract: ``<q, x> / tau``.

    Args:
        normalize: L2-normalise both sides first (cosine similarity).
        tau: temperature dividing the scores (as :class:`~rag_relax_plugins.core.mol.MoLSimilarity`
            does, so that both feed the same sampled softmax).
    """

    def __init__(self, normalize: bool = False, tau: float = 1.0) -> None:
        super().__init__()
        if not tau > 0:
            raise ValueError(f"tau must be > 0, got {tau!r}")
        self.normalize = normalize
        self.tau = float(tau)

    def forward(self, query: torch.Tensor, items: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Score every query against every item.

        Args:
            query: ``(B, D) x float``.
            items: ``(M, D) x float``.

        Returns:
            ``(scores, {})`` with scores ``(B, M) x float``; no auxiliary losses.
        """
        check_ndim("query", query, 2)
        check_ndim("items", items, 2)
        if query.shape[1] != items.shape[1]:
            raise ValueError(
                f"query and items must have the same dimension, got {query.shape[1]} and {items.shape[1]}"
            )
        if self.normalize:
            query, items = F.normalize(query, dim=-1), F.normalize(items, dim=-1)
        return query @ items.T / self.tau, {}


class IdEmbeddingTower(nn.Module):
    """Learned item-id embeddings ``(num_items, dim)``; id 0 may be reserved as padding.

    With ``mlp_hidden > 0`` the tower returns ``e + MLP(e)`` (Linear -> GELU -> Linear, the last
    layer zero-initialised so the untrained tower returns the table rows): a nonlinear item
    feature from the same ``dim`` learned floats per item (the MoL paper derives item-side
    components from shared networks over the item embedding). :class:`HistoryQueryTower` always
    reads the raw table.

    Args:
        num_items: table size ``N`` (ids ``0..N-1``).
        dim: embedding size ``D``.
        padding_idx: an id whose row stays zero (e.g. ``0`` for padded histories), or ``None``.
        init_std: standard deviation of the normal initialisation.
        mlp_hidden: hidden width of the optional residual MLP (``0``: none).
    """

    def __init__(
        self,
        num_items: int,
        dim: int,
        *,
        padding_idx: int | None = 0,
        init_std: float = 0.02,
        mlp_hidden: int = 0,
    ) -> None:
        super().__init__()
        if num_items < 1 or dim < 1:
            raise ValueError(f"num_items and dim must be >= 1, got {num_items} and {dim}")
        mlp_hidden = check_count("mlp_hidden", mlp_hidden, 0)
        self.embedding = nn.Embedding(num_items, dim, padding_idx=padding_idx)
        nn.init.normal_(self.embedding.weight, std=init_std)
        if padding_idx is not None:
            with torch.no_grad():
                self.embedding.weight[padding_idx].zero_()
        self.mlp: nn.Module | None = None
        if mlp_hidden:
            out = nn.Linear(mlp_hidden, dim)
            nn.init.zeros_(out.weight)
            nn.init.zeros_(out.bias)
            self.mlp = nn.Sequential(nn.Linear(dim, mlp_hidden), nn.GELU(), out)

    @property
    def num_items(self) -> int:
        return int(self.embedding.num_embeddings)

    @property
    def dim(self) -> int:
        return int(self.embedding.embedding_dim)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """``(M,) x long`` ids -> ``(M, D) x float`` embeddings (``e + MLP(e)`` with an MLP)."""
        e = self.embedding(_check_ids("ids", ids, self.num_items))
        return e if self.mlp is None else e + self.mlp(e)


class HistoryQueryTower(nn.Module):
    """A user's next-item query from the last ``L`` items of their history.

    Two encoders share the item table of the item tower (as SASRec does, Kang & McAuley, ICDM
    2018):

    - ``"pool"`` (default, cheap on CPU): a softmax-weighted mean of the item embeddings with a
      learned weight per recency position, followed by a residual MLP and a LayerNorm;
    - ``"transformer"``: ``E[items] * sqrt(D) + P[positions]`` through one pre-norm Transformer
      encoder layer, the output at the most recent position, layer-normalised.

    Multi-interest pooling (``encoder="pool"``, ``num_interests = H > 1``): ``H`` pools, each
    with its own recency logits (initial slopes spread over time scales, from long- to
    short-term) plus a content term ``w_h . e`` (self-attentive multi-interest extraction, as in
    ComiRec-SA, Cen et al., KDD 2020), share the residual MLP and LayerNorm; the output is the
    ``H`` interest vectors concatenated, ``(B, H * D)``, row ``b`` laid out as ``(H, D)``. A
    Mixture-of-Logits scorer reads one query component from each interest (see
    ``mol_recipes.identity_warm_start``); a single-vector scorer needs ``interest_combine="linear"``,
    a learned ``H * D -> D`` map initialised to the mean of the interests.

    Args:
        items: the item tower whose table is shared.
        max_len: ``L``, history positions used.
        encoder: ``"pool"`` or ``"transformer"``.
        num_heads: attention heads of the transformer encoder (must divide ``D``).
        dropout: dropout inside the encoder.
        num_interests: ``H``, pooled interest vectors (``"pool"`` only).
        interest_combine: ``"concat"`` (output ``(B, H * D)``) or ``"linear"`` (output ``(B, D)``).
    """

    def __init__(
        self,
        items: IdEmbeddingTower,
        max_len: int = 50,
        *,
        encoder: str = "pool",
        num_heads: int = 2,
        dropout: float = 0.1,
        num_interests: int = 1,
        interest_combine: str = "concat",
    ) -> None:
        super().__init__()
        if max_len < 1:
            raise ValueError(f"max_len must be >= 1, got {max_len}")
        if encoder not in ("pool", "transformer"):
            raise ValueError(f"encoder must be 'pool' or 'transformer', got {encoder!r}")
        num_interests = check_count("num_interests", num_interests, 1)
        if num_interests > 1 and encoder != "pool":
            raise ValueError("num_interests > 1 needs encoder='pool'")
        if interest_combine not in ("concat", "linear"):
            raise ValueError(f"interest_combine must be 'concat' or 'linear', got {interest_combine!r}")
        d = items.dim
        self.items = items
        self.max_len = max_len
        self.encoder = encoder
        self.num_interests = num_interests
        self.norm = nn.LayerNorm(d)
        self.combine: nn.Linear | None = None
        if encoder == "pool":
            # recency logits start favouring recent items: position L-1 is the most recent; with
            # several interests the slopes span time scales (long-term ... short-term)
            # (shape (L,) with one interest, as saved by earlier versions; (H, L) otherwise)
            slopes = 2.0 ** (torch.arange(num_interests, dtype=torch.float32) - (num_interests - 1) / 2)
            recency = slopes[:, None] * torch.linspace(-1.0, 1.0, max_len)[None, :]  # (H, L)
            self.recency = nn.Parameter(recency[0] if num_interests == 1 else recency)
            self.content: nn.Linear | None = nn.Linear(d, num_interests, bias=False) if num_interests > 1 else None
            self.mlp = nn.Sequential(nn.Linear(d, 2 * d), nn.GELU(), nn.Dropout(dropout), nn.Linear(2 * d, d))
            if num_interests > 1 and interest_combine == "linear":
                self.combine = nn.Linear(num_interests * d, d)
                with torch.no_grad():  # starts as the mean of the interests
                    self.combine.weight.copy_(torch.eye(d).repeat(1, num_interests) / num_interests)
                    self.combine.bias.zero_()
        else:
            if d % num_heads:
                raise ValueError(f"num_heads must divide the item dimension {d}, got {num_heads}")
            self.position = nn.Embedding(max_len, d)
            nn.init.normal_(self.position.weight, std=0.02)
            self.layer = nn.TransformerEncoderLayer(
                d, num_heads, dim_feedforward=2 * d, dropout=dropout, batch_first=True, norm_first=True
            )

    @property
    def out_dim(self) -> int:
        """Width of the output: ``D``, or ``H * D`` for concatenated interests."""
        return self.items.dim * (self.num_interests if self.combine is None else 1)

    def forward(self, history: torch.Tensor) -> torch.Tensor:
        """Encode histories.

        Args:
            history: ``(B, L) x long`` item ids, right-aligned (most recent last), ``0`` = padding;
                every row needs at least one item (its last column non-zero).

        Returns:
            ``(B, D) x float`` queries, or ``(B, H * D)`` with ``H > 1`` interests concatenated.
        """
        check_ndim("history", history, 2)
        _check_ids("history", history, self.items.num_items)
        if history.shape[1] != self.max_len:
            raise ValueError(f"history must have {self.max_len} columns, got {history.shape[1]}")
        if bool((history[:, -1] == 0).any()):
            raise ValueError("history rows must end with an item (right-aligned, 0 = padding only on the left)")
        pad = history == 0  # (B, L) True at padding
        emb = self.items.embedding(history)  # (B, L, D)
        if self.encoder == "pool":
            recency = self.recency.view(self.num_interests, self.max_len)  # (H, L)
            logits = recency[None].expand(history.shape[0], -1, -1)  # (B, H, L)
            if self.content is not None:
                logits = logits + self.content(emb).transpose(1, 2)  # + (B, H, L) content term
            w = logits.masked_fill(pad[:, None, :], float("-inf")).softmax(dim=-1)  # (B, H, L)
            pooled = w @ emb  # (B, H, L) @ (B, L, D) -> (B, H, D)
            out = self.norm(pooled + self.mlp(pooled)).flatten(1)  # (B, H * D)
            return out if self.combine is None else self.combine(out)
        pos = torch.arange(self.max_len, device=history.device)
        h = emb * math.sqrt(self.items.dim) + self.position(pos)[None]  # (B, L, D)
        out = self.layer(h, src_key_padding_mask=pad)  # padded keys masked; last position is real
        return self.norm(out[:, -1])


class FeatureTower(nn.Module):
    """Frozen precomputed features looked up by index (e.g. MiniLM vectors of a corpus).

    The features are a non-persistent buffer: checkpoints hold only trainable weights, and the
    caller supplies the same features when rebuilding the model.

    Args:
        features: ``(N, D) x float`` one row per query or item.
        adapter: ``"none"`` (features as they are) or ``"linear"`` (a trainable ``D x D`` map
            initialised to the identity).
    """

    def __init__(self, features: torch.Tensor, *, adapter: str = "none") -> None:
        super().__init__()
        check_floating("features", features)
        check_ndim("features", features, 2)
        check_finite("features", features)
        if features.shape[0] < 1:
            raise ValueError("features must hold at least one row")
        if adapter not in ("none", "linear"):
            raise ValueError(f"adapter must be 'none' or 'linear', got {adapter!r}")
        self.features: torch.Tensor
        self.register_buffer("features", features.detach().clone(), persistent=False)
        self.adapter: nn.Module = nn.Identity()
        if adapter == "linear":
            lin = nn.Linear(features.shape[1], features.shape[1])
            with torch.no_grad():
                lin.weight.copy_(torch.eye(features.shape[1]))
                lin.bias.zero_()
            self.adapter = lin

    @property
    def dim(self) -> int:
        return int(self.features.shape[1])

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """``(M,) x long`` row indices -> ``(M, D) x float`` (adapted) features."""
        ids = _check_ids("ids", ids, int(self.features.shape[0]))
        return self.adapter(self.features[ids])


class TwoTowerModel(nn.Module):
    """``query_tower`` + ``item_tower`` + ``similarity`` (see the module docstring).

    Args:
        query_tower: maps a batch of query inputs to ``(B, Dq)``.
        item_tower: maps ``(M,) x long`` ids to ``(M, Dx)``.
        similarity: ``(q, x) -> (scores (B, M), aux_losses dict)``.
        num_items: size of the item catalogue (ids ``0..N-1``) used for sampling and evaluation.
        excluded_items: ids that are never candidates (e.g. the padding id 0).
    """

    # set by the recipes when the similarity starts from the identity warm start (absent
    # otherwise): a plain attribute, so the resume check compares it
    warm_start_noise: float

    def __init__(
        self,
        query_tower: nn.Module,
        item_tower: nn.Module,
        similarity: nn.Module,
        num_items: int,
        *,
        excluded_items: tuple[int, ...] = (),
    ) -> None:
        super().__init__()
        num_items = check_count("num_items", num_items, 1)
        self.query_tower = query_tower
        self.item_tower = item_tower
        self.similarity = similarity
        self.num_items = num_items
        self.excluded_items = tuple(int(i) for i in excluded_items)

    def forward(self, queries: Any, item_ids: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Scores of every query against the given items.

        Args:
            queries: a batch of query inputs for ``query_tower`` (``B`` rows).
            item_ids: ``(M,) x long``.

        Returns:
            ``(scores (B, M) x float, aux_losses)``.
        """
        return self.score(self.query_tower(queries), self.item_tower(item_ids))

    def score(self, query_emb: torch.Tensor, item_emb: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Similarity of encoded queries ``(B, Dq)`` and encoded items ``(M, Dx)``."""
        out = self.similarity(query_emb, item_emb)
        if not (isinstance(out, tuple) and len(out) == 2):
            raise TypeError("similarity must return (scores, aux_losses)")
        return out[0], dict(out[1])
