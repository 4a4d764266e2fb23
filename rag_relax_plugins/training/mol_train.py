"""Training loop for learned similarities (Mixture-of-Logits) over any query/item towers.

Implements the training recipe of Ding & Zhai, "Retrieval with Learned Similarities" (WWW 2025,
arXiv 2407.15462): a sampled softmax over MoL scores with in-batch negatives (optionally
plus uniformly sampled negatives with logQ correction, see :mod:`.mol_loss`) and the
load-balancing / mutual-information loss ``L_MI`` that the MoL module returns among its auxiliary
losses, weighted by ``mi_weight``. Departures from the paper: one uniform-negative pool shared by
the batch; a linear warm-up + cosine LR schedule (the paper's optimiser settings are not
replicated).

Python API::

    from rag_relax_plugins.training.mol_train import MoLTrainConfig, PairData, train_retrieval
    cfg = MoLTrainConfig(epochs=5, batch_size=256, lr=1e-3, num_negatives=128,
                         checkpoint_dir="runs/mol/checkpoints")
    result = train_retrieval(model, PairData(queries, items, num_items), cfg)

``rag-relax train-mol`` wraps it for MovieLens and HotpotQA (see ``_cli/train_mol.py``).

Determinism and resume: batch order depends only on ``(seed, epoch)``, sampled negatives and
dropout only on ``(seed, step)`` (each step runs under a forked RNG seeded from them), and the LR
is a pure function of the step. A checkpoint therefore needs only the weights, the optimiser
state, the step and the history: a run interrupted at any step and resumed produces the same
loss curve and weights as an uninterrupted one.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from rag_relax_plugins.core.device import (
    autocast,
    grad_scaler,
    precision_notes,
    resolve_device,
    seeded_rngs,
)
from rag_relax_plugins.training._resume_check import check_resume_options
from rag_relax_plugins.training._run_files import (
    EarlierCheckpoints,
    checkpoint_folder,
    prune_checkpoints,
    pyplot,
    save_png,
)
from rag_relax_plugins.training.mol_checkpoint import (
    latest_checkpoint,
    load_checkpoint,
    read_trainer_state,
    save_checkpoint,
)
from rag_relax_plugins.training.mol_loss import mixed_log_q, sampled_softmax_loss
from rag_relax_plugins.training.mol_towers import TwoTowerModel
from rag_relax_plugins.training.mol_train_config import MoLTrainConfig, PairData

__all__ = ["MoLTrainConfig", "PairData", "TrainResult", "lr_at", "plot_loss_curve", "train_retrieval"]

log = logging.getLogger(__name__)

# options that may change between an interrupted run and its resumption
_RUNTIME_ONLY = {"max_steps", "show_progress", "device", "checkpoint_dir", "save_every_steps", "keep_checkpoints"}


@dataclass
class TrainResult:
    """What :func:`train_retrieval` returns."""

    history: dict[str, Any]
    steps: int
    checkpoint: Path | None = None


def lr_at(step: int, *, total_steps: int, warmup_steps: int = 0, min_ratio: float = 0.0) -> float:
    """LR multiplier for optimiser step ``step`` (0-based): linear warm-up, then cosine decay.

    Pure function: ``(step + 1) / warmup_steps`` during warm-up, then
    ``min_ratio + (1 - min_ratio) * (1 + cos(pi * t)) / 2`` with ``t`` going from 0 to 1 over the
    remaining steps.
    """
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    span = max(1, total_steps - warmup_steps)
    t = min(1.0, (step - warmup_steps) / span)
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * t))


def _step_seed(seed: int, step: int) -> int:
    return (seed * 1_000_003 + step * 7_919 + 17) % (2**63 - 1)


def _epoch_order(n: int, seed: int, epoch: int) -> torch.Tensor:
    g = torch.Generator().manual_seed((seed * 10_007 + epoch * 31 + 5) % (2**63 - 1))
    return torch.randperm(n, generator=g)


def _steps_per_epoch(n: int, batch_size: int) -> int:
    full, rest = divmod(n, batch_size)
    return full + (1 if rest >= 2 else 0)  # a last batch of one pair has no in-batch negative


def _sample_negatives(data: PairData, s: int, g: torch.Generator) -> torch.Tensor:
    if s == 0:
        return torch.empty(0, dtype=torch.long)
    if data.num_sampleable() < 1:
        raise ValueError("every item is excluded; no negatives can be drawn")
    draws = torch.randint(0, data.num_items, (s * 2 + 8,), generator=g)
    if data.excluded_items:
        bad = torch.tensor(sorted(set(data.excluded_items)), dtype=torch.long)
        draws = draws[~torch.isin(draws, bad)]
        while draws.numel() < s:  # rare: many excluded ids
            more = torch.randint(0, data.num_items, (s,), generator=g)
            draws = torch.cat([draws, more[~torch.isin(more, bad)]])
    return draws[:s]


def training_step_loss(
    model: TwoTowerModel,
    queries: Any,
    positives: torch.Tensor,
    negatives: torch.Tensor,
    cfg: MoLTrainConfig,
    *,
    item_probs: torch.Tensor | None = None,
    query_keys: torch.Tensor | None = None,
    relevant_codes: torch.Tensor | None = None,
    num_sampleable: int | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Loss of one batch: sampled softmax over ``[positives; negatives]`` + ``mi_weight * aux``.

    Args:
        queries: ``B`` query inputs; positives: ``(B,) x long``; negatives: ``(S,) x long``.
        item_probs: ``(N,)`` positive shares for the logQ correction, or ``None``.
        query_keys: ``(B,) x long`` query identity of each row, or ``None``.
        relevant_codes: sorted ``key * N + item`` of every relevant pair
            (:meth:`PairData.relevant_codes`): a candidate relevant to the row's query is masked
            in every column. ``None`` with ``query_keys``: only in-batch columns of the same key.
        num_sampleable: ids the uniform negatives come from (logQ); default ``N``.
    """
    cand = torch.cat([positives, negatives])  # (B + S,) candidate ids, positives first
    scores, aux = model(queries, cand)  # (B, B + S)
    log_q = None
    if cfg.logq_correction and item_probs is not None:
        log_q = mixed_log_q(cand, item_probs, batch_size=positives.shape[0], num_uniform=negatives.shape[0],
                            num_sampleable=num_sampleable)
    exclude = None
    if query_keys is not None:  # other relevant items of the same query are not negatives
        b = positives.shape[0]
        if relevant_codes is not None:
            codes = query_keys[:, None] * model.num_items + cand[None, :]  # (B, B + S)
            exclude = torch.isin(codes, relevant_codes)
        else:
            exclude = torch.zeros(b, cand.shape[0], dtype=torch.bool, device=scores.device)
            exclude[:, :b] = query_keys[:, None] == query_keys[None, :]
    ce = sampled_softmax_loss(
        scores.float(), positives, cand, log_q=log_q, temperature=cfg.temperature, exclude=exclude
    )
    parts = {"softmax": float(ce.detach())}
    total = ce
    for name, value in aux.items():
        parts[name] = float(value.detach())
        if cfg.mi_weight > 0:
            total = total + cfg.mi_weight * value.float()
    return total, parts


