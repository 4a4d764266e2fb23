"""Gumbel reranker: a trainable scorer with a relaxed top-k mask in training, hard top-k at inference.

Implements the reranker side of Gumbel Reranking (Huang et al., "Gumbel Reranking: Differentiable
End-to-End Reranker Optimization", ACL 2025). The scorer (:mod:`.cross_encoder`) gives one logit
per candidate; in training :meth:`GumbelReranker.training_mask` turns the logits into a relaxed
top-``k`` mask (``l2x`` by default, ``subset`` optional, scale ``kappa`` and temperature ``tau``,
see :func:`rag_relax_plugins.core.gumbel.relaxed_topk`) that a frozen reader consumes as an
attention bias (:mod:`rag_relax_plugins.readers.dma`); at inference the reranker is deterministic:
:meth:`score` (eval mode, ``torch.inference_mode()``, batched) and :meth:`hard_topk`.

Departure from the paper: the paper's reranker is a pretrained cross-encoder; none exists offline
here, so the default cross-encoder is the offline MiniLM backbone with a freshly initialised
one-logit head (see :mod:`.cross_encoder`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import torch

from rag_relax_plugins._io import atomic_folder, find_saved_folder, read_json
from rag_relax_plugins._whole_save import reads_whole_save
from rag_relax_plugins.core.device import resolve_device
from rag_relax_plugins.core.gumbel import RelaxedTopKMode, hard_topk_mask, relaxed_topk
from rag_relax_plugins.core.modes import eval_mode, module_lock
from rag_relax_plugins.core.validation import check_count, check_k, check_positive
from rag_relax_plugins.rerankers.base import (
    BaseReranker,
    check_candidates,
    distinct_texts,
    sigmoid_relevance,
)
from rag_relax_plugins.rerankers.cross_encoder import PairScorer, build_scorer, load_scorer

__all__ = ["DEFAULT_KAPPA", "DEFAULT_TAU", "GumbelReranker", "relevance"]

# Set from the sweep in benchmarks/sweep_gumbel_defaults.py (docs/gumbel_reranker.md).
DEFAULT_TAU = 1.0
DEFAULT_KAPPA = 1.0
FORMAT_VERSION = 1
MODEL_TYPE = "gumbel"  # config.json "type": tells this folder from a MaxSim reranker's


relevance = sigmoid_relevance  # the cross-encoder's mapping (module-level name kept for callers)


class GumbelReranker(BaseReranker):
    """Trainable reranker for Gumbel Reranking (see the module docstring and docs/dev/gumbel_api.md).

    Args:
        scorer: ``"cross"`` (default: MiniLM cross-encoder, one-logit head), ``"bi"`` (MiniLM
            bi-encoder, scaled cosine) or a ready :class:`PairScorer`.
        backbone: local backbone folder for a new scorer (``None``: the offline MiniLM).
        k: documents selected for the reader in training (``1 <= k``).
        mode: relaxation of the top-k, ``"l2x"`` (paper) or ``"subset"``.
        tau: Gumbel-softmax temperature (> 0).
        kappa: score scale applied before the noise (> 0).
        max_length: word pieces per encoded sequence of a new scorer.
        trainable_layers: top backbone layers left trainable in a new scorer (``-1``: all).
        batch_size: candidates per forward pass in :meth:`score`.
        device: ``None`` resolves cuda, then mps, then cpu.
        seed: seed of a new scorer's head.

    Raises:
        ValueError: bad ``k``, ``mode``, ``tau``, ``kappa``, ``batch_size`` or scorer kind.
        TypeError: ``scorer`` is neither a kind string nor a :class:`PairScorer`.

    Scoring calls on one scorer (:meth:`score`, and so :meth:`rerank` and the framework adapters)
    run one at a time: each switches the scorer to eval mode and restores its mode after, and two
    overlapping calls (concurrent async reranking) on a scorer a training step left in train mode
    would otherwise restore train mode under each other's forward pass (dropout on). Rerankers
    with different scorers score in parallel.
    """

    SAVE_KIND: ClassVar[str] = "gumbel-reranker"  # the kind its saves record (atomic_folder)

    def __init__(
        self,
        scorer: str | PairScorer = "cross",
        *,
        backbone: str | os.PathLike[str] | None = None,
        k: int = 2,
        mode: RelaxedTopKMode = "l2x",
        tau: float = DEFAULT_TAU,
        kappa: float = DEFAULT_KAPPA,
        max_length: int = 256,
        trainable_layers: int = -1,
        batch_size: int = 16,
        device: str | torch.device | None = None,
        seed: int = 0,
    ) -> None:
        self.k = check_k("k", k)
        if mode not in ("l2x", "subset"):
            raise ValueError(f"mode must be 'l2x' or 'subset', got {mode!r}")
        self.mode: RelaxedTopKMode = mode
        self.tau = check_positive("tau", tau)
        self.kappa = check_positive("kappa", kappa)
        self.batch_size = check_count("batch_size", batch_size, 1)
        if isinstance(scorer, str):
            scorer = build_scorer(
                scorer,
                backbone,
                max_length=max_length,
                trainable_layers=trainable_layers,
                seed=seed,
            )
        elif not isinstance(scorer, PairScorer):
            raise TypeError(
                f"scorer must be 'cross', 'bi' or a PairScorer, got {type(scorer).__name__}"
            )
        self.device = resolve_device(device)
        self.scorer: PairScorer = scorer.to(self.device)
        self.scorer.eval()

    # -- inference -------------------------------------------------------------------------------
    def score(self, query: str, documents: Sequence[str]) -> torch.Tensor:
        """Deterministic scores of every candidate.

        Each distinct text is scored once (in batches of ``batch_size``) and its score copied to
        its duplicates: copies tie exactly, so :meth:`rerank` keeps them in input order (padding
        a batch to a longer text changes a pooled score in its last bits).

        Args:
            query: the query text.
            documents: ``N >= 1`` candidate texts.

        Returns:
            ``(N,) x float32`` logits on the CPU (higher is better).

        Raises:
            TypeError: non-string query or candidate. ValueError: no candidates.
        """
        query, docs = check_candidates(query, documents)
        if not docs:
            raise ValueError("documents must hold at least one candidate to score")
        unique, rows = distinct_texts(docs)  # each distinct text scored once
        # batches of similar lengths (longest first, as sentence-transformers does): a batch is
        # padded to its longest pair, and input order padded many more tokens than it holds
        order = sorted(range(len(unique)), key=lambda i: -len(unique[i]))
        with module_lock(self.scorer), torch.inference_mode(), eval_mode(self.scorer):
            parts = [
                self.scorer(query, [unique[j] for j in order[i : i + self.batch_size]]).float().cpu()
                for i in range(0, len(order), self.batch_size)
            ]
        scores = torch.empty(len(unique), dtype=torch.float32)
        scores[torch.tensor(order)] = torch.cat(parts)
        return scores[torch.tensor(rows)]  # (N,): each candidate's text's score

    def relevance(self, score: float) -> float:
        """Relevance in ``[0, 1]`` of a raw score: ``sigmoid(score)`` for the cross-encoder (a logit),
        ``(cos + 1) / 2`` for the bi-encoder (``score = scale * cos``)."""
        if self.scorer.kind == "bi":
            scale = float(self.scorer.log_scale.detach().exp())  # type: ignore[union-attr, operator]
            return min(1.0, max(0.0, (score / scale + 1.0) / 2.0))
        return relevance(score)

    def relevance_of(self, score: float) -> float:
        """:meth:`relevance` (the :class:`BaseReranker` hook the framework adapters call)."""
        return self.relevance(score)

    def hard_topk(self, scores: torch.Tensor, k: int | None = None) -> torch.Tensor:
        """Deterministic top-``k`` 0/1 mask of ``(N,)`` or ``(B, N)`` scores (inference selection)."""
        k = self.k if k is None else k
        return hard_topk_mask(scores, min(k, scores.shape[-1]))

    # -- training --------------------------------------------------------------------------------
    def training_scores(self, query: str, documents: Sequence[str]) -> torch.Tensor:
        """Scores with gradients (scorer in train mode): ``(N,) x float`` on the reranker's device."""
        query, docs = check_candidates(query, documents)
        if not docs:
            raise ValueError("documents must hold at least one candidate to score")
        self.scorer.train()
        return self.scorer(query, docs)

    def training_mask(
        self,
        scores: torch.Tensor,
        *,
        generator: torch.Generator | None = None,
        k: int | None = None,
    ) -> torch.Tensor:
        """Relaxed top-``k`` mask of ``(N,)`` or ``(B, N)`` scores (Gumbel noise, ``tau``, ``kappa``).

        ``k`` larger than ``N`` is clipped to ``N``. With ``mode="subset"`` a question with at most
        ``k`` candidates then keeps them all (an all-ones mask, no gradient); with ``"l2x"`` it does
        not: the mask is the maximum over ``k`` Gumbel-softmax draws, below 1 where no draw picks
        a candidate, so the scores still get a gradient (``k >= N`` only weakens the selection).
        """
        k = self.k if k is None else k
        return relaxed_topk(
            scores,
            min(k, scores.shape[-1]),
            mode=self.mode,
            tau=self.tau,
            kappa=self.kappa,
            generator=generator,
        )

    def parameters(self) -> Any:
        """Trainable parameters of the scorer (those with ``requires_grad``)."""
        return [p for p in self.scorer.parameters() if p.requires_grad]

    # -- persistence -----------------------------------------------------------------------------
    def config_dict(self) -> dict[str, Any]:
        return {
            "format_version": FORMAT_VERSION,
            "type": MODEL_TYPE,
            "k": self.k,
            "mode": self.mode,
            "tau": self.tau,
            "kappa": self.kappa,
            "batch_size": self.batch_size,
        }

    def save_pretrained(self, folder: str | os.PathLike[str]) -> Path:
        """Write ``config.json`` + scorer files into ``folder`` atomically (temp folder, then rename)."""
        def write(tmp: Path) -> None:
            (tmp / "config.json").write_text(json.dumps(self.config_dict(), indent=2) + "\n", encoding="utf-8")
            self.scorer.save_into(tmp)

        return atomic_folder(folder, write, kind=self.SAVE_KIND)

    @classmethod
    @reads_whole_save("folder")  # a save replacing the folder mid-read is read again
    def from_pretrained(
        cls, folder: str | os.PathLike[str], *, device: str | torch.device | None = None
    ) -> GumbelReranker:
        """Load a reranker written by :meth:`save_pretrained` (or by ``rag-relax train-reranker``).

        A crash between the two renames of a replacing save leaves only the previous save, as
        ``.<name>.old-*``; it is loaded then (:func:`~rag_relax_plugins._io.find_saved_folder`).

        Raises:
            FileNotFoundError: no ``config.json``. ValueError: a save of another kind (named);
                unsupported format version; a folder of another model type (``"type"`` other
                than ``"gumbel"``; saves without a type, from before it was written, are
                accepted); a corrupt ``config.json`` (one lacking a field, or with a bad value),
                ``scorer.json`` or ``model.safetensors`` (the message names the file).
        """
        root = find_saved_folder(folder, "config.json", what="saved Gumbel reranker", kind=cls.SAVE_KIND)
        cfg_file = root / "config.json"
        cfg = read_json(cfg_file)
        if cfg.get("type", MODEL_TYPE) != MODEL_TYPE:
            raise ValueError(f"{root} is not a Gumbel reranker (config.json has type {cfg['type']!r}); "
                             "load it with the class that saved it")
        if cfg.get("format_version") != FORMAT_VERSION:
            raise ValueError(
                f"unsupported format_version {cfg.get('format_version')!r} in {cfg_file}"
            )
        settings = _saved_settings(cfg, cfg_file)  # checked before the scorer is read
        return cls(load_scorer(root), **settings, device=device)


_SAVED_FIELDS = ("k", "mode", "tau", "kappa", "batch_size")


def _saved_settings(cfg: dict[str, Any], cfg_file: Path) -> dict[str, Any]:
    """The selection settings a ``config.json`` records, checked as the constructor checks them.

    Raises:
        ValueError: a missing field or a bad value; the message names ``cfg_file``.
    """
    missing = [name for name in _SAVED_FIELDS if name not in cfg]
    if missing:
        raise ValueError(f"{cfg_file} lacks {', '.join(map(repr, missing))} (corrupt, or not written by "
                         "GumbelReranker.save_pretrained)")
    try:
        if cfg["mode"] not in ("l2x", "subset"):
            raise ValueError(f"mode must be 'l2x' or 'subset', got {cfg['mode']!r}")
        return {
            "k": check_k("k", cfg["k"]),
            "mode": cfg["mode"],
            "tau": check_positive("tau", cfg["tau"]),
            "kappa": check_positive("kappa", cfg["kappa"]),
            "batch_size": check_count("batch_size", cfg["batch_size"], 1),
        }
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{cfg_file}: {exc}") from exc
