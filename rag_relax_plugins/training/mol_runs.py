"""End-to-end runs: data -> model -> training -> evaluation, for MovieLens and HotpotQA.

:func:`run_movielens` and :func:`run_hotpot` back ``rag-relax train-mol`` and
``benchmarks/bench_mol_quality.py``. Both return a JSON-serialisable report
``{"dataset", "similarity", "seed", "metrics", "history", "steps", ...}``.

Evaluation protocols:

- MovieLens: leave-last-out; each user's query is the last ``L`` training items, the target is
  the held-out last item, ranked against **all** items except the user's training items (and the
  padding id): HR@10, HR@50, NDCG@10, NDCG@50, MRR; the report also keeps each query's target
  rank (``test_ranks``) for paired comparisons (:func:`~.mol_eval.paired_hit_difference`).
- HotpotQA: the test half of the questions against the whole open corpus (all unique paragraphs
  of the distractor file); Recall@10 and nDCG@10 over the gold paragraphs present in the corpus;
  test questions without such a paragraph are skipped.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from rag_relax_plugins._io import atomic_write_bytes, check_save_target, read_tensors
from rag_relax_plugins.core.modes import eval_mode
from rag_relax_plugins.core.scalars import check_nonnegative
from rag_relax_plugins.embedders.base import encoder_settings
from rag_relax_plugins.training.mol_data import (
    NextItemData,
    OpenCorpusSplit,
    hotpot_open_split,
    movielens_next_item,
)
from rag_relax_plugins.training.mol_eval import (
    next_item_metrics,
    rank_metrics,
    ranked_metrics,
    score_all,
    target_ranks,
)
from rag_relax_plugins.training.mol_recipes import (
    MODEL_KIND,
    RecipeConfig,
    build_hotpot_model,
    build_movielens_model,
    save_recipe_model,
)
from rag_relax_plugins.training.mol_towers import DotProductSimilarity, TwoTowerModel
from rag_relax_plugins.training.mol_train import MoLTrainConfig, train_retrieval

__all__ = ["HotpotFeatures", "encode_hotpot", "hotpot_cosine_metrics", "run_hotpot", "run_movielens"]

log = logging.getLogger(__name__)

MOVIELENS_METRICS = ("hr@10", "hr@50", "ndcg@10", "ndcg@50", "mrr")
HOTPOT_METRICS = ("recall@10", "ndcg@10")


def _init_model(build: Any, seed: int) -> TwoTowerModel:
    """Build a model with parameters drawn from ``seed`` without touching the caller's RNG."""
    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(seed)  # the CPU only: parameters are built there
        model: TwoTowerModel = build()
    return model


def run_movielens(
    cfg: MoLTrainConfig,
    recipe: RecipeConfig,
    *,
    data: NextItemData | str | os.PathLike[str] | None = None,
    resume: bool | str = False,
    save_to: str | os.PathLike[str] | None = None,
    eval_each_epoch: bool = False,
) -> dict[str, Any]:
    """Train and evaluate a MovieLens next-item retriever (MoL or cosine, per ``recipe``).

    Args:
        cfg: training options (``cfg.seed`` also seeds the initial weights).
        recipe: model sizes.
        data: prepared :class:`NextItemData`, or the MovieLens folder (default: the shared data).
        resume: continue from the latest checkpoint in ``cfg.checkpoint_dir`` (``True``) or from
            the checkpoint folder given.
        save_to: write the trained model there (:func:`save_recipe_model`).
        eval_each_epoch: also record test metrics after every epoch (for the loss-curve plot).
    """
    if save_to is not None:  # refused now, not after the training (atomic_folder would at the end)
        check_save_target(save_to, kind=MODEL_KIND)
    if not isinstance(data, NextItemData):
        from rag_relax_plugins.datasets.movielens import load_movielens

        data = movielens_next_item(load_movielens(data), max_len=recipe.max_len)
    if data.max_len != recipe.max_len:
        raise ValueError(f"data was built with max_len={data.max_len}, recipe has {recipe.max_len}")
    if recipe.user_embedding:
        data = data.with_user_ids()  # queries become (., 1 + L): user id, then history
    elif data.user_column:
        raise ValueError("data queries carry user ids but recipe.user_embedding is False")
    d = data
    model = _init_model(lambda: build_movielens_model(d.num_items, recipe, num_users=d.num_users), cfg.seed)

    def evaluate(m: TwoTowerModel) -> dict[str, float]:
        return next_item_metrics(score_all(m, d.test_histories), d.test_targets, d.test_seen, ks=(10, 50))

    t0 = time.perf_counter()
    result = train_retrieval(model, d.train, cfg, resume=resume, eval_fn=evaluate if eval_each_epoch else None)
    seconds = time.perf_counter() - t0
    ranks = target_ranks(score_all(model, d.test_histories), d.test_targets, d.test_seen)
    metrics = rank_metrics(ranks, ks=(10, 50))
    if save_to is not None:
        save_recipe_model(model, save_to, dataset="movielens", recipe=recipe)
    return {
        "dataset": "movielens",
        "similarity": recipe.similarity,
        "seed": cfg.seed,
        "metrics": metrics,
        "steps": result.steps,
        "train_seconds": seconds,
        "num_train_pairs": int(d.train.items.shape[0]),
        "num_test_users": int(d.test_targets.shape[0]),
        "num_items": d.num_items - len(d.train.excluded_items),  # the catalogue: not padding nor id gaps
        "test_ranks": ranks.tolist(),
        "history": result.history,
    }


