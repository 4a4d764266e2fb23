"""Training options and objective of the Gaussian embedder: the config, LR schedule and loss.

Loss = contrastive (InfoNCE with in-batch negatives, default; or the triplet margin loss)
+ ``lambda_isotropy`` x isotropy term (SIGReg, default; RAGCUN's covariance penalty; or none)
+ ``lambda_reg`` x variance hinge toward ``target_std`` + ``lambda_predictor`` x predictor loss.
Every score follows the model's geometry: InfoNCE logits are minus squared Euclidean distances
(``"euclidean"``) or inner products (``"inner_product"``) over a temperature.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch

from rag_relax_plugins.core.config_dict import DictConfig, plain_scalars
from rag_relax_plugins.core.contrastive import info_nce, triplet_margin
from rag_relax_plugins.core.isotropy import (
    PredictorHead,
    covariance_isotropy_penalty,
    predictor_loss,
    sigreg,
    variance_regularization,
)
from rag_relax_plugins.core.scalars import check_step_size
from rag_relax_plugins.core.validation import (
    check_count,
    check_int,
    check_mask,
    check_optional_count,
)
from rag_relax_plugins.embedders.gaussian_config import GEOMETRIES, GaussianConfig

__all__ = ["TrainConfig", "contrastive_loss", "false_negative_mask", "isotropy_loss", "lr_at", "training_loss"]

_INTS = {"epochs": 1, "batch_size": 2, "grad_accum_steps": 1, "num_slices": 1, "warmup_steps": 0, "seed": 0}
_NONNEG = ("weight_decay", "lambda_isotropy", "lambda_reg", "lambda_predictor", "margin", "dropout")


@dataclass(frozen=True)
class TrainConfig(DictConfig):
    """All training options, defaults in one place (saved as ``train_config.json``).

    ``output_dim`` and ``geometry`` default to ``None``: 384 and ``"euclidean"`` for a new
    model, the saved model's values with ``init_model`` / ``resume_from`` (a different explicit
    value is an error). ``freeze_early_layers``: ``0`` trains the whole backbone, ``N`` freezes
    the token embeddings and the first ``N`` layers, ``-1`` freezes the whole backbone.
    ``cache_frozen_prefix`` keeps the frozen layers' output per text in memory (later epochs and
    the validation passes run only the trainable layers; see
    :meth:`~rag_relax_plugins.embedders.gaussian.GaussianEmbedder.enable_prefix_cache`). The
    outputs are the same in eval mode; in training the trainable layers run in length-sorted
    chunks, so dropout (when > 0) draws other masks: an equivalent run, not the same one (a
    resume must keep the setting).
    ``temperature`` ``None`` picks ``0.1 * D`` (Euclidean, on squared distances) or ``0.05 * D``
    (inner product): for vectors of norm ``sqrt(D)`` both equal cosine similarity at 0.05.
    """

    _config_name = "training options"

    train_file: str = ""
    output_dir: str = "runs/gaussian"
    val_file: str | None = None
    backbone: str | None = None
    init_model: str | None = None
    resume_from: str | None = None
    epochs: int = 1
    batch_size: int = 32
    learning_rate: float = 2e-5
    head_learning_rate: float | None = None
    weight_decay: float = 0.01
    warmup_steps: int = 0
    grad_accum_steps: int = 1
    max_steps: int | None = None
    output_dim: int | None = None
    dropout: float = 0.1
    freeze_early_layers: int = 0
    geometry: str | None = None
    loss: str = "infonce"
    temperature: float | None = None
    margin: float = 1.0
    isotropy: str = "sigreg"
    lambda_isotropy: float = 0.05
    num_slices: int = 256
    lambda_reg: float = 0.0
    target_std: float = 1.0
    predictor: bool = False
    lambda_predictor: float = 0.1
    mixed_precision: str = "no"
    seed: int = 0
    device: str | None = None
    max_grad_norm: float = 1.0
    show_progress: bool = True
    save_checkpoints: bool = True
    cache_frozen_prefix: bool = False

    def __post_init__(self) -> None:
        plain_scalars(self)
        for name, low in _INTS.items():
            check_int(name, getattr(self, name), low)
        for name in ("output_dim", "max_steps"):
            check_optional_count(name, getattr(self, name), 1)
        for name in ("learning_rate", "target_std", "max_grad_norm", "head_learning_rate", "temperature"):
            v = getattr(self, name)
            if v is not None and not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                raise ValueError(f"{name} must be a finite number > 0, got {v!r}")
        for name in _NONNEG:
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {v!r}")
        if self.seed >= 2**32:  # it is multiplied by 1,000,003 for the SIGReg slices: an overflow at step 1
            raise ValueError(f"seed must be below 2**32, got {self.seed!r}")
        for name in ("learning_rate", "head_learning_rate", "max_grad_norm"):  # 1e38: AdamW overflowed
            if getattr(self, name) is not None:
                check_step_size(name, getattr(self, name))
        if self.dropout >= 1:
            raise ValueError(f"dropout must be < 1, got {self.dropout!r}")
        check_count("freeze_early_layers", self.freeze_early_layers, -1)
        choices = {"loss": ("infonce", "triplet"), "isotropy": ("sigreg", "covariance", "none"),
                   "mixed_precision": ("no", "bf16", "fp16")}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")
        if self.geometry is not None and self.geometry not in GEOMETRIES:
            raise ValueError(f"geometry must be one of {GEOMETRIES} or None, got {self.geometry!r}")
        if self.cache_frozen_prefix and self.freeze_early_layers < 1:
            raise ValueError("cache_frozen_prefix needs freeze_early_layers >= 1 (the cached layers must be frozen)")
        if self.init_model is not None and self.resume_from is not None:
            raise ValueError("pass init_model or resume_from, not both (a checkpoint holds its model)")

    def freeze_fields(self) -> dict[str, Any]:
        """``freeze`` / ``freeze_layers`` of the model config from ``freeze_early_layers``."""
        if self.freeze_early_layers == -1:
            return {"freeze": "all", "freeze_layers": 0}
        if self.freeze_early_layers > 0:
            return {"freeze": "first_n", "freeze_layers": self.freeze_early_layers}
        return {"freeze": "none", "freeze_layers": 0}

    def model_config(self) -> GaussianConfig:
        """The configuration of a new model."""
        return GaussianConfig(backbone=self.backbone, output_dim=self.output_dim or 384, dropout=self.dropout,
                              geometry=self.geometry or "euclidean", **self.freeze_fields())


def lr_at(step: int, *, warmup_steps: int, total_steps: int) -> float:
    """LR multiplier for optimiser step ``step`` (0-based): linear warm-up, then linear decay to 0.

    A pure function of the optimiser step (not the epoch); ``LambdaLR`` calls it once per step.
    """
    if step < warmup_steps:
        return (step + 1) / (warmup_steps + 1)
    remaining = max(1, total_steps - warmup_steps)
    return max(0.0, 1.0 - (step - warmup_steps) / remaining)


def false_negative_mask(
    queries: Sequence[str], positives: Sequence[str], negatives: Sequence[Sequence[str | None]] | None
) -> torch.Tensor | None:
    """Candidates of an InfoNCE batch that repeat a row's own positive text (false negatives).

    In-batch negatives are the other rows' positives and hard negatives. When row ``i``'s
    positive text appears again as another candidate (another row's negative drawn from the
    positives, as ``prepare-data --negatives`` does, or a duplicate positive), query ``i`` meets
    its own positive as a "negative": the loss of a perfect model cannot go below ``log 2`` and
    the pull toward the positive is halved. Such candidates are masked, by text identity (the
    exact, model-free form of GISTEmbed's false-negative masking, Solatorio 2024).

    Limitation: another positive of the same query is *not* masked. With rows ``(q, A)`` and
    ``(q, B)`` in one batch, ``B`` is a negative of the first row and ``A`` of the second, as in
    sentence-transformers' ``MultipleNegativesRankingLoss``; if ``A`` and ``B`` score alike, these
    rows keep a ``log 2`` floor. The MaxSim trainer's
    ``group_info_nce`` masks them; here they are kept so the recorded benchmark figures stand.

    Args:
        queries: ``B`` query texts.
        positives: ``B`` positive texts (row ``i``'s target).
        negatives: ``B`` lists of ``M`` hard-negative texts each, or ``None``; a ``None`` entry is an
            absent negative (a placeholder column, see ``neg_present`` of :func:`contrastive_loss`):
            it matches no text.

    Returns:
        ``(B, B * (1 + M)) x bool`` in the candidate layout of :func:`contrastive_loss` (row
        ``j``'s positive, then its ``M`` negatives), ``True`` where a candidate is masked; never
        the row's own target. ``None`` when nothing is masked (the loss is then unchanged).
    """
    if len(queries) != len(positives) or (negatives is not None and len(negatives) != len(positives)):
        raise ValueError("queries, positives and negatives must have one entry per row")
    per_row = 1 + (len(negatives[0]) if negatives else 0)
    if negatives is not None and any(len(n) != per_row - 1 for n in negatives):
        raise ValueError("every row needs the same number of negatives")
    columns = [t for j, p in enumerate(positives) for t in [p, *(negatives[j] if negatives else [])]]
    where: dict[str | None, list[int]] = {}  # text -> its candidate columns (one pass, not B x B(1+M))
    for c, t in enumerate(columns):
        where.setdefault(t, []).append(c)
    hits = [(i, c) for i, p in enumerate(positives) for c in where[p] if c != i * per_row]
    if not hits:
        return None
    mask = torch.zeros(len(positives), len(columns), dtype=torch.bool)
    mask[tuple(torch.tensor(hits).T)] = True
    return mask


def contrastive_loss(q: torch.Tensor, d: torch.Tensor, neg: torch.Tensor | None, cfg: TrainConfig, geometry: str, *,
                     mask: torch.Tensor | None = None, neg_present: torch.Tensor | None = None) -> torch.Tensor:
    """InfoNCE (in-batch negatives, ``neg`` as extra hard negatives) or triplet loss under ``geometry``.

    Args:
        q: ``(B, D) x float`` queries.
        d: ``(B, D) x float`` positives.
        neg: ``(B, D)`` or ``(B, M, D) x float`` hard negatives of each query, or ``None``.
        cfg: temperature, margin and loss choice.
        geometry: ``"euclidean"`` or ``"inner_product"``.
        mask: ``(B, B * (1 + M)) x bool`` false negatives (:func:`false_negative_mask`): InfoNCE
            leaves them out of row ``i``'s softmax, the triplet loss drops the triplets whose
            negative is masked. ``None`` (or all ``False``) gives the unmasked loss exactly.
        neg_present: ``(B,)`` or ``(B, M) x bool``, which hard negatives exist (a batch where only
            some pairs have one); the entries of ``neg`` where it is ``False`` are placeholders
            (any finite value). InfoNCE leaves an absent negative out of every row's softmax, so a
            row's candidates are exactly the batch's positives and its present negatives; the
            triplet loss gives a row with no negative another row's positive, as without ``neg``,
            and drops its other absent slots. ``None`` (or all ``True``) means all present.

    Returns:
        ``() x float``.
    """
    if neg is not None and neg.dim() == 2:
        neg = neg[:, None]  # (B, 1, D)
    if neg is not None and (neg.dim() != 3 or neg.shape[0] != q.shape[0] or neg.shape[2] != q.shape[1]):
        raise ValueError(f"neg must be (B, D) or (B, M, D) with B, D = {tuple(q.shape)}, got {tuple(neg.shape)}")
    b, per_row = q.shape[0], 1 + (0 if neg is None else neg.shape[1])
    if mask is not None:  # checked before the shortcut: an all-False mask of the wrong shape is still wrong
        check_mask("mask", mask, "(B, B * (1 + M))", torch.empty(b, b * per_row, device="meta"))
        if not mask.any():
            mask = None  # the unmasked loss, bit for bit
    present = _present_slots(neg_present, neg, b)
    if cfg.loss == "infonce":
        temp = cfg.temperature or (0.1 if geometry == "euclidean" else 0.05) * q.shape[-1]
        docs = d if neg is None else torch.cat([d[:, None], neg], dim=1)  # (B, 1 + M, D): positive first
        sim: Literal["neg_l2", "dot"] = "neg_l2" if geometry == "euclidean" else "dot"
        if present is not None:  # an absent negative's column is nobody's candidate, (B, B * (1 + M))
            absent = torch.cat([present.new_zeros(b, 1), ~present], dim=1).reshape(1, -1).expand(b, -1)
            mask = absent if mask is None else mask.to(q.device) | absent
        return info_nce(q, docs, temperature=temp, similarity=sim, mask=mask)
    if neg is None:
        neg = d.roll(1, dims=0)[:, None]  # another row's positive as the negative, (B, 1, D)
        neg_cols = (torch.arange(b, device=q.device) - 1) % b  # row i's negative is column i - 1, (B,)
        neg_cols = neg_cols[:, None]  # (B, 1)
    else:
        neg_cols = (torch.arange(b, device=q.device) * per_row)[:, None] + torch.arange(1, per_row, device=q.device)  # (B, M)
    absent_dropped = None
    if present is not None:  # a row without any negative takes the previous row's positive in slot 0
        rolled = present.new_zeros(present.shape)
        rolled[:, 0] = ~present.any(dim=1)
        prev_pos_col = (((torch.arange(b, device=q.device) - 1) % b) * per_row)[:, None]  # (B, 1)
        neg = torch.where(rolled[..., None], d.roll(1, dims=0)[:, None], neg)
        neg_cols = torch.where(rolled, prev_pos_col, neg_cols)
        absent_dropped = (~present & ~rolled).reshape(-1)  # (B * M,)
    m = neg.shape[1]
    qm, dm, nm = (x.reshape(-1, q.shape[1]) for x in (q.repeat_interleave(m, 0), d.repeat_interleave(m, 0), neg))
    # triplets whose negative is masked, (B * M,), row-major like (qm, dm, nm)
    dropped = None if mask is None else mask.to(q.device).gather(1, neg_cols).reshape(-1)
    if absent_dropped is not None:
        dropped = absent_dropped if dropped is None else dropped | absent_dropped
    if geometry == "euclidean":
        return triplet_margin(qm, dm, nm, margin=cfg.margin, distance="euclidean", mask=dropped)
    per = torch.relu(cfg.margin - (qm * dm).sum(-1) + (qm * nm).sum(-1))  # inner product: no core distance
    if dropped is None:
        return per.mean()
    keep = ~dropped
    return (per * keep).sum() / keep.sum().clamp(min=1)


def _present_slots(neg_present: torch.Tensor | None, neg: torch.Tensor | None, b: int) -> torch.Tensor | None:
    """``neg_present`` checked and broadcast to ``(B, M)`` on ``neg``'s device; ``None`` when every
    hard negative is present (the loss of a full ``neg``, bit for bit)."""
    if neg_present is None:
        return None
    if neg is None:
        raise ValueError("neg_present needs neg (the hard negatives it describes)")
    m = neg.shape[1]
    if isinstance(neg_present, torch.Tensor) and neg_present.dim() == 1 and neg_present.shape[0] == b:
        neg_present = neg_present[:, None].expand(b, m)
    present = check_mask("neg_present", neg_present, "(B, M)", torch.empty(b, m, device="meta")).to(neg.device)
    return None if present.all() else present


def isotropy_loss(x: torch.Tensor, cfg: TrainConfig, step: int) -> torch.Tensor:
    """The configured isotropy term on ``(N, D)`` embeddings; SIGReg draws fresh slices each step."""
    if cfg.isotropy == "sigreg":
        return sigreg(x, num_slices=cfg.num_slices, seed=cfg.seed * 1_000_003 + step)
    if cfg.isotropy == "covariance":
        return covariance_isotropy_penalty(x)
    return x.new_zeros(())


def _upcast(x: torch.Tensor) -> torch.Tensor:
    return x if x.dtype in (torch.float32, torch.float64) else x.float()


def training_loss(q: torch.Tensor, d: torch.Tensor, neg: torch.Tensor | None, cfg: TrainConfig, step: int, *,
                  geometry: str = "euclidean", predictor: PredictorHead | None = None,
                  mask: torch.Tensor | None = None,
                  neg_present: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, float]]:
    """Total loss and its weighted parts from query / positive / negative embeddings.

    Shapes: ``q`` and ``d`` ``(B, D)``, ``neg`` ``(B, D)``, ``(B, M, D)`` or ``None``; ``mask``
    the false negatives of the contrastive term and ``neg_present`` which negatives exist (see
    :func:`contrastive_loss`).

    The regularisers see every embedding of the batch (queries, positives, present negatives).
    Half precision inputs (autocast) are upcast, so the loss is computed in float32 (or float64).
    """
    q, d = _upcast(q), _upcast(d)
    neg = None if neg is None else _upcast(neg)
    parts = {"contrastive": contrastive_loss(q, d, neg, cfg, geometry, mask=mask, neg_present=neg_present)}
    if neg is not None and neg.dim() == 2:
        neg = neg[:, None]  # (B, 1, D), checked by contrastive_loss
    present = _present_slots(neg_present, neg, q.shape[0])
    negs = None if neg is None else neg.reshape(-1, q.shape[1]) if present is None else neg[present]  # (K, D)
    both = torch.cat([q, d] if negs is None else [q, d, negs])  # every real embedding, (N, D)
    if cfg.lambda_isotropy > 0 and cfg.isotropy != "none":
        parts["isotropy"] = cfg.lambda_isotropy * isotropy_loss(both, cfg, step)
    if cfg.lambda_reg > 0:
        parts["variance"] = cfg.lambda_reg * variance_regularization(both, cfg.target_std)
    if predictor is not None:
        parts["predictor"] = cfg.lambda_predictor * predictor_loss(predictor(q), d)
    total = torch.stack(list(parts.values())).sum()
    return total, {k: float(v.detach()) for k, v in parts.items()}
