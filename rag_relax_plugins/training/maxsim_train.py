"""Contrastive training of the MaxSim reranker's projection (late interaction learned, not borrowed).

Loss: InfoNCE (van den Oord et al., 2018) over MaxSim scores. For every (query, gold text) pair the
candidates are that gold text, the query's own non-gold candidates (for HotpotQA the 8 distractor
paragraphs: hard negatives) and every candidate of the other queries in the batch (in-batch
negatives); the query's other gold texts are masked out. Scores are the mean-over-query-tokens
MaxSim in ``[-1, 1]`` divided by ``temperature`` (ColBERT trains the summed score with a softmax
over one positive and one hard negative; here many negatives, as in later ColBERT versions).

With the backbone frozen (default) its token vectors are computed once
(:class:`~rag_relax_plugins.training.maxsim_data.TokenCache`) and each step only runs the
projection and MaxSim: an epoch over 400 HotpotQA questions takes seconds on a CPU.
``train_last_layers=N`` also fine-tunes the final ``N`` transformer layers (full forward per
step; use a GPU).

Python API: :func:`train_maxsim` with a :class:`MaxSimTrainConfig`; ``rag-relax train-maxsim``
wraps it::

    rag-relax train-maxsim --output runs/maxsim --epochs 4 --projection-dim 128

Writes ``train_config.json``, ``training.log``, ``checkpoint_epoch_N/`` (reranker, optimiser
state, trainer state), ``best_model/`` (best validation MRR; without validation groups, lowest mean
training loss), ``final_model/``, ``history.json`` and ``loss_curves.png``; ``resume_from``
continues from a checkpoint. A run stopped by ``max_steps`` inside an epoch writes that epoch's
checkpoint with its position (batches done, their losses, the negative-sampling generator state),
so a resume finishes the epoch instead of skipping its rest. Such a partial epoch is validated and
logged but never becomes ``best_model`` (the resume finishes it and it competes then). Checkpoints
store the best model when it is of an earlier epoch and a resume restores it into its
``output_dir``, so ``best_model/`` there is the run's best also in a new folder; a run that
completed no epoch (``max_steps`` below one epoch), or a resume of a checkpoint written before
best models were stored into a new folder, may write no ``best_model/``; a fresh run (no
``resume_from``) deletes the ``best_model/`` an earlier run left in its ``output_dir`` (a MaxSim
save of this package; anything else there is refused before anything is written), and the
earlier run's ``checkpoint_epoch_N/`` once it has written its first checkpoint.
A resume must use the checkpoint's options, except the runtime-only ones in
``maxsim_checkpoint.RESUME_RUNTIME_ONLY`` (else ``ValueError`` before anything is written).
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from rag_relax_plugins._io import atomic_write_json, atomic_write_text, check_save_target
from rag_relax_plugins.core.config_dict import DictConfig, plain_scalars
from rag_relax_plugins.core.device import resolve_device, seeded_rngs
from rag_relax_plugins.core.scalars import check_step_size
from rag_relax_plugins.core.validation import check_int, check_optional_count, check_positive
from rag_relax_plugins.rerankers.maxsim import (
    MaxSimConfig,
    MaxSimReranker,
    PackedTokens,
    pack_tokens,
)
from rag_relax_plugins.training._run_files import (
    EPOCH_CHECKPOINT_PREFIX,
    EarlierCheckpoints,
    earlier_best_model,
    restore_best_model,
    run_folder_with_log,
    said_if_diverged,
)
from rag_relax_plugins.training.maxsim_checkpoint import (
    adopt_reranker_config,
    check_best_model_folder,
    checked_resume,
    clear_earlier_best_model,
    load_optimizer,
    plot_history,
    read_trainer_state,
    save_checkpoint,
    training_data_sha256,
)
from rag_relax_plugins.training.maxsim_data import (
    QueryGroup,
    TokenCache,
    backbone_hidden_size,
    check_groups,
)
from rag_relax_plugins.training.maxsim_objective import (
    batch_scores,
    evaluate_groups,
    group_info_nce,
)

__all__ = ["MaxSimTrainConfig", "check_output_folders", "evaluate_groups", "group_info_nce", "train_maxsim"]

log = logging.getLogger(__name__)


# integer options and their least values; a batch needs 2 queries (in-batch negatives): smaller
# batches are dropped, so batch_size=1 trained nothing and wrote an untrained final_model/
_INTS = {"epochs": 1, "batch_size": 2, "max_seq_length": 8, "train_rows": 1, "val_rows": 0,
         "hard_negatives": 0, "train_last_layers": 0, "seed": 0}
_INT_NOTES = {"batch_size": "a batch needs 2 queries: the other queries' candidates are the in-batch negatives",
              "max_seq_length": "the reranker's own least: MaxSimConfig"}


@dataclass(frozen=True)
class MaxSimTrainConfig(DictConfig):
    """All options of :func:`train_maxsim` (saved as ``train_config.json``)."""

    _config_name = "training options"

    output_dir: str = "runs/maxsim"
    data: str | None = None  # distractor JSONL or data folder (default: $RAG_RELAX_DATA)
    train_rows: int = 400  # the first N distractor rows are training data (the rest: test)
    val_rows: int = 40  # the last M of those select best_model (0: the lowest mean training loss)
    evidence: bool = False  # add hotpotqa/evidence_500 pairs (in-batch negatives only)
    backbone: str | None = None
    projection_dim: int | None = 128
    max_seq_length: int = 256
    train_last_layers: int = 0
    epochs: int = 4
    batch_size: int = 16
    hard_negatives: int = 8  # distractors kept per question and step (sampled)
    learning_rate: float = 1e-3
    backbone_learning_rate: float = 2e-5
    weight_decay: float = 0.0
    temperature: float = 0.05
    max_steps: int | None = None
    seed: int = 0
    device: str | None = None
    resume_from: str | None = None
    cache_dir: str | None = None  # frozen-backbone token cache (default: <output_dir>/token_cache)
    show_progress: bool = True
    save_checkpoints: bool = True

    def __post_init__(self) -> None:
        plain_scalars(self)
        for name, low in _INTS.items():  # int() accepted epochs=2.5 and hard_negatives=True
            check_int(name, getattr(self, name), low, hint=_INT_NOTES.get(name, ""))
        for name in ("projection_dim", "max_steps"):
            check_optional_count(name, getattr(self, name), 1)
        if self.val_rows >= self.train_rows:
            raise ValueError(f"val_rows must be < train_rows ({self.train_rows}), got {self.val_rows}")
        for name in ("learning_rate", "backbone_learning_rate"):  # 1e38: AdamW overflowed at its first step
            check_step_size(name, getattr(self, name))
        check_positive("temperature", self.temperature)  # inf: NaN scores
        if not (self.weight_decay >= 0 and math.isfinite(self.weight_decay)):
            raise ValueError(f"weight_decay must be a finite number >= 0, got {self.weight_decay!r}")
        if self.projection_dim is None and self.train_last_layers == 0:
            raise ValueError("projection_dim=None needs train_last_layers > 0: nothing to train")

    def model_config(self, token_dim: int | None = None) -> MaxSimConfig:
        """The reranker config of this run; ``token_dim`` defaults to the backbone's hidden size
        (read offline from its ``config.json``; 384, MiniLM's, for the default backbone)."""
        if token_dim is None:
            token_dim = backbone_hidden_size(self.backbone)
        return MaxSimConfig(backbone=self.backbone, projection_dim=self.projection_dim,
                            max_seq_length=self.max_seq_length, token_dim=token_dim,
                            trained_layers=self.train_last_layers, seed=self.seed)


def _online_tokens(reranker: MaxSimReranker, texts: list[str], marker: str) -> PackedTokens:
    """Backbone token vectors with gradients (for ``train_last_layers > 0``)."""
    enc: Any = reranker.encoder
    feats = enc.tokenizer([marker + t for t in texts], padding=True, truncation=True,
                          max_length=reranker.config.max_seq_length, return_tensors="pt")
    feats = {k: v.to(reranker.device) for k, v in feats.items()}
    hidden = enc.model[0](dict(feats))["token_embeddings"].float()  # (B, L, D)
    from rag_relax_plugins.embedders.base import TokenEmbeddings

    return pack_tokens(TokenEmbeddings(hidden, feats["attention_mask"].bool()))


def linear_decay(step: int, total: int) -> float:
    """Learning-rate factor of optimiser step ``step`` (0-based): ``1 - step / total``, floored at 0."""
    return max(0.0, 1.0 - step / max(1, total))


def _batches(n: int, batch_size: int, seed: int, epoch: int) -> list[list[int]]:
    """Seeded shuffle per epoch (depends only on seed and epoch: resuming reproduces it)."""
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 10_007 + epoch)).tolist()
    return [order[s : s + batch_size] for s in range(0, n, batch_size) if len(order[s : s + batch_size]) >= 2]


