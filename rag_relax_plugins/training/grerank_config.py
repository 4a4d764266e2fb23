"""The options and the result of a G-Rerank run (:mod:`.grerank`).

:class:`GRerankConfig` holds every option of a run (saved as ``train_config.json`` and in each
checkpoint) and checks them when built; :class:`GRerankResult` is what ``train_grerank`` returns.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from rag_relax_plugins.core.config_dict import DictConfig, plain_scalars
from rag_relax_plugins.core.scalars import check_step_size
from rag_relax_plugins.core.validation import check_count, check_optional_count, check_positive
from rag_relax_plugins.rerankers.gumbel import DEFAULT_KAPPA, DEFAULT_TAU

__all__ = ["GRerankConfig", "GRerankResult"]


@dataclass(frozen=True)
class GRerankConfig(DictConfig):
    """All options of a G-Rerank (or supervised-reference) run, saved as ``train_config.json``."""

    _config_name = "GRerankConfig keys"

    output_dir: str = "runs/grerank"
    data_path: str | None = None  # distractor JSONL or data folder (default: the shared data)
    train_size: int = 400  # the fixed split: first 400 rows train
    max_train_rows: int | None = None  # use only the first N training rows
    supervision: Literal["reader", "labels"] = "reader"
    epochs: int = 1
    scorer: str = "cross"
    backbone: str | None = None
    # start from a saved GumbelReranker folder: it decides scorer, backbone, scorer_max_length and
    # trainable_layers (other explicit values are refused: grerank_init.effective_config; on
    # resume the checkpoint's reranker decides them the same way)
    init_from: str | None = None
    scorer_max_length: int = 128
    trainable_layers: int = -1
    k: int = 2
    mode: Literal["l2x", "subset"] = "l2x"
    tau: float = DEFAULT_TAU
    kappa: float = DEFAULT_KAPPA
    reader_path: str | None = None  # default: the offline SmolLM2
    # independent: m_i = 0 equals deleting document i from the independent layout (tested);
    # concatenated: deleting it with the others' positions kept. Neither is the prompt generate()
    # reads (answer NLL 0.1-0.7 nats apart, see readers/dma.py)
    variant: Literal["concatenated", "independent"] = "independent"
    doc_tokens: int = 48
    # keep the reader's document states of every training question after its first visit, so
    # later epochs run only the question and answer tokens (independent variant; ~24 MB/question)
    cache_reader_states: bool = False
    learning_rate: float = 5e-5  # backbone; 5e-5 / 3e-3 chosen on validation rows
    head_learning_rate: float = 3e-3  # (benchmarks/pilot_grerank_lr.py)
    weight_decay: float = 0.0
    grad_accum_steps: int = 4
    max_grad_norm: float = 1.0
    max_steps: int | None = None
    save_every_steps: int = 25
    keep_checkpoints: int = 2
    resume_from: str | None = None
    seed: int = 0
    device: str | None = None
    show_progress: bool = True

    def __post_init__(self) -> None:
        plain_scalars(self)
        if self.supervision not in ("reader", "labels"):
            raise ValueError(f"supervision must be 'reader' or 'labels', got {self.supervision!r}")
        if self.mode not in ("l2x", "subset"):  # relaxed_topk knows more, GumbelReranker only these
            raise ValueError(f"mode must be 'l2x' or 'subset', got {self.mode!r}")
        for name in (
            "train_size",
            "epochs",
            "grad_accum_steps",
            "doc_tokens",
            "k",
            "save_every_steps",
            "keep_checkpoints",
        ):
            check_count(name, getattr(self, name), 1)
        for name in ("max_train_rows", "max_steps"):
            check_optional_count(name, getattr(self, name), 1)
        for name in ("learning_rate", "head_learning_rate", "max_grad_norm"):  # 1e38: AdamW overflowed
            check_step_size(name, getattr(self, name))
        for name in ("tau", "kappa"):  # inf: NaN model
            check_positive(name, getattr(self, name))
        if not (self.weight_decay >= 0 and math.isfinite(self.weight_decay)):
            raise ValueError(f"weight_decay must be a finite number >= 0, got {self.weight_decay!r}")
        # scorer_max_length and trainable_layers as PairScorer checks them
        for name, least in (("scorer_max_length", 8), ("trainable_layers", -1), ("seed", 0)):
            check_count(name, getattr(self, name), least)
        if self.cache_reader_states and self.variant != "independent":
            raise ValueError(
                "cache_reader_states needs variant='independent' (document states depend on the mask otherwise)"
            )


@dataclass(frozen=True)
class GRerankResult:
    """What a run produced: the final model folder, the loss history and the timing."""

    model_dir: Path
    history: dict[str, list[Any]]  # "loss": float, or None for a step with no signal; "seconds"
    seconds_per_example: float
    examples_seen: int
