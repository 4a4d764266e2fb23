"""Checkpoint and curve I/O of the MaxSim training loop (safetensors + JSON, atomic, no pickle).

A ``checkpoint_epoch_N/`` folder holds ``model/`` (the reranker), the optimiser state,
``best_model/`` when the best epoch so far (``"best_epoch"`` in the state) is not the one ``model/``
holds (an earlier epoch; for a checkpoint of an epoch stopped part-way, any), and
``trainer_state.json``, whose ``"config"`` holds the run's options, compared on resume
(:func:`check_resume`). A resume restores the best model into its output folder
(:func:`~rag_relax_plugins.training._run_files.restore_best_model`, shared with the Gaussian
trainer), so ``best_model/`` there matches ``best_val_mrr`` also in a new folder.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from rag_relax_plugins._io import atomic_folder
from rag_relax_plugins.rerankers.maxsim import MaxSimReranker
from rag_relax_plugins.training._optimizer_state import load_optimizer_state, save_optimizer_state
from rag_relax_plugins.training._resume_check import ResumePolicy
from rag_relax_plugins.training._run_files import checkpoint_folder, pyplot, save_png

if TYPE_CHECKING:
    from rag_relax_plugins.training.maxsim_train import MaxSimTrainConfig

__all__ = ["RESUME_RUNTIME_ONLY", "check_resume", "checked_resume", "checkpoint_options", "load_optimizer",
           "plot_history", "save_checkpoint"]

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


RESUME = ResumePolicy(RESUME_RUNTIME_ONLY, _PATH_OPTIONS)
# ``MaxSimTrainConfig.to_dict()`` as stored in a checkpoint (local paths absolute), and the resume check
checkpoint_options = RESUME.options
check_resume = RESUME.check


def save_checkpoint(folder: Path, reranker: MaxSimReranker, opt: torch.optim.Optimizer, state: dict[str, Any],
                    *, best_model: Path | None = None) -> None:
    """Write checkpoint ``folder`` (atomically); ``best_model``: a saved best model of another epoch,
    copied in as ``best_model/`` (``None`` when ``reranker`` is the best so far, or there is none)."""

    def write(tmp: Path) -> None:
        reranker.save(tmp / "model")
        if best_model is not None:
            shutil.copytree(best_model, tmp / "best_model")
        save_optimizer_state(opt, tmp)
        (tmp / "trainer_state.json").write_text(json.dumps(state), encoding="utf-8")

    atomic_folder(folder, write, replace_if_contains=("trainer_state.json",), kind="checkpoint")


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


def checked_resume(cfg: MaxSimTrainConfig) -> tuple[Path | None, dict[str, Any]]:
    """The checkpoint ``cfg.resume_from`` names (``None`` without one) and the run's checkpoint
    options (data files hashed), after refusing a missing checkpoint or one with other options.

    Raises:
        FileNotFoundError: ``cfg.resume_from`` is not a checkpoint.
        ValueError: its options differ from ``cfg``'s, runtime-only ones aside.
    """
    ck = checkpoint_folder(cfg.resume_from) if cfg.resume_from else None
    options = checkpoint_options(cfg.to_dict())  # stored in every checkpoint; data files hashed once
    if ck is not None:  # a missing checkpoint or other options: refused before anything is written
        check_resume(ck, options)
    return ck, options