def _sample_candidates(g: QueryGroup, k: int, gen: torch.Generator) -> tuple[list[int], list[int]]:
    """The group's gold rows and up to ``k`` sampled non-gold rows (table ids)."""
    gold = [g.candidates[i] for i in g.gold]
    neg = [c for i, c in enumerate(g.candidates) if i not in g.gold]
    if len(neg) > k:
        neg = [neg[i] for i in torch.randperm(len(neg), generator=gen)[:k].tolist()]
    return gold, neg


def training_step_loss(reranker: MaxSimReranker, batch: Sequence[QueryGroup], cfg: MaxSimTrainConfig, *,
                       gen: torch.Generator, queries: TokenCache | None, texts: TokenCache | None,
                       query_strings: Sequence[str], text_strings: Sequence[str]) -> torch.Tensor:
    """Loss of one batch of groups (cached tokens when the backbone is frozen, else online)."""
    cols: list[int] = []  # table rows of the batch's candidates, deduplicated
    where: dict[int, int] = {}
    gold_cols: list[list[int]] = []
    for g in batch:
        gold, neg = _sample_candidates(g, cfg.hard_negatives, gen)
        for row in gold + neg:
            if row not in where:
                where[row] = len(cols)
                cols.append(row)
        gold_cols.append([where[r] for r in gold])
    dev = reranker.device
    if queries is not None and texts is not None:
        q = queries.padded([g.query for g in batch], dev)
        docs = texts.gather(cols, dev)
    else:
        qp = _online_tokens(reranker, [query_strings[g.query] for g in batch], reranker.config.query_marker)
        docs = _online_tokens(reranker, [text_strings[c] for c in cols], reranker.config.document_marker)
        q = TokenCache(qp).padded(range(len(batch)), dev)  # type: ignore[arg-type]
    scores = batch_scores(reranker, q, docs)  # (B, C)
    return group_info_nce(scores, gold_cols, temperature=cfg.temperature)