_SIMPLE = (bool, int, float, str, type(None))


def run_signature(model: TwoTowerModel, data: PairData) -> dict[str, str]:
    """SHA-256 fingerprints of what a resumed run must share with the interrupted one.

    ``"model"``: every submodule's class, ``extra_repr`` (e.g. dropout rates), public attributes
    of simple types (``tau``, ``normalize``, ``max_len`` ...) and ``config.to_dict()`` where it
    has one (e.g. :class:`~rag_relax_plugins.core.mol.MoLConfig`); the weights' names and shapes
    are checked when they load. ``"data"``: the pair tensors, ``num_items``, the excluded ids and
    the query keys. ``"features"``: the model's non-persistent buffers, i.e. the frozen features
    of a :class:`~rag_relax_plugins.training.mol_towers.FeatureTower` (another encoder or an
    edited text changes them; recomputing the same features on another machine or thread count
    may change their last bits too, and is refused as well: resume with the same features file).
    """
    parts: list[Any] = []
    settings: dict[str, Any] = {}  # the same, flat: a refused resume names what changed
    for name, mod in model.named_modules():
        attrs = {k: v for k, v in sorted(vars(mod).items())
                 if not k.startswith("_") and k != "training" and isinstance(v, _SIMPLE)}
        to_dict = getattr(getattr(mod, "config", None), "to_dict", None)
        conf = to_dict() if callable(to_dict) else None
        # the hash leaves the warm start out, as checkpoints before 2026-12-04 computed it (they
        # still resume); the settings below carry it, and a checkpoint holding them compares them too
        hashed = {k: v for k, v in attrs.items() if k != "warm_start_noise"}
        parts.append([name, type(mod).__name__, mod.extra_repr(), hashed, conf])
        where = name or "model"
        settings[f"{where} (class)"] = type(mod).__name__
        if mod.extra_repr():
            settings[f"{where} ({type(mod).__name__})"] = mod.extra_repr()
        settings.update({f"{where}.{k}": v for k, v in attrs.items()})
        settings.update({f"{where}.config.{k}": v for k, v in (conf or {}).items()})
    model_hash = hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()
    h = hashlib.sha256(json.dumps([data.num_items, sorted(data.excluded_items)]).encode())
    for t in (data.queries, data.items, data.query_keys):
        if t is None:
            h.update(b"none")
            continue
        h.update(f"{t.dtype}{tuple(t.shape)}".encode())
        h.update(t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())  # bf16 too
    persistent = set(model.state_dict())
    f = hashlib.sha256()
    for name, buf in sorted(model.named_buffers()):
        if name in persistent:
            continue
        f.update(f"{name}{buf.dtype}{tuple(buf.shape)}".encode())
        f.update(buf.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return {"model": model_hash, "data": h.hexdigest(), "features": f.hexdigest(),
            _SETTINGS: json.dumps(settings, sort_keys=True, default=str)}


_SETTINGS = "model_settings"  # not a fingerprint: the model's settings, read to name a change


def _changed_settings(saved: str | None, now: str | None) -> str:
    """``" (changed: similarity.tau (checkpoint 0.05, now 0.1), ...)"``, or ``""`` when either side
    is missing (a checkpoint from before the settings were recorded)."""
    try:
        before, after = json.loads(saved or ""), json.loads(now or "")
    except ValueError:
        return ""
    if not (isinstance(before, dict) and isinstance(after, dict)):
        return ""
    missing = object()
    changes = [f"{k} (checkpoint {before.get(k, 'unset')!r}, now {after.get(k, 'unset')!r})"
               for k in sorted(before.keys() | after.keys()) if before.get(k, missing) != after.get(k, missing)]
    return f" (changed: {', '.join(changes[:6])}{', ...' if len(changes) > 6 else ''})" if changes else ""


def _check_resume_signature(saved: dict[str, str] | None, now: dict[str, str], src: Path | None = None) -> None:
    if saved is None:  # a checkpoint written before signatures existed
        log.warning("checkpoint has no model/data signature; resuming without checking them")
        return
    unknown = sorted(k for k in now if k not in saved and k != _SETTINGS)  # keys newer than the checkpoint
    if unknown:
        log.warning("checkpoint predates the %s signature; resuming without checking it", ", ".join(unknown))
    diff = sorted(k for k in now if k in saved and k != _SETTINGS and saved[k] != now[k])
    if "model" not in diff and _SETTINGS in saved and _changed_settings(saved[_SETTINGS], now.get(_SETTINGS)):
        diff = sorted({*diff, "model"})  # what the hash leaves out (the warm start) differs
    if diff:
        what = {"model": "a different model configuration (e.g. tau, dropout, MoL options, warm start)"
                + _changed_settings(saved.get(_SETTINGS), now.get(_SETTINGS)),
                "data": "different training data",
                "features": "different frozen features (another encoder, edited texts, or recomputed features)"}
        raise ValueError(f"cannot resume{f' from {src}' if src is not None else ''}: the checkpoint was trained "
                         "with " + " and ".join(what[k] for k in diff))


def train_retrieval(
    model: TwoTowerModel,
    data: PairData,
    cfg: MoLTrainConfig,
    *,
    resume: bool | str | os.PathLike[str] | None = False,
    eval_fn: Callable[[TwoTowerModel], dict[str, float]] | None = None,
) -> TrainResult:
    """Train ``model`` on ``data``; see the module docstring for the loss and determinism.

    Args:
        model: the two-tower model (moved to ``cfg.device``).
        data: training pairs; negatives are never drawn from its ``excluded_items`` nor from
            ``model.excluded_items`` (e.g. the padding id 0).
        cfg: options.
        resume: ``True`` resumes from the latest checkpoint in ``cfg.checkpoint_dir`` (if any;
            none found starts fresh, with a log message; no ``checkpoint_dir``: ``ValueError``), a path (``str`` or ``PathLike``)
            resumes from that checkpoint folder, ``False`` or ``None`` starts fresh (any other
            value: ``TypeError``). The checkpoint must come
            from the same training options (runtime-only ones aside), model configuration and
            data (:func:`run_signature`), else ``ValueError``.
        eval_fn: called on the model (in eval mode) after each epoch; its metrics go to
            ``history["eval"]``.

    Returns:
        :class:`TrainResult` with ``history`` = ``{"step_loss": [...], "step_parts": [...],
        "epoch_loss": [...], "eval": [...]}`` and the last checkpoint path.
    """
    from tqdm.auto import tqdm

    if not isinstance(model, TwoTowerModel):
        raise TypeError(f"model must be a TwoTowerModel, got {type(model).__name__}")
    if data.num_items != model.num_items:
        raise ValueError(f"data.num_items ({data.num_items}) must equal model.num_items ({model.num_items})")
    if resume is None:  # no checkpoint given (e.g. an absent option): a fresh run
        resume = False
    elif (np := sys.modules.get("numpy")) is not None and isinstance(resume, np.bool_):  # a numpy flag
        resume = bool(resume)
    if not isinstance(resume, (bool, str, os.PathLike)):  # 0 or [] resumed from the latest checkpoint
        raise TypeError(f"resume must be True, False, None or a checkpoint folder (str or PathLike), got {resume!r}")
    if resume is True and not cfg.checkpoint_dir:
        raise ValueError("resume=True looks for the latest checkpoint in cfg.checkpoint_dir, which is not set: "
                         "set it, or pass the checkpoint folder as resume")
    missing = sorted(set(model.excluded_items) - set(data.excluded_items))
    if missing:  # the model's never-candidates (e.g. padding) are never negatives either
        log.info("excluding the model's excluded_items %s from the negatives as well", missing)
        data = replace(data, excluded_items=tuple(sorted({*data.excluded_items, *model.excluded_items})))
    dev = resolve_device(cfg.device)
    model.to(dev)
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("model has no trainable parameters")
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    n = data.items.shape[0]
    spe = _steps_per_epoch(n, cfg.batch_size)
    total = spe * cfg.epochs
    item_probs = data.item_probs().to(dev) if cfg.logq_correction else None
    codes = data.relevant_codes()
    relevant = None if codes is None else codes.to(dev)
    sampleable = data.num_sampleable()  # per run, not per step
    history: dict[str, Any] = {"step_loss": [], "step_parts": [], "epoch_loss": [], "eval": []}
    step = 0
    last_ckpt: Path | None = None
    # only a checkpoint or a resume reads it (it hashes the frozen features)
    signature = run_signature(model, data) if resume is not False or cfg.checkpoint_dir else {}
    # fp16 autocast needs loss scaling (gradients underflow otherwise); a no-op in every other case
    scaler = grad_scaler(dev.type, enabled=cfg.mixed_precision == "fp16" and dev.type == "cuda")
    for note in precision_notes(dev, cfg.mixed_precision):  # fp16 on MPS: no scaling; CPU: float32
        log.warning(note)
    if resume is not False:
        src: Path | None
        if isinstance(resume, (str, os.PathLike)):
            src = Path(resume)
        else:
            src = latest_checkpoint(cfg.checkpoint_dir) if cfg.checkpoint_dir else None
        if src is not None:
            checkpoint_folder(src, trainer="train-mol")  # refuses another trainer's checkpoint
            saved = read_trainer_state(src)  # checked before any weight of the caller's is replaced
            check_resume_options(saved["config"], cfg.to_dict(), _RUNTIME_ONLY, src)
            _check_resume_signature(saved.get("signature"), signature, src)
            state = load_checkpoint(src, model, opt)
            if scaler.is_enabled() and state.get("grad_scaler"):
                scaler.load_state_dict(state["grad_scaler"])
            step, history, last_ckpt = int(state["step"]), state["history"], src
            log.info("resumed from %s at step %d", src, step)
        else:
            log.warning("resume requested but no checkpoint found in %s: starting fresh", cfg.checkpoint_dir)
    # a fresh run replaces an earlier run's checkpoints once it has written its first one (a run
    # that fails before then leaves them as they were)
    earlier = EarlierCheckpoints(fresh=last_ckpt is None, trainer="train-mol")
    stop = total if cfg.max_steps is None else min(total, cfg.max_steps)
    bar = tqdm(total=total, initial=step, disable=not cfg.show_progress, desc="train-mol")

    def checkpoint() -> Path | None:
        if cfg.checkpoint_dir is None:
            return None
        state = {"step": step, "config": cfg.to_dict(), "history": history, "signature": signature}
        if scaler.is_enabled():
            state["grad_scaler"] = scaler.state_dict()
        path = save_checkpoint(Path(cfg.checkpoint_dir) / f"checkpoint_step_{step}", model, opt, state)
        earlier.written(path)
        prune_checkpoints(Path(cfg.checkpoint_dir), cfg.keep_checkpoints, current=step, trainer="train-mol")
        return path

    while step < stop:
        epoch, i = divmod(step, spe)
        order = _epoch_order(n, cfg.seed, epoch)
        idx = order[i * cfg.batch_size : (i + 1) * cfg.batch_size]
        model.train()
        seed = _step_seed(cfg.seed, step)
        with seeded_rngs(seed, dev):
            g = torch.Generator().manual_seed(seed)
            negs = _sample_negatives(data, cfg.num_negatives, g).to(dev)
            with autocast(dev, cfg.mixed_precision):
                keys = None if data.query_keys is None else data.query_keys[idx].to(dev)
                loss, parts = training_step_loss(
                    model, data.queries[idx].to(dev), data.items[idx].to(dev), negs, cfg,
                    item_probs=item_probs, query_keys=keys, relevant_codes=relevant,
                    num_sampleable=sampleable,
                )
            loss_value = float(loss.detach())
            if not math.isfinite(loss_value):
                raise ValueError(f"training diverged at step {step + 1} (loss is {loss_value}): lower the learning "
                                 "rate or the loss weights (mi_weight); the checkpoints written so far are kept")
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            if cfg.max_grad_norm is not None:
                scaler.unscale_(opt)
                torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
            for grp in opt.param_groups:
                grp["lr"] = cfg.lr * lr_at(step, total_steps=total, warmup_steps=cfg.warmup_steps, min_ratio=cfg.min_lr_ratio)
            scaler.step(opt)  # skips the step when fp16 gradients overflowed
            scaler.update()
        step += 1
        history["step_loss"].append(loss_value)
        history["step_parts"].append(parts)
        bar.update(1)
        bar.set_postfix(loss=f"{history['step_loss'][-1]:.4f}")
        if step % spe == 0:
            history["epoch_loss"].append(sum(history["step_loss"][-spe:]) / spe)
            log.info("epoch %d loss %.5f", step // spe, history["epoch_loss"][-1])
            if eval_fn is not None:
                model.eval()
                history["eval"].append({"epoch": step // spe, **eval_fn(model)})
                log.info("epoch %d eval %s", step // spe, history["eval"][-1])
        if (step % spe == 0 or (cfg.save_every_steps and step % cfg.save_every_steps == 0)) and cfg.checkpoint_dir:
            last_ckpt = checkpoint()
    bar.close()
    if cfg.checkpoint_dir and step == stop and (last_ckpt is None or not last_ckpt.name.endswith(f"_{step}")):
        last_ckpt = checkpoint()
    model.eval()
    return TrainResult(history=history, steps=step, checkpoint=last_ckpt)


def plot_loss_curve(history: dict[str, Any], path: str | Path, *, title: str = "MoL training") -> Path | None:
    """Write the per-step loss (and per-epoch eval metrics, if any) as a PNG (matplotlib, Agg).

    Returns the path, or ``None`` when matplotlib (the ``plot`` extra) is not installed or the
    history holds no step (e.g. HotpotQA with the dot product, which trains nothing): no file.
    """
    if not history.get("step_loss"):
        log.info("no training steps: no loss curve written to %s", path)
        return None
    plt = pyplot()
    if plt is None:
        return None
    evals = history.get("eval") or []
    fig, axes = plt.subplots(1, 2 if evals else 1, figsize=(10 if evals else 5, 4), squeeze=False)
    ax = axes[0][0]
    ax.plot(range(1, len(history["step_loss"]) + 1), history["step_loss"], lw=0.8, label="step")
    ax.set(xlabel="optimiser step", ylabel="loss", title=title)
    if evals:
        ax2 = axes[0][1]
        for key in [k for k in evals[0] if k != "epoch"]:
            ax2.plot([e["epoch"] for e in evals], [e[key] for e in evals], marker="o", label=key)
        ax2.set(xlabel="epoch", title="evaluation")
        ax2.legend()
    return save_png(fig, path)
