"""G-Rerank: train a reranker end to end from a frozen reader's answer loss (Gumbel Reranking).

Huang et al., "Gumbel Reranking: Differentiable End-to-End Reranker Optimization" (ACL 2025): for
each question the reranker scores all candidate documents, a relaxed top-k mask is sampled from
the scores (Gumbel noise, scale ``kappa``, temperature ``tau``), the frozen reader reads every
document with ``log(mask_i)`` added to the attention to document ``i`` (:mod:`..readers.dma`), and
the loss is the negative log-likelihood of the gold answer. Only the reranker is updated; no
relevance labels are used. ``supervision="labels"`` trains the same scorer with a listwise loss
(ListNet) on the supporting-fact paragraphs instead: the supervised reference of the benchmarks.

Departures from the paper: a 135M reader (SmolLM2) instead of a 7B one; documents truncated to
``doc_tokens`` tokens; both DMA layouts are available, the default is the paper's independent
encoding, which gave SmolLM2 the larger gold-vs-distractor NLL gap (1.70 vs 0.95 nats on 60 rows,
``benchmarks/bench_grerank_signal.py``; docs/gumbel_reranker.md); one question per optimiser
micro-step with gradient accumulation.

Commands::

    rag-relax train-reranker --output runs/grerank --epochs 1 --max-train-rows 200
    rag-relax train-reranker --output runs/grerank --resume-from runs/grerank/checkpoint_step_20
    rag-relax train-reranker --output runs/supervised --supervision labels

A resume must use the checkpoint's options, except the runtime-only ones in
``grerank_checkpoint.RESUME_RUNTIME_ONLY`` (else ``ValueError`` before anything is written); the
checkpoint's reranker decides the scorer options, as ``init_from`` does (``grerank_init``).
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from rag_relax_plugins._io import atomic_write_json, atomic_write_text, check_save_target
from rag_relax_plugins.core.device import resolve_device, seeded_rngs
from rag_relax_plugins.core.ranking_losses import list_net_loss
from rag_relax_plugins.datasets.hotpotqa import HotpotExample, load_hotpotqa_distractor
from rag_relax_plugins.readers.dma import ReaderLayout
from rag_relax_plugins.rerankers.gumbel import GumbelReranker
from rag_relax_plugins.training._resume_check import TRAINING_DATA, data_sha256
from rag_relax_plugins.training._run_files import (
    CHECKPOINT_PREFIX,
    EarlierCheckpoints,
    check_source_outside_checkpoints,
    prune_checkpoints,
    said_if_diverged,
)
from rag_relax_plugins.training.grerank_checkpoint import (
    check_resume,
    checkpoint_folder,
    checkpoint_options,
    load_checkpoint,
    plot_curves,
    read_checkpoint_weights,
    save_checkpoint,
    stored_options,
)
from rag_relax_plugins.training.grerank_config import GRerankConfig, GRerankResult
from rag_relax_plugins.training.grerank_eval import hotpot_split
from rag_relax_plugins.training.grerank_init import SCORER_OPTIONS, effective_config

if TYPE_CHECKING:
    from rag_relax_plugins.readers.causal_lm import DocumentStates

__all__ = ["GRerankConfig", "GRerankResult", "train_grerank"]

log = logging.getLogger(__name__)

# GRerankConfig options only the reader uses (supervision="reader")
_READER_OPTIONS = ("reader_path", "variant", "doc_tokens", "cache_reader_states")
_DEFAULTS = GRerankConfig()


def _reranker(cfg: GRerankConfig, ck: Path | None) -> GumbelReranker:
    if ck is not None:
        return GumbelReranker.from_pretrained(ck / "reranker", device=cfg.device)
    if cfg.init_from is not None:
        r = GumbelReranker.from_pretrained(cfg.init_from, device=cfg.device)
        r.k, r.mode, r.tau, r.kappa = cfg.k, cfg.mode, cfg.tau, cfg.kappa
        return r
    return GumbelReranker(
        cfg.scorer,
        backbone=cfg.backbone,
        k=cfg.k,
        mode=cfg.mode,
        tau=cfg.tau,
        kappa=cfg.kappa,
        max_length=cfg.scorer_max_length,
        trainable_layers=cfg.trainable_layers,
        device=cfg.device,
        seed=cfg.seed,
    )


def _apply_selection(reranker: GumbelReranker, cfg: GRerankConfig) -> None:
    """Make the reranker's ``k``, ``mode``, ``tau``, ``kappa`` those of ``cfg`` (what
    ``train_config.json`` records), logging any value that was different."""
    wanted = {"k": cfg.k, "mode": cfg.mode, "tau": cfg.tau, "kappa": cfg.kappa}
    changed = {name: (getattr(reranker, name), v) for name, v in wanted.items() if getattr(reranker, name) != v}
    if changed:
        log.info("G-Rerank uses the config's selection settings (reranker -> config): %s", changed)
    reranker.k, reranker.mode, reranker.tau, reranker.kappa = cfg.k, cfg.mode, cfg.tau, cfg.kappa


def _check_reader(reader: Any, cfg: GRerankConfig) -> None:
    """Refuse a passed reader whose prompt layout settings are not ``cfg``'s.

    The reader builds the layouts, so its ``variant`` and ``doc_tokens`` decide what is trained,
    while ``train_config.json``, every checkpoint and a resume's check record ``cfg``'s. Unlike a
    passed reranker's selection settings (:func:`_apply_selection`: the reranker is the run's to
    train), a reader is the caller's, often shared, and its ``doc_tokens`` also cuts what
    :meth:`~rag_relax_plugins.readers.causal_lm.CausalLMReader.generate` reads: it is not changed.
    A reader without these attributes (a test double) is not checked.

    Raises:
        ValueError: naming each differing setting with both values (before anything is written).
    """
    differ = [f"{name} (reader {getattr(reader, name)!r}, cfg {getattr(cfg, name)!r})"
              for name in ("variant", "doc_tokens")
              if hasattr(reader, name) and getattr(reader, name) != getattr(cfg, name)]
    if differ:
        raise ValueError(f"the reader passed was built with other settings than cfg's: {', '.join(differ)}; "
                         "train_config.json and the checkpoints record cfg's, so set them in cfg or build "
                         "the reader with them")


def _group_size(pos: int, n: int, accum: int) -> int:
    """Questions in the accumulation group of epoch position ``pos``: ``accum``, or fewer for the
    last, partial group of an epoch (so every optimiser step averages over its own questions)."""
    return min(accum, n - (pos // accum) * accum)


def _optimizer(reranker: GumbelReranker, cfg: GRerankConfig) -> torch.optim.Optimizer:
    head: list[torch.nn.Parameter] = []
    body: list[torch.nn.Parameter] = []
    for name, p in reranker.scorer.named_parameters():
        if p.requires_grad:
            (body if name.startswith("backbone.") else head).append(p)
    groups = [
        {"params": body, "lr": cfg.learning_rate},
        {"params": head, "lr": cfg.head_learning_rate},
    ]
    return torch.optim.AdamW([g for g in groups if g["params"]], weight_decay=cfg.weight_decay)


def example_loss(
    reranker: GumbelReranker,
    ex: HotpotExample,
    *,
    reader: Any = None,
    layout: ReaderLayout | None = None,
    document_states: DocumentStates | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor | None:
    """The training loss of one question (scalar), or ``None`` when it gives no signal.

    With a ``reader``: answer NLL under the relaxed top-k mask (G-Rerank), reusing
    ``document_states`` of ``layout`` when given. Without: ListNet on the supporting-fact
    paragraphs (``None`` when none is present).
    """
    if not ex.paragraphs or (reader is not None and not ex.answer.strip()):
        return None
    texts = ex.paragraph_texts()
    scores = reranker.training_scores(ex.question, texts)  # (N,)
    if reader is None:
        rel = torch.zeros_like(scores)
        if not ex.gold_indices:
            return None
        rel[list(ex.gold_indices)] = 1.0
        return list_net_loss(scores.unsqueeze(0), rel.unsqueeze(0))
    mask = reranker.training_mask(scores, generator=generator)  # (N,) relaxed top-k
    lay = layout if layout is not None else reader.layout(ex.question, texts, ex.answer)
    if document_states is None:  # any reader with layout / layout_nll works here
        return reader.layout_nll(lay, mask.to(reader.device)).mean()
    return reader.layout_nll(lay, mask.to(reader.device), document_states=document_states).mean()


def train_grerank(
    cfg: GRerankConfig,
    *,
    examples: list[HotpotExample] | None = None,
    reranker: GumbelReranker | None = None,
    reader: Any = None,
) -> GRerankResult:
    """Run G-Rerank (``supervision="reader"``) or the supervised reference (``"labels"``).

    Args:
        cfg: the run options.
        examples: training questions (default: the first ``train_size`` rows of the shared file,
            cut to ``max_train_rows``).
        reranker: a reranker to train in place (default: built from ``cfg``, or loaded from
            ``cfg.init_from``). Its ``k``, ``mode``, ``tau`` and ``kappa`` are set to ``cfg``'s (as
            recorded in ``train_config.json``); with ``cfg.resume_from`` the checkpoint's scorer
            weights are loaded into it. Not together with ``cfg.init_from`` (unless resuming).
        reader: a :class:`~rag_relax_plugins.readers.causal_lm.CausalLMReader` (default: built
            from ``cfg`` when ``supervision="reader"``); its ``variant`` and ``doc_tokens`` must
            be ``cfg``'s (what ``train_config.json`` records). Unused with ``"labels"``.

    Returns:
        :class:`GRerankResult`; ``output_dir`` holds ``final_model/``, ``checkpoint_step_N/``,
        ``history.json``, ``train_config.json`` (with ``init_from`` or ``resume_from``: the scorer
        settings of the saved folder or the checkpoint's reranker, as checkpoints store them) and
        ``curves.png``.

    Raises:
        FileNotFoundError: ``cfg.resume_from`` is not a checkpoint.
        ValueError: no training examples; a resume whose options differ from the checkpoint's,
            runtime-only ones aside; ``cfg.init_from`` (or a resume) with scorer settings other
            than the saved (or recorded) ones or the defaults; ``cfg.init_from`` with ``reranker``;
            a ``reader`` whose ``variant`` or ``doc_tokens`` differ from ``cfg``'s; a reader
            folder that is not a causal LM (all raised before anything is written).
    """
    if examples is None:
        examples = hotpot_split(load_hotpotqa_distractor(cfg.data_path), cfg.train_size)[0]
    if cfg.max_train_rows is not None:
        examples = examples[: cfg.max_train_rows]
    if not examples:
        raise ValueError("no training examples")
    options = checkpoint_options(cfg.to_dict())  # stored in every checkpoint; data files hashed once
    # the questions themselves: cfg.data_path names the default file as None, examples= none at all
    options[TRAINING_DATA] = data_sha256(list(examples))
    ck = checkpoint_folder(cfg.resume_from, trainer="train-reranker") if cfg.resume_from is not None else None
    if ck is not None:  # a missing checkpoint or other options: refused before anything is written
        check_resume(ck, options)  # the scorer options aside: the checkpoint's reranker decides them
    elif cfg.init_from is not None and reranker is not None:
        raise ValueError("pass either a reranker or cfg.init_from, not both (init_from would be ignored)")
    if cfg.supervision == "reader" and reader is not None:
        _check_reader(reader, cfg)
    # the scorer settings of init_from or of the checkpoint's reranker (conflicting ones refused):
    # what train_config.json records and every checkpoint stores
    used = effective_config(cfg, checkpoint=ck, recorded=stored_options(ck) if ck is not None else None,
                            scorer=None if reranker is None else reranker.scorer)
    options.update(checkpoint_options({name: getattr(used, name) for name in SCORER_OPTIONS}))
    if cfg.supervision == "labels":  # the reader is not built: its options would go unused
        unused = [f"{name}={getattr(cfg, name)!r}" for name in _READER_OPTIONS
                  if getattr(cfg, name) != getattr(_DEFAULTS, name)]
        if unused:
            log.warning("supervision='labels' trains without a reader: %s not used", ", ".join(unused))
    if used.trainable_layers == 0 and cfg.learning_rate != _DEFAULTS.learning_rate:
        log.warning("learning_rate=%g (the backbone's) is not used: trainable_layers=0 trains no backbone layer",
                    cfg.learning_rate)
    most = max(len(ex.paragraphs) for ex in examples)
    if cfg.supervision == "reader" and cfg.mode == "subset" and cfg.k >= most:
        # l2x is not concerned: its mask is a max over k draws, not all ones for k >= N
        log.warning("k=%d keeps every paragraph of every question (at most %d) and mode='subset' then "
                    "gives an all-ones mask: the reader's loss gives the scorer no signal", cfg.k, most)
    dev = reranker.device if reranker is not None else resolve_device(cfg.device)
    # the run seeds (and a resume restores) the generators dropout draws from: forked, so the
    # caller's global RNG is as it was
    with seeded_rngs(cfg.seed, dev):
        return _train(cfg, ck=ck, options=options, used=used, examples=examples, reranker=reranker, reader=reader)


def _train(cfg: GRerankConfig, *, ck: Path | None, options: dict[str, Any], used: GRerankConfig,
           examples: list[HotpotExample], reranker: GumbelReranker | None, reader: Any) -> GRerankResult:
    """The run of :func:`train_grerank`, once its options are checked (under a forked RNG)."""
    from tqdm.auto import tqdm

    resumed_weights = None  # a passed reranker's, loaded once the whole checkpoint is read
    if reranker is None:
        reranker = _reranker(cfg, ck)
    elif ck is not None:
        resumed_weights = read_checkpoint_weights(reranker, ck)
    _apply_selection(reranker, cfg)
    if cfg.supervision == "reader" and reader is None:
        from rag_relax_plugins.readers.causal_lm import CausalLMReader

        reader = CausalLMReader(
            cfg.reader_path, variant=cfg.variant, doc_tokens=cfg.doc_tokens, device=cfg.device
        )
    if cfg.supervision == "labels":
        reader = None
    # written once the data, the reranker and the reader are ready: a run refused before this
    # point leaves an earlier run's train_config.json (and a new folder) untouched
    out = Path(cfg.output_dir)
    check_save_target(out / "final_model", kind=GumbelReranker.SAVE_KIND)  # refused now, not after the training
    n = len(examples)
    per_epoch = -(-n // cfg.grad_accum_steps)
    total = per_epoch * cfg.epochs if cfg.max_steps is None else min(cfg.max_steps, per_epoch * cfg.epochs)
    if ck is None:
        check_source_outside_checkpoints(cfg.init_from, "init_from", out, CHECKPOINT_PREFIX, total,
                                         run=f"this run ({total} steps)")
    opt = _optimizer(reranker, cfg)
    gen = torch.Generator(device=reranker.device).manual_seed(cfg.seed)
    state: dict[str, Any] = {
        "epoch": 0,
        "pos": 0,
        "step": 0,
        "history": {"loss": [], "seconds": []},
    }
    if ck is not None:  # every file read and checked before the caller's reranker changes
        state = load_checkpoint(ck, optimizer=opt, generator=gen, seed=cfg.seed)
        if state["pos"] >= n:  # a save writes (pos + 1) % n: a larger one skipped the epoch's training
            raise ValueError(f"{ck / 'trainer_state.json'}: 'pos' is {state['pos']}, but an epoch has {n} examples "
                             "(a damaged checkpoint?); nothing was changed")
        if resumed_weights is not None:  # in place: the optimiser holds these parameters
            reranker.scorer.load_state_dict(resumed_weights)
    out.mkdir(parents=True, exist_ok=True)  # after the checkpoint is read: a damaged one leaves no folder
    atomic_write_json(out / "train_config.json", used.to_dict())
    history: dict[str, list[Any]] = state["history"]
    layouts: dict[int, ReaderLayout] = {}
    states: dict[int, DocumentStates] = {}  # cfg.cache_reader_states: filled on first visit
    bar = tqdm(
        total=total,
        initial=state["step"],
        disable=not cfg.show_progress,
        desc=f"train ({cfg.supervision})",
    )
    step, seen, busy = int(state["step"]), 0, 0.0
    earlier = EarlierCheckpoints(fresh=ck is None, protect=(cfg.init_from,), trainer="train-reranker")
    done = step >= total
    for epoch in range(int(state["epoch"]), cfg.epochs):
        if done:
            break
        order = torch.randperm(
            n, generator=torch.Generator().manual_seed(cfg.seed + epoch)
        ).tolist()
        start = int(state["pos"]) if epoch == int(state["epoch"]) else 0
        acc, acc_n, t0 = 0.0, 0, time.perf_counter()
        for pos in range(start, n):
            i = order[pos]
            if not examples[i].paragraphs:  # nothing to rank: no signal
                loss = None
            elif reader is not None and i not in layouts:
                ex = examples[i]
                layouts[i] = reader.layout(ex.question, ex.paragraph_texts(), ex.answer)
                if cfg.cache_reader_states and ex.answer.strip():
                    states[i] = reader.encode_documents(layouts[i])
            if examples[i].paragraphs:
                with said_if_diverged(opt, step):  # a NaN weight failed the next step as "scores contains NaN"
                    loss = example_loss(
                        reranker,
                        examples[i],
                        reader=reader,
                        layout=layouts.get(i),
                        document_states=states.get(i),
                        generator=gen,
                    )
            if loss is not None:
                (loss / _group_size(pos, n, cfg.grad_accum_steps)).backward()
                acc += float(loss.detach())
                acc_n += 1
            seen += 1
            if (pos + 1) % cfg.grad_accum_steps and pos != n - 1:
                continue
            torch.nn.utils.clip_grad_norm_(reranker.parameters(), cfg.max_grad_norm)
            opt.step()
            opt.zero_grad(set_to_none=True)
            step += 1
            elapsed = time.perf_counter() - t0
            busy += elapsed
            # a step whose examples all gave no signal has no loss (None, JSON null), not 0.0
            history["loss"].append(acc / acc_n if acc_n else None)
            history["seconds"].append(elapsed)
            bar.update(1)
            bar.set_postfix(loss="-" if not acc_n else f"{acc / acc_n:.3f}")
            acc, acc_n, t0 = 0.0, 0, time.perf_counter()
            next_state = {
                "epoch": epoch if pos + 1 < n else epoch + 1,
                "pos": (pos + 1) % n,
                "step": step,
                "history": history,
                "config": options,
            }
            done = step >= total
            if step % cfg.save_every_steps == 0 or done or pos == n - 1:
                path = save_checkpoint(
                    out / f"checkpoint_step_{step}",
                    reranker=reranker,
                    optimizer=opt,
                    generator=gen,
                    state=next_state,
                )
                earlier.written(path)  # a fresh run: an earlier run's checkpoints go
                prune_checkpoints(out, cfg.keep_checkpoints, current=step, trainer="train-reranker")
            if done:
                break
    bar.close()
    reranker.scorer.eval()
    model_dir = reranker.save_pretrained(out / "final_model")
    atomic_write_text(out / "history.json", json.dumps(history) + "\n")
    plot_curves(history, out / "curves.png", title=f"G-Rerank ({cfg.supervision})")
    return GRerankResult(
        model_dir=model_dir,
        history=history,
        seconds_per_example=busy / max(seen, 1),
        examples_seen=seen,
    )