def train_maxsim(
    cfg: MaxSimTrainConfig,
    groups: Sequence[QueryGroup],
    query_strings: Sequence[str],
    text_strings: Sequence[str],
    *,
    val_groups: Sequence[QueryGroup] = (),
    reranker: MaxSimReranker | None = None,
) -> dict[str, Any]:
    """Train the projection (and optionally the last backbone layers) of a MaxSim reranker.

    Args:
        cfg: options; ``cfg.output_dir`` receives models, checkpoints, logs and curves.
        groups: training groups (see :mod:`~rag_relax_plugins.training.maxsim_data`).
        query_strings, text_strings: the tables the groups' rows index.
        val_groups: groups whose MRR selects ``best_model`` (none: the epoch with the lowest mean
            training loss; ``history["val_mrr"]`` then holds minus that loss).
        reranker: start from this reranker (e.g. sharing a loaded encoder); default: a new one
            from ``cfg.model_config()`` (or the checkpoint's model when resuming). Its
            ``backbone``, ``projection_dim`` and ``max_seq_length`` replace ``cfg``'s defaults (and
            are recorded); ``cfg.seed`` seeds the training, not the reranker's initialisation.

    Returns:
        ``{"history", "output_dir", "steps", "best_val_mrr"}``; ``best_val_mrr`` is the value of
        the model in ``best_model/`` (an epoch stopped part-way by ``max_steps`` never is; on
        resume the checkpoint's best model is restored there), ``-inf`` when no complete epoch
        wrote one.

    Raises:
        FileNotFoundError: ``cfg.resume_from`` is not a checkpoint.
        ValueError: fewer than 2 groups; a group with a row outside the tables, no gold or a
            gold position outside its candidates (:func:`~.maxsim_data.check_groups`); ``reranker`` differs from options ``cfg`` sets; a resume
            whose options differ from the checkpoint's, runtime-only ones aside; a fresh run into a
            folder whose ``best_model/`` is not a MaxSim save (all raised before anything is written).
    """
    if len(groups) < 2:  # fewer: no batch (a batch needs 2 queries), an epoch of zero steps
        raise ValueError(f"groups must hold at least 2 queries, got {len(groups)}")
    check_groups("groups", groups, len(query_strings), len(text_strings))  # not an IndexError mid-run
    check_groups("val_groups", val_groups, len(query_strings), len(text_strings), require_gold=False)
    if reranker is not None:
        cfg = adopt_reranker_config(cfg, reranker.config)
    ck, options = checked_resume(cfg, training_data_sha256(groups, val_groups, query_strings, text_strings))
    if val_groups and not any(g.gold for g in val_groups):  # an MRR of 0 at every epoch picked epoch 1
        log.warning("none of the %d validation groups has a gold text: their MRR cannot select best_model, "
                    "which follows the training loss instead (as without validation groups)", len(val_groups))
        val_groups = ()
    check_output_folders(cfg, resumed=ck is not None)
    dev = reranker.device if reranker is not None else resolve_device(cfg.device)
    # removed again if refused before writing anything; the caller's RNG states are restored
    with run_folder_with_log(cfg.output_dir, log) as out, seeded_rngs(cfg.seed, dev):
        return _train(cfg, out, groups, query_strings=query_strings, text_strings=text_strings,
                      val_groups=val_groups, reranker=reranker, options=options, ck=ck)


