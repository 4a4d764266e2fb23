"""Options and training pairs of the MoL trainer (:mod:`rag_relax_plugins.training.mol_train`)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from rag_relax_plugins.core.config_dict import DictConfig, plain_scalars
from rag_relax_plugins.core.scalars import check_count, check_optional_count, check_step_size

__all__ = ["MoLTrainConfig", "PairData"]


@dataclass(frozen=True)
class MoLTrainConfig(DictConfig):
    """All training options (saved in every checkpoint's ``trainer_state.json``).

    Attributes:
        epochs: passes over the training pairs.
        batch_size: pairs per step (``B``, also the number of in-batch candidates).
        lr: peak learning rate (AdamW).
        weight_decay: AdamW weight decay.
        warmup_steps: linear warm-up steps before cosine decay to ``min_lr_ratio * lr``.
        min_lr_ratio: final LR as a fraction of ``lr``.
        num_negatives: ``S`` uniformly sampled negatives shared by the batch (0: in-batch only).
        logq_correction: subtract the log expected sample count of each candidate.
        temperature: softmax temperature applied to the scores.
        mi_weight: multiplier of the similarity module's auxiliary losses (``L_MI``), which
            arrive already weighted (``MoLConfig.mi_loss_weight``, 1e-3): 1 adds them as the
            module weights them, 0 trains without them.
        max_grad_norm: gradient clipping norm (``None``: no clipping).
        seed: seeds batch order, negatives, dropout and nothing else global.
        device: ``"cpu"``, ``"cuda"``, ``"mps"`` or ``None`` (best available).
        mixed_precision: ``"no"``, ``"bf16"`` or ``"fp16"`` (autocast; float32 on CPU, fp16 only
            on MPS, where it runs without loss scaling; the run logs a warning for each).
        checkpoint_dir: folder for ``checkpoint_step_N`` (a str or PathLike, kept as a str); ``None``
            disables checkpoints.
        save_every_steps: also checkpoint every N steps (``None``: at the end of each epoch only).
        keep_checkpoints: how many most recent checkpoints to keep.
        max_steps: stop after this many steps in total (the schedule still spans ``epochs``).
        show_progress: tqdm progress bar.
    """

    _config_name = "training options"

    epochs: int = 10
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 0.0
    warmup_steps: int = 0
    min_lr_ratio: float = 0.0
    num_negatives: int = 0
    logq_correction: bool = True
    temperature: float = 1.0
    mi_weight: float = 1.0
    max_grad_norm: float | None = 1.0
    seed: int = 0
    device: str | None = None
    mixed_precision: str = "no"
    checkpoint_dir: str | None = None
    save_every_steps: int | None = None
    keep_checkpoints: int = 2
    max_steps: int | None = None
    show_progress: bool = True

    def __post_init__(self) -> None:
        plain_scalars(self)
        ck = self.checkpoint_dir  # a Path is a str now (plain_scalars); it failed at the first checkpoint
        if ck is not None and not isinstance(ck, str):
            raise TypeError(f"checkpoint_dir must be a str, a PathLike or None, got {type(ck).__name__}")
        for name in ("epochs", "batch_size", "keep_checkpoints"):
            check_count(name, getattr(self, name), 1)
        for name in ("warmup_steps", "num_negatives", "seed"):
            check_count(name, getattr(self, name), 0)
        if self.batch_size < 2 and self.num_negatives == 0:
            raise ValueError(
                "batch_size 1 with num_negatives 0 leaves every row with its positive alone (loss 0, "
                "nothing learned): use batch_size >= 2 or num_negatives >= 1"
            )
        for name in ("save_every_steps", "max_steps"):
            check_optional_count(name, getattr(self, name), 1)
        for name in ("lr", "temperature"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                raise ValueError(f"{name} must be a finite number > 0, got {v!r}")
        check_step_size("lr", self.lr)  # 1e38: AdamW overflowed at its first step
        for name in ("weight_decay", "mi_weight"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {v!r}")
        if not (isinstance(self.min_lr_ratio, (int, float)) and 0 <= self.min_lr_ratio <= 1):
            raise ValueError(f"min_lr_ratio must be a number in [0, 1], got {self.min_lr_ratio!r}")
        v = self.max_grad_norm  # None: no clipping
        if v is not None and not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
            raise ValueError(f"max_grad_norm must be None or a finite number > 0, got {v!r}")
        if self.mixed_precision not in ("no", "bf16", "fp16"):
            raise ValueError(f"mixed_precision must be 'no', 'bf16' or 'fp16', got {self.mixed_precision!r}")


@dataclass(frozen=True)
class PairData:
    """Training pairs: one query input and one positive item id per row.

    Attributes:
        queries: ``(N, ...)`` query inputs, indexed along dim 0 and fed to the query tower.
        items: ``(N,) x long`` positive item ids in ``[0, num_items)``.
        num_items: catalogue size; uniform negatives are drawn from it.
        excluded_items: ids never drawn as negatives (e.g. the padding id 0).
        query_keys: optional ``(N,) x long`` query identity; rows with the same key are the same
            query, so each row's relevant items (the positives of its key) are never negatives
            for it, whether they come in the batch or among the sampled negatives.
    """

    queries: torch.Tensor
    items: torch.Tensor
    num_items: int
    excluded_items: tuple[int, ...] = ()
    query_keys: torch.Tensor | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.queries, torch.Tensor):
            raise TypeError(f"queries must be a torch.Tensor, got {type(self.queries).__name__}")
        if not isinstance(self.items, torch.Tensor) or self.items.dtype != torch.long or self.items.dim() != 1:
            raise TypeError("items must be a 1-D long tensor of item ids")
        if self.queries.shape[0] != self.items.shape[0]:
            raise ValueError(
                f"queries and items must have the same number of rows, got {self.queries.shape[0]} and {self.items.shape[0]}"
            )
        if self.items.shape[0] < 2:
            raise ValueError(f"need at least 2 training pairs (in-batch negatives), got {self.items.shape[0]}")
        # a numpy count (pandas nunique()) as an int: it goes into the checkpoints' JSON signature
        object.__setattr__(self, "num_items", check_count("num_items", self.num_items, 1))
        if int(self.items.min()) < 0 or int(self.items.max()) >= self.num_items:
            raise ValueError(f"items must lie in [0, num_items={self.num_items})")
        if self.query_keys is not None and (
            self.query_keys.dtype != torch.long or self.query_keys.shape != self.items.shape
        ):
            raise ValueError("query_keys must be None or a long tensor shaped like items")

    def relevant_codes(self) -> torch.Tensor | None:
        """Sorted unique ``key * num_items + item`` of every (query key, positive) pair, or ``None``.

        ``None`` when ``query_keys`` is ``None``; used to mask a query's other relevant items
        wherever they appear among its candidates.
        """
        if self.query_keys is None:
            return None
        return torch.unique(self.query_keys * self.num_items + self.items)

    def num_sampleable(self) -> int:
        """Ids uniform negatives are drawn from: ``num_items`` minus the excluded ids."""
        return self.num_items - len({i for i in self.excluded_items if 0 <= i < self.num_items})

    def item_probs(self) -> torch.Tensor:
        """``(num_items,) x float32`` share of each item among the positives."""
        counts = torch.bincount(self.items, minlength=self.num_items).float()
        return counts / counts.sum()
