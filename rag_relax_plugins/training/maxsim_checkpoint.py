"""Checkpoint and curve I/O of the MaxSim training loop (safetensors + JSON, atomic, no pickle).

A ``checkpoint_epoch_N/`` folder holds ``model/`` (the reranker), the optimiser state,
``best_model/`` when the best epoch so far (``"best_epoch"`` in the state) is not the one ``model/``
holds (an earlier epoch; for a checkpoint of an epoch stopped part-way, any), and
``trainer_state.json`` (:data:`CHECKPOINT_VERSION`; checkpoints written before it had none and
read as version 1), whose ``"config"`` holds the run's options, compared on resume
(:func:`check_resume`). A resume restores the best model into its output folder
(:func:`~rag_relax_plugins.training._run_files.restore_best_model`, shared with the Gaussian
trainer), so ``best_model/`` there matches ``best_val_mrr`` also in a new folder.

Also the run-start checks that keep the recorded options true to the run: a reranker passed to
``train_maxsim`` brings its own model (:func:`adopt_reranker_config`), and a fresh run does not
leave an earlier run's ``best_model/`` behind (:func:`clear_earlier_best_model`).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from rag_relax_plugins._io import atomic_folder, saved_kind
from rag_relax_plugins.core.scalars import is_number
from rag_relax_plugins.rerankers.maxsim import MaxSimConfig, MaxSimReranker
from rag_relax_plugins.training._optimizer_state import (
    load_optimizer_state,
    read_optimizer_files,
    save_optimizer_state,
)
from rag_relax_plugins.training._resume_check import (
    TRAINING_DATA,
    ResumePolicy,
    data_sha256,
)
from rag_relax_plugins.training._resume_check import read_trainer_state as read_state
from rag_relax_plugins.training._run_files import checkpoint_folder, pyplot, save_png
from rag_relax_plugins.training._scheduler_state import check_lambda_lr_state, check_scheduler_step

if TYPE_CHECKING:
    from rag_relax_plugins.training.maxsim_data import QueryGroup
    from rag_relax_plugins.training.maxsim_train import MaxSimTrainConfig

__all__ = [
    "CHECKPOINT_VERSION",
    "MODEL_OPTIONS",
    "RESUME_RUNTIME_ONLY",
    "adopt_reranker_config",
    "check_best_model_folder",
    "check_position",
    "check_resume",
    "checked_resume",
    "checkpoint_options",
    "clear_earlier_best_model",
    "load_optimizer",
    "plot_history",
    "read_trainer_state",
    "save_checkpoint",
    "training_data_sha256",
]

log = logging.getLogger(__name__)

CHECKPOINT_VERSION = 1  # of trainer_state.json; bump when a resume can no longer read older states

# MaxSimTrainConfig options that define the model (MaxSimConfig fields of the same name). ``seed``
# is not one of them for a passed reranker: it also seeds the shuffles and the negative sampling,
# and the reranker's projection is initialised already (its own seed is in its config.json).
MODEL_OPTIONS = ("backbone", "projection_dim", "max_seq_length")

# MaxSimTrainConfig options a resume may change; every other one must equal the checkpoint's
# (``epochs`` too: the linear LR decay ends at step ``batches_per_epoch * epochs``).
RESUME_RUNTIME_ONLY = frozenset({
    "output_dir",  # where this run writes
    "resume_from",  # the checkpoint itself
    "device", "show_progress", "save_checkpoints",  # where and how visibly it runs, what it keeps
    "cache_dir",  # where the frozen backbone's token vectors are cached (rebuilt there: the same vectors)
    # the documented stop-and-continue: a run stopped by max_steps saves its position inside the
    # epoch and a resume continues with another max_steps, or none (the LR decay then follows the
    # new run's max_steps from its first step, so the resumed run equals an uninterrupted one only
    # from there on; maxsim_train resets each group's lr after loading the optimiser)
    "max_steps",
})
_PATH_OPTIONS = ("data", "backbone")


def unused_options(options: Mapping[str, Any]) -> set[str]:
    """What a MaxSim configuration does not use: the backbone's learning rate with a frozen
    backbone (``train_last_layers=0``)."""
    return {"backbone_learning_rate"} if options.get("train_last_layers") == 0 else set()


RESUME = ResumePolicy(RESUME_RUNTIME_ONLY, _PATH_OPTIONS, unused=unused_options)
# ``MaxSimTrainConfig.to_dict()`` as stored in a checkpoint (local paths absolute), and the resume check
checkpoint_options = RESUME.options
check_resume = RESUME.check


def save_checkpoint(folder: Path, reranker: MaxSimReranker, opt: torch.optim.Optimizer, state: dict[str, Any],
                    *, best_model: Path | None = None) -> Path:
    """Write checkpoint ``folder`` (atomically); ``best_model``: a saved best model of another epoch,
    copied in as ``best_model/`` (``None`` when ``reranker`` is the best so far, or there is none)."""

    def write(tmp: Path) -> None:
        reranker.save(tmp / "model")
        if best_model is not None:
            shutil.copytree(best_model, tmp / "best_model")
        save_optimizer_state(opt, tmp)
        full = {"format_version": CHECKPOINT_VERSION, **state}
        (tmp / "trainer_state.json").write_text(json.dumps(full), encoding="utf-8")

    return atomic_folder(folder, write, replace_if_contains=("trainer_state.json",), kind="checkpoint")


def read_trainer_state(folder: Path) -> dict[str, Any]:
    """The ``trainer_state.json`` of checkpoint ``folder`` (:func:`~._resume_check.read_trainer_state`:
    version and the fields a resume reads checked; a state without a version is version 1), with
    the values the loop uses checked too (:func:`check_position`).

    Raises:
        ValueError: an unreadable file, a missing or mistyped field, a value the loop cannot use,
            or another ``format_version`` (each names the file).
    """
    state = read_state(folder, version=CHECKPOINT_VERSION, fields=("scheduler", "epoch", "step", "best", "history"),
                       unversioned=1, history_lists=("step_loss", "train_loss", "val_mrr"), step_list="step_loss")
    check_position(folder / "trainer_state.json", state)
    return state



def check_position(file: Path, state: Mapping[str, Any]) -> None:
    """Refuse values of a MaxSim ``trainer_state.json`` (``file``) the loop cannot use: ``epoch``
    and ``step`` (and ``batch``, the position of a stop inside the epoch) integers >= 0;
    ``epoch_losses`` a list of numbers; ``negative_rng`` ``null`` or a CPU generator state
    (``torch.Generator().get_state()``: that many integers 0..255); ``best`` a finite number or
    ``-Infinity``, what a run writes before its first complete epoch. They were a raw ``int()``
    ``ValueError``, a torch ``RuntimeError`` or a ``TypeError`` after the run had written files,
    or (a NaN ``best``) a run that never wrote ``best_model/``.

    Raises:
        ValueError: ``"<file>: 'batch' must be ...; nothing was changed"``.
    """

    def refuse(name: str, what: str) -> None:
        raise ValueError(f"{file}: {name!r} must be {what}, got {state.get(name)!r:.80} (a damaged checkpoint?); "
                         "nothing was changed")

    for name in ("epoch", "step", "batch"):
        value = state.get(name, 0)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            refuse(name, "an integer >= 0")
    losses = state.get("epoch_losses", [])
    if not isinstance(losses, list) or not all(is_number(v) for v in losses):
        refuse("epoch_losses", "a list of numbers")
    rng = state.get("negative_rng")
    size = torch.Generator().get_state().numel()
    if rng is not None and not (isinstance(rng, list) and len(rng) == size and all(
            isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 255 for v in rng)):
        refuse("negative_rng", f"null or a generator state of {size} integers 0..255")
    best = state["best"]
    if not (is_number(best) and (math.isfinite(best) or best == -math.inf)):
        refuse("best", "a finite number, or -Infinity before the first complete epoch")


def load_optimizer(opt: torch.optim.Optimizer, folder: Path) -> None:
    """Load the optimiser state of checkpoint ``folder`` (checkpoints of every version: the format is shared)."""
    load_optimizer_state(opt, folder, hint="resume with the same projection and train_last_layers options")


def plot_history(history: dict[str, list[float]], path: Path) -> None:
    """Loss per step and validation MRR per epoch as a PNG; skipped without matplotlib."""
    plt = pyplot()
    if plt is None:
        return
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    axes[0].plot(history["step_loss"])
    axes[0].set(xlabel="optimiser step", ylabel="InfoNCE loss", title="training loss")
    axes[1].plot(range(1, len(history["val_mrr"]) + 1), history["val_mrr"], marker="o")
    axes[1].set(xlabel="epoch", ylabel="validation MRR (or -train loss)", title="selection metric")
    save_png(fig, path)


def training_data_sha256(groups: Sequence[QueryGroup], val_groups: Sequence[QueryGroup],
                         query_strings: Sequence[str], text_strings: Sequence[str]) -> str:
    """:func:`data_sha256` of what ``train_maxsim`` is given: groups and both text tables."""
    return data_sha256([list(groups), list(val_groups), list(query_strings), list(text_strings)])


def checked_resume(cfg: MaxSimTrainConfig, training_data: str) -> tuple[Path | None, dict[str, Any]]:
    """The checkpoint ``cfg.resume_from`` names (``None`` without one) and the run's checkpoint
    options (data files hashed, and ``training_data``, the :func:`training_data_sha256` of the
    groups and texts the run is given), after refusing a missing checkpoint or one with other
    options or data.

    Raises:
        FileNotFoundError: ``cfg.resume_from`` is not a checkpoint.
        ValueError: its options differ from ``cfg``'s, runtime-only ones aside, or it was trained
            on other data; a damaged ``trainer_state.json`` (its scheduler state included) or
            optimiser file (named).
    """
    ck = checkpoint_folder(cfg.resume_from, trainer="train-maxsim") if cfg.resume_from else None
    options = checkpoint_options(cfg.to_dict())  # stored in every checkpoint; data files hashed once
    options[TRAINING_DATA] = training_data  # the split itself: cfg.data / rows describe the CLI's only
    if ck is not None:  # a missing checkpoint or other options: refused before anything is written
        check_resume(ck, options)
        # a damaged state or optimiser file too, before the checkpoint's model is loaded (into a
        # passed reranker's encoder, whose trained layers it replaces) and the token cache is built;
        # the trainer checks the optimiser again against its own before loading it
        state = read_trainer_state(ck)
        meta, _ = read_optimizer_files(ck, optimizer=torch.optim.AdamW)
        check_lambda_lr_state(state["scheduler"], ck / "trainer_state.json", groups=len(meta["param_groups"]))
        check_scheduler_step(state["scheduler"], state["step"], ck / "trainer_state.json")
    return ck, options


def _same_backbone(a: str | None, b: str | None) -> bool:
    """Two backbone references name the same model (local folders compared as resolved paths)."""
    if a is None or b is None:
        return a == b
    return a == b or Path(a).expanduser().resolve() == Path(b).expanduser().resolve()


def adopt_reranker_config(cfg: MaxSimTrainConfig, model: MaxSimConfig) -> MaxSimTrainConfig:
    """``cfg`` with the model-defining options (:data:`MODEL_OPTIONS`) of the reranker passed to
    ``train_maxsim``, which trains that reranker as it is: ``train_config.json`` and the
    checkpoints then record the model really trained. An option left at its default takes the
    reranker's value (as the Gaussian trainer's ``check_against_model`` does for dropout and
    freezing); one set to another value than the reranker's is refused.

    Raises:
        ValueError: options set explicitly that differ from the reranker's, each named with both values.
    """
    defaults = type(cfg)()
    differ = []
    for name in MODEL_OPTIONS:
        want, have = getattr(cfg, name), getattr(model, name)
        same = _same_backbone(want, have) if name == "backbone" else want == have
        if not same and want != getattr(defaults, name):
            differ.append(f"{name} (options {want!r}, reranker {have!r})")
    if differ:
        raise ValueError("the reranker passed to train_maxsim differs from the training options: "
                         + ", ".join(differ) + "; pass matching options or leave them at their defaults "
                         "(the reranker is trained as it is)")
    return dataclasses.replace(cfg, **{name: getattr(model, name) for name in MODEL_OPTIONS})


def check_best_model_folder(out: Path) -> None:
    """Refuse a fresh run into ``out`` when its ``best_model/`` is not a MaxSim reranker save of
    this package (:func:`clear_earlier_best_model` would have to delete the user's files).

    Raises:
        ValueError: ``out/best_model`` exists and is not a saved ``maxsim-reranker``.
    """
    best = out / "best_model"
    if best.exists() and not (best.is_dir() and saved_kind(best) == "maxsim-reranker"):
        raise ValueError(f"{best} exists and is not a MaxSim reranker saved by rag-relax-plugins: a new run into "
                         f"{out} would leave it beside its own models; move it, or use another output folder")


def clear_earlier_best_model(out: Path) -> None:
    """Delete the ``best_model/`` an earlier run left in ``out`` (a fresh run, after its checks).

    A run that completes no epoch writes no ``best_model/``; an earlier run's would otherwise pass
    for this run's. Only a save this package wrote as a ``maxsim-reranker`` is deleted
    (:func:`check_best_model_folder` refuses the rest before the run starts).
    """
    best = out / "best_model"
    if best.is_dir() and saved_kind(best) == "maxsim-reranker":
        log.info("removing %s of an earlier run (a fresh run writes its own)", best)
        shutil.rmtree(best)