@dataclass(frozen=True)
class HotpotFeatures:
    """MiniLM (or other encoder) features of a :class:`OpenCorpusSplit`, computed once.

    Attributes:
        split: the split the rows follow.
        train_queries: ``(Q_train, D) x float32``.
        test_queries: ``(Q_test, D) x float32``.
        docs: ``(N, D) x float32``.
    """

    split: OpenCorpusSplit
    train_queries: torch.Tensor
    test_queries: torch.Tensor
    docs: torch.Tensor


def _texts_digest(split: OpenCorpusSplit) -> str:
    h = hashlib.sha256()
    for part in (split.train_questions, split.test_questions, split.doc_texts):
        for t in part:
            h.update(t.encode("utf-8"))
            h.update(b"\0")
        h.update(b"\1")
    return h.hexdigest()


def encode_hotpot(
    split: OpenCorpusSplit,
    encoder: Any,
    *,
    batch_size: int = 64,
    show_progress: bool = False,
    cache: str | os.PathLike[str] | None = None,
) -> HotpotFeatures:
    """Encode questions and paragraphs with a :class:`~rag_relax_plugins.embedders.base.TextEncoder`.

    Args:
        split: from :func:`hotpot_open_split`.
        encoder: anything with ``encode(texts, batch_size=, normalize=, show_progress=)``.
        batch_size: texts per forward pass.
        show_progress: progress bars of the encoder.
        cache: optional ``.safetensors`` file, written atomically. It is reused only when it holds
            features of the same texts (a SHA-256 of all texts) from the same encoder (its class
            and settings, e.g. the model folder and its weight files' sizes and times:
            :func:`~rag_relax_plugins.embedders.base.encoder_settings`) and a fresh encoding of the
            first question and the first paragraph matches the stored rows; else
            everything is encoded again and the file replaced.
    """
    from safetensors.torch import save

    def enc(texts: list[str]) -> torch.Tensor:
        return encoder.encode(texts, batch_size=batch_size, normalize=True, show_progress=show_progress).float().cpu()

    digest, enc_key = _texts_digest(split), json.dumps(encoder_settings(encoder), sort_keys=True)
    if cache is not None and Path(cache).is_file():
        from safetensors import SafetensorError, safe_open

        try:  # a cache: a corrupt, truncated or foreign file is encoded again, not an error
            with safe_open(str(cache), framework="pt") as fh:
                meta = fh.metadata() or {}
            t = read_tensors(cache) if meta.get("texts_sha256") == digest and meta.get("encoder") == enc_key else None
            stored = None if t is None else HotpotFeatures(split, t["train_queries"], t["test_queries"], t["docs"])
        except (SafetensorError, OSError, ValueError, KeyError) as exc:
            log.warning("%s is not a readable feature cache (%s): encoding again", cache, exc)
            stored = None
        if stored is not None:
            probe = enc([split.train_questions[0], split.doc_texts[0]])  # (2, D)
            kept = torch.stack([stored.train_queries[0], stored.docs[0]])
            if probe.shape == kept.shape and torch.allclose(probe, kept, atol=1e-4, rtol=1e-3):
                return stored
            log.info("%s was written by an encoder with other weights: encoding again", cache)

    feats = HotpotFeatures(split, enc(split.train_questions), enc(split.test_questions), enc(split.doc_texts))
    if cache is not None:
        tensors = {"train_queries": feats.train_queries, "test_queries": feats.test_queries, "docs": feats.docs}
        meta = {"texts_sha256": digest, "encoder": enc_key}
        # atomic, and an interrupt leaves no temporary file behind
        atomic_write_bytes(cache, save({k: v.contiguous() for k, v in tensors.items()}, metadata=meta))
    return feats