def check_output_folders(cfg: MaxSimTrainConfig, *, resumed: bool) -> None:
    """Refuse now, not after training, a ``best_model/`` or ``final_model/`` in ``cfg.output_dir``
    that the run's saves would refuse (a folder of the user's), a resumed run's included (its
    best_model/ save refused one after a whole epoch). A fresh run also refuses a best_model/ that
    is not a MaxSim save (it would stay beside the run's models); a resumed run takes any save the
    best_model/ save replaces (one from before saves recorded their kind included)."""
    out = Path(cfg.output_dir)
    if resumed:  # what the run's best_model/ save replaces (it may have no restored copy to write)
        check_save_target(out / "best_model", kind=MaxSimReranker.SAVE_KIND)
    else:
        check_best_model_folder(out)
    check_save_target(out / "final_model", kind=MaxSimReranker.SAVE_KIND)


def _train(cfg: MaxSimTrainConfig, out: Path, groups: Sequence[QueryGroup], *, query_strings: Sequence[str],
           text_strings: Sequence[str], val_groups: Sequence[QueryGroup],
           reranker: MaxSimReranker | None, options: dict[str, Any], ck: Path | None) -> dict[str, Any]:
    from tqdm.auto import tqdm

    if reranker is None:
        reranker = (MaxSimReranker.load(ck / "model", device=cfg.device) if ck is not None
                    else MaxSimReranker(cfg.model_config(), device=cfg.device))
    elif ck is not None:
        reranker = MaxSimReranker.load(ck / "model", encoder=reranker.encoder)
    if cfg.train_last_layers and reranker.config.trained_layers != cfg.train_last_layers:
        reranker.config = replace(reranker.config, trained_layers=cfg.train_last_layers)
    frozen = cfg.train_last_layers == 0
    if frozen and cfg.backbone_learning_rate != MaxSimTrainConfig().backbone_learning_rate:
        log.warning("backbone_learning_rate=%g is not used: train_last_layers=0 trains no backbone layer",
                    cfg.backbone_learning_rate)
    groups_ = [{"params": list(reranker.head.parameters()), "lr": cfg.learning_rate}]
    backbone_params = list(reranker.trainable_backbone_parameters(cfg.train_last_layers).values()) if not frozen else []
    if backbone_params:  # gradients only for the unfrozen layers (the backbone stays in eval mode)
        backbone: Any = reranker.encoder
        for p in backbone.model.parameters():
            p.requires_grad_(False)
        for p in backbone_params:
            p.requires_grad_(True)
        groups_.append({"params": backbone_params, "lr": cfg.backbone_learning_rate})
    opt = torch.optim.AdamW(groups_, weight_decay=cfg.weight_decay)
    cache_dir = cfg.cache_dir or str(out / "token_cache")
    q_cache = t_cache = None
    if frozen:
        q_cache = TokenCache.build(reranker, query_strings, marker=reranker.config.query_marker, cache_dir=cache_dir)
        t_cache = TokenCache.build(reranker, text_strings, marker=reranker.config.document_marker,
                                   cache_dir=cache_dir, show_progress=cfg.show_progress)
    elif val_groups:
        log.warning("validation with train_last_layers > 0 re-encodes the validation texts each epoch")
    per_epoch = len(_batches(len(groups), cfg.batch_size, cfg.seed, 0))
    total = per_epoch * cfg.epochs if cfg.max_steps is None else min(per_epoch * cfg.epochs, cfg.max_steps)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: linear_decay(s, total))
    history: dict[str, list[float]] = {"step_loss": [], "train_loss": [], "val_mrr": []}
    start_epoch, start_batch, step, best = 0, 0, 0, -math.inf
    best_epoch: int | None = None  # the epoch (1-based) whose model best_model/ holds
    resumed_losses: list[float] = []  # losses of the batches done in start_epoch before a mid-epoch stop
    resumed_rng: list[int] | None = None  # negative-sampling generator state at that stop
    if ck is not None:
        state = read_trainer_state(ck)
        load_optimizer(opt, ck)
        sched.load_state_dict(state["scheduler"])
        # the saved groups hold the stopped run's last lr (0 after a max_steps stop): the next step
        # runs at this run's schedule, as an uninterrupted run of this length would
        for group, base in zip(opt.param_groups, sched.base_lrs, strict=True):
            group["lr"] = base * linear_decay(sched.last_epoch, total)
        start_epoch, step, best, history = state["epoch"], state["step"], state["best"], state["history"]
        start_batch = int(state.get("batch", 0))
        best_epoch = state.get("best_epoch")
        if not restore_best_model(ck, state, out / "best_model"):
            best_epoch = None  # unknown: only a later, better epoch writes best_model/
            if math.isfinite(best):
                log.warning("checkpoint %s holds no best model (older format): %s/best_model will not match "
                            "best_val_mrr %.5f unless a later epoch improves on it", ck, out, best)
        resumed_losses, resumed_rng = list(state.get("epoch_losses", [])), state.get("negative_rng")
        log.info("resumed from %s at epoch %d, batch %d, step %d", ck, start_epoch, start_batch, step)
    if ck is None:  # a fresh run: an earlier run's best_model/ must not pass for this run's
        clear_earlier_best_model(out)
    earlier = EarlierCheckpoints(fresh=ck is None, prefix=EPOCH_CHECKPOINT_PREFIX, trainer="train-maxsim")  # and its checkpoints go
    atomic_write_json(out / "train_config.json", cfg.to_dict())
    bar = tqdm(total=total, initial=step, disable=not cfg.show_progress, desc="train-maxsim")
    for epoch in range(start_epoch, cfg.epochs):
        if step >= total:
            break
        gen = torch.Generator().manual_seed(cfg.seed * 7_919 + epoch)  # negative sampling
        skip = start_batch if epoch == start_epoch else 0  # batches done before a mid-epoch stop
        losses: list[float] = list(resumed_losses) if skip else []
        if skip and resumed_rng is not None:
            gen.set_state(torch.tensor(resumed_rng, dtype=torch.uint8))
        reranker.head.train()
        batches = _batches(len(groups), cfg.batch_size, cfg.seed, epoch)
        done = skip
        for idx in batches[skip:]:
            with said_if_diverged(opt, step):  # a NaN weight failed the next step as "q or d contains NaN"
                loss = training_step_loss(reranker, [groups[i] for i in idx], cfg, gen=gen, queries=q_cache,
                                          texts=t_cache, query_strings=query_strings, text_strings=text_strings)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            losses.append(float(loss.detach()))
            history["step_loss"].append(losses[-1])
            bar.update(1)
            bar.set_postfix(loss=f"{losses[-1]:.4f}")
            done += 1
            if step >= total:
                break
        reranker.head.eval()
        if done < len(batches) and cfg.save_checkpoints:
            # stopped mid-epoch (max_steps): record the position, the epoch's losses so far and the
            # sampling generator, before this partial epoch's summary enters the history, so that a
            # resume finishes the epoch exactly as an uninterrupted run would
            state = {"epoch": epoch, "batch": done, "epoch_losses": losses, "negative_rng": gen.get_state().tolist(),
                     "step": step, "best": best, "best_epoch": best_epoch, "history": history,
                     "scheduler": sched.state_dict(), "config": options}
            earlier.written(save_checkpoint(out / f"{EPOCH_CHECKPOINT_PREFIX}{epoch + 1}", reranker, opt, state,
                                            best_model=earlier_best_model(out, best_epoch, own_epoch=None)))
        history["train_loss"].append(sum(losses) / max(1, len(losses)))
        val = (_validate(reranker, val_groups, q_cache=q_cache, t_cache=t_cache,
                         query_strings=query_strings, text_strings=text_strings)
               if val_groups else -history["train_loss"][-1])
        history["val_mrr"].append(val)
        log.info("epoch %d train_loss %.5f val %.5f", epoch + 1, history["train_loss"][-1], val)
        if val > best and done == len(batches):  # a partial epoch competes once a resume finishes it
            best, best_epoch = val, epoch + 1
            reranker.save(out / "best_model")
        if cfg.save_checkpoints and done == len(batches):
            state = {"epoch": epoch + 1, "step": step, "best": best, "best_epoch": best_epoch, "history": history,
                     "scheduler": sched.state_dict(), "config": options}
            earlier.written(save_checkpoint(out / f"{EPOCH_CHECKPOINT_PREFIX}{epoch + 1}", reranker, opt, state,
                                            best_model=earlier_best_model(out, best_epoch, own_epoch=epoch + 1)))
    bar.close()
    reranker.save(out / "final_model")
    atomic_write_text(out / "history.json", json.dumps(history) + "\n")  # as before: a NaN loss stays NaN
    plot_history(history, out / "loss_curves.png")
    return {"history": history, "output_dir": str(out), "steps": step, "best_val_mrr": best}


def _validate(reranker: MaxSimReranker, val_groups: Sequence[QueryGroup], *, q_cache: TokenCache | None,
              t_cache: TokenCache | None, query_strings: Sequence[str], text_strings: Sequence[str]) -> float:
    """Validation MRR (with a trained backbone, the validation texts are encoded afresh)."""
    if q_cache is not None and t_cache is not None:
        return evaluate_groups(reranker, val_groups, q_cache, t_cache, metrics=("mrr",))["all"]["mrr"]
    rows = sorted({c for g in val_groups for c in g.candidates})
    where = {r: i for i, r in enumerate(rows)}
    texts = TokenCache(reranker.backbone_tokens([text_strings[r] for r in rows], marker=reranker.config.document_marker))
    local = [QueryGroup(g.query, tuple(where[c] for c in g.candidates), g.gold, g.type) for g in val_groups]
    if q_cache is None:
        q_cache = TokenCache(reranker.backbone_tokens(list(query_strings), marker=reranker.config.query_marker))
    return evaluate_groups(reranker, local, q_cache, texts, metrics=("mrr",))["all"]["mrr"]