def _hotpot_scores(model: TwoTowerModel, query_features: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """``(Q, N)`` scores of new query features against every document of ``model``."""
    with torch.inference_mode(), eval_mode(model):
        dev = next((p.device for p in model.parameters()), torch.device("cpu"))
        items = model.item_tower(torch.arange(model.num_items, device=dev))  # (N, D)
        rows = [
            model.score(query_features[s : s + batch_size].to(dev), items)[0].float().cpu()
            for s in range(0, query_features.shape[0], batch_size)
        ]
    return torch.cat(rows)


def hotpot_cosine_metrics(features: HotpotFeatures) -> dict[str, float]:
    """Test metrics of plain cosine over the frozen features (the untrained baseline)."""
    scores, _ = DotProductSimilarity(normalize=True)(features.test_queries, features.docs)
    return ranked_metrics(scores, features.split.doc_ids, features.split.test_qrels, HOTPOT_METRICS)


def run_hotpot(
    cfg: MoLTrainConfig,
    recipe: RecipeConfig,
    *,
    data: str | os.PathLike[str] | None = None,
    features: HotpotFeatures | None = None,
    model_path: str | None = None,
    resume: bool | str = False,
    save_to: str | os.PathLike[str] | None = None,
    warm_start_noise: float = 0.1,
) -> dict[str, Any]:
    """Train a MoL head over frozen features of HotpotQA and evaluate it on the test questions.

    Args:
        cfg: training options.
        recipe: MoL sizes (``similarity="dot"`` trains nothing and reports cosine).
        data: the distractor file or data folder (used when ``features`` is None).
        features: precomputed :class:`HotpotFeatures` (reuse across seeds).
        model_path: sentence-transformers folder (default: the offline MiniLM).
        resume: continue from the latest checkpoint in ``cfg.checkpoint_dir`` (``True``) or from
            the checkpoint folder given.
        save_to: write the trained model there.
        warm_start_noise: noise of the identity warm start of the MoL projections.
    """
    check_nonnegative("warm_start_noise", warm_start_noise)  # refused before the corpus is encoded
    if save_to is not None:  # refused now, not after the training
        check_save_target(save_to, kind=MODEL_KIND)
    if features is None:
        from rag_relax_plugins.datasets.hotpotqa import load_hotpotqa_distractor
        from rag_relax_plugins.embedders.sentence_transformer import SentenceTransformerEncoder

        split = hotpot_open_split(load_hotpotqa_distractor(data))
        encoder = SentenceTransformerEncoder(model_path, device=cfg.device)
        cache = Path(save_to).parent / "features.safetensors" if save_to is not None else None
        features = encode_hotpot(split, encoder, show_progress=cfg.show_progress, cache=cache)
    split = features.split
    cosine = hotpot_cosine_metrics(features)
    report: dict[str, Any] = {
        "dataset": "hotpotqa",
        "similarity": recipe.similarity,
        "seed": cfg.seed,
        "cosine_metrics": cosine,
        "num_train_pairs": int(split.train_pairs.items.shape[0]),
        "num_test_queries": sum(1 for q in split.test_qrels if q),
        "num_docs": len(split.doc_ids),
    }
    if recipe.similarity == "dot":
        return {**report, "metrics": cosine, "steps": 0, "train_seconds": 0.0, "history": {"step_loss": []}}
    f = features
    model = _init_model(
        lambda: build_hotpot_model(f.train_queries, f.docs, recipe, warm_start_noise=warm_start_noise, seed=cfg.seed),
        cfg.seed,
    )

    def evaluate(m: TwoTowerModel) -> dict[str, float]:
        return ranked_metrics(_hotpot_scores(m, f.test_queries), split.doc_ids, split.test_qrels, HOTPOT_METRICS)

    t0 = time.perf_counter()
    result = train_retrieval(model, split.train_pairs, cfg, resume=resume)
    seconds = time.perf_counter() - t0
    if save_to is not None:
        save_recipe_model(model, save_to, dataset="hotpotqa", recipe=recipe, extra={"warm_start_noise": warm_start_noise})
    return {**report, "metrics": evaluate(model), "steps": result.steps, "train_seconds": seconds, "history": result.history}
