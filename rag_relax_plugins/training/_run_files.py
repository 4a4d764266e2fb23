"""Files every trainer writes beside its model: checkpoint rotation and loss-curve PNGs.

- :func:`checkpoint_folder` finds the checkpoint a resume reads (or the backup a crash left), and
  refuses one another trainer wrote (:func:`checkpoint_trainer`);
  :func:`restore_best_model` copies a checkpoint's best model into the resumed run's folder.
- :class:`EarlierCheckpoints` removes the checkpoints an earlier run left in a fresh run's folder,
  once the fresh run has written its first one (a run that fails before then loses nothing).
- :func:`prune_checkpoints` keeps the newest ``checkpoint_step_N/`` folders of a run without ever
  deleting the one just written (a run resumed from an older checkpoint writes steps below those
  an earlier run left) or a folder whose name is not ``checkpoint_step_<digits>``.
- :func:`run_folder` creates a run's output folder and removes it again when a run refused before
  writing anything (bad data, options, model) leaves it holding only empty files.
- :func:`pyplot` imports matplotlib's pyplot on the ``Agg`` backend, or logs a warning and returns
  ``None`` when the ``plot`` extra is missing; :func:`save_png` writes a figure atomically.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import shutil
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from rag_relax_plugins._io import (
    atomic_folder,
    atomic_write_bytes,
    check_save_target,
    find_saved_folder,
    saved_kind,
)

__all__ = [
    "CHECKPOINT_PREFIX",
    "EPOCH_CHECKPOINT_PREFIX",
    "EarlierCheckpoints",
    "check_checkpoint_targets",
    "check_source_outside_checkpoints",
    "checkpoint_folder",
    "checkpoint_steps",
    "checkpoint_trainer",
    "earlier_best_model",
    "prune_checkpoints",
    "pyplot",
    "remove_earlier_checkpoints",
    "restore_best_model",
    "run_folder",
    "run_folder_with_log",
    "said_if_diverged",
    "save_png",
]

log = logging.getLogger(__name__)

CHECKPOINT_PREFIX = "checkpoint_step_"  # train-mol, G-Rerank
EPOCH_CHECKPOINT_PREFIX = "checkpoint_epoch_"  # Gaussian, MaxSim


# what each trainer's checkpoints hold, which tells them apart: (entry, the kind its save marker
# records; None: a file). The kinds are the models' SAVE_KIND (a test pins them).
_TRAINER_LAYOUTS = {
    "train": ("model", "gaussian-embedder", "the Gaussian embedder trainer"),
    "train-maxsim": ("model", "maxsim-reranker", "the MaxSim reranker trainer"),
    "train-reranker": ("reranker", "gumbel-reranker", "the G-Rerank trainer"),
    "train-mol": ("model.safetensors", None, "the MoL trainer"),
}


def checkpoint_folder(path: str | os.PathLike[str], *, trainer: str | None = None) -> Path:
    """The checkpoint folder to read: ``path``, or the ``.<name>.old-*`` backup a crash between the
    two renames of a replacing save left (:func:`~rag_relax_plugins._io.find_saved_folder`).

    Args:
        trainer: the ``rag-relax`` command of the trainer that resumes (``"train"``,
            ``"train-maxsim"``, ``"train-reranker"``, ``"train-mol"``): a checkpoint another
            trainer wrote (:func:`checkpoint_trainer`) is refused, naming that trainer.

    Raises:
        FileNotFoundError: no checkpoint there (no ``trainer_state.json``).
        ValueError: a checkpoint of another trainer than ``trainer``.
    """
    found = find_saved_folder(path, "trainer_state.json", what="checkpoint")
    other = checkpoint_trainer(found) if trainer is not None else None
    if other is not None and other != trainer:
        theirs, ours = _TRAINER_LAYOUTS[other][2], _TRAINER_LAYOUTS[str(trainer)][2]
        raise ValueError(f"cannot resume from {found}: it is a checkpoint of {theirs} (rag-relax {other}), "
                         f"not of {ours} (rag-relax {trainer})")
    return found


def checkpoint_trainer(folder: Path) -> str | None:
    """The ``rag-relax`` command whose trainer wrote checkpoint ``folder``, told by what the folder
    holds (``None``: not told, e.g. a save from before the save markers)."""
    for command, (entry, kind, _) in _TRAINER_LAYOUTS.items():
        path = folder / entry
        if path.is_file() if kind is None else (path.is_dir() and saved_kind(path) == kind):
            return command
    return None


def earlier_best_model(out: Path, best_epoch: int | None, *, own_epoch: int | None) -> Path | None:
    """``out/best_model`` to store in a checkpoint whose ``model/`` is of epoch ``own_epoch`` (``None``:
    stopped part-way, never the best), or ``None`` when that model is the best or there is none
    (e.g. a resume from a checkpoint that lacked it)."""
    if best_epoch is None or best_epoch == own_epoch or not (out / "best_model" / "config.json").is_file():
        return None
    return out / "best_model"


def restore_best_model(folder: Path, state: Mapping[str, Any], target: Path) -> bool:
    """Copy the best model of checkpoint ``folder`` to ``target`` (atomically); ``False`` if it has none.

    A checkpoint stores ``best_model/`` when the best epoch so far (``state["best_epoch"]``) is
    not the one its ``model/`` holds; when it holds none, ``folder/model`` is the best model if
    ``state["best_epoch"]`` is the checkpoint's own ``state["epoch"]``. Checkpoints written before
    ``best_epoch`` existed, or before any epoch was selected, have none. An existing ``target``
    is replaced when it is a save (:func:`~rag_relax_plugins._io.atomic_folder`) or holds one of
    the restored model's ``.safetensors`` files (an older save of the same model).
    """
    best_epoch = state.get("best_epoch")
    if best_epoch is None:
        return False
    source = folder / "best_model"
    if not (source / "config.json").is_file():
        source = folder / "model"
        if best_epoch != state.get("epoch") or not (source / "config.json").is_file():
            return False

    def write(tmp: Path) -> None:
        for entry in source.iterdir():
            if entry.is_dir():
                shutil.copytree(entry, tmp / entry.name)
            else:
                shutil.copy2(entry, tmp / entry.name)

    weights = tuple(sorted(p.name for p in source.glob("*.safetensors")))
    atomic_folder(target, write, replace_if_contains=weights, kind=saved_kind(source))  # the copy's kind
    return True


def checkpoint_steps(directory: Path, prefix: str = CHECKPOINT_PREFIX) -> list[tuple[int, Path]]:
    """``(N, folder)`` of every ``<prefix><digits>/`` folder in ``directory``
    (``checkpoint_step_N/`` by default), by ``N``."""
    found = []
    for p in directory.glob(f"{prefix}*"):
        suffix = p.name[len(prefix) :]
        if p.is_dir() and suffix.isascii() and suffix.isdigit():
            found.append((int(suffix), p))
    return sorted(found)


def remove_earlier_checkpoints(
    directory: Path, *, keep: Path, prefix: str = CHECKPOINT_PREFIX, protect: tuple[str | os.PathLike[str], ...] = (),
    trainer: str | None = None,
) -> None:
    """Delete the ``<prefix>N/`` saves an earlier run left in ``directory``, all but ``keep`` (the
    fresh run's first checkpoint, just written: ``resume=True`` would otherwise pick the earlier
    run's latest, and a folder mixing two runs' epochs misleads an explicit resume) and those
    holding a ``protect`` path (the model the run started from, e.g. ``init_model`` pointing at
    an earlier epoch's ``model/``). Only checkpoints this package wrote are deleted (a save
    marked as one, or from before saves recorded their kind, one holding
    ``trainer_state.json``), with a warning naming them."""
    sources = [Path(p).resolve() for p in protect]
    earlier = [
        p for _, p in checkpoint_steps(directory, prefix)
        if p != keep and _is_checkpoint(p) and _of_trainer(p, trainer)
        and not any(s == p.resolve() or p.resolve() in s.parents for s in sources)
    ]
    links = [p for p in earlier if p.is_symlink()]  # another folder's checkpoint, linked here: not ours to delete
    if links:
        log.warning("a fresh run into %s: leaving the symbolic links %s to earlier checkpoints (delete them "
                    "yourself if they are stale)", directory, [p.name for p in links])
        earlier = [p for p in earlier if not p.is_symlink()]
    if earlier:
        log.warning("a fresh run into %s: removing an earlier run's checkpoints %s", directory,
                    [p.name for p in earlier])
    for p in earlier:
        shutil.rmtree(p)


class EarlierCheckpoints:
    """Call :meth:`written` after every checkpoint a run saves: the first call of a fresh run
    (``fresh=True``) removes the checkpoints an earlier run left in the same folder
    (:func:`remove_earlier_checkpoints`); a resumed run keeps them, and so does a fresh run that
    fails before its first checkpoint. ``protect``: paths the run started from (``init_model``,
    ``init_from``), whose checkpoint folders are kept. ``trainer``: the run's ``rag-relax``
    command; another trainer's checkpoints are kept (and never counted by
    :func:`prune_checkpoints`)."""

    def __init__(
        self, *, fresh: bool, prefix: str = CHECKPOINT_PREFIX, protect: tuple[str | os.PathLike[str] | None, ...] = (),
        trainer: str | None = None,
    ) -> None:
        self.prefix, self._pending, self.trainer = prefix, fresh, trainer
        self.protect = tuple(p for p in protect if p is not None)  # what the run started from: kept

    def written(self, path: Path) -> None:
        """``path``: the checkpoint just written (kept), a ``<prefix>N/`` folder of the run."""
        if self._pending:
            remove_earlier_checkpoints(path.parent, keep=path, prefix=self.prefix, protect=self.protect,
                                       trainer=self.trainer)
            self._pending = False


def check_checkpoint_targets(directory: Path, prefix: str, upto: int) -> None:
    """Refuse now, not when the run gets there, an existing ``<prefix>N/`` folder (``N <= upto``)
    in ``directory`` that a checkpoint save of the run would refuse to replace (a folder of the
    user's), as :func:`~rag_relax_plugins._io.check_save_target` does for the final model."""
    for n, folder in checkpoint_steps(directory, prefix):
        if n <= upto and folder.name == f"{prefix}{n}":  # "checkpoint_epoch_01" is not the run's
            check_save_target(folder, kind="checkpoint", replace_if_contains=("trainer_state.json",))


def check_source_outside_checkpoints(
    source: str | os.PathLike[str] | None, what: str, directory: Path, prefix: str, upto: int, *, run: str = "this run"
) -> None:
    """Refuse a model a fresh run starts from (``what``: the option naming it) that lies inside a
    ``<prefix>N/`` folder of ``directory`` the run writes (``N <= upto``): its own checkpoint would
    replace it (fine-tuning from an earlier epoch of the same output lost that epoch)."""
    if source is None:
        return
    inside = Path(source).resolve()
    for n, folder in checkpoint_steps(directory, prefix):
        folder = folder.resolve()
        if n <= upto and (inside == folder or folder in inside.parents):
            raise ValueError(f"{what} {source} is inside {folder}, which {run} writes and would replace; nothing "
                             f"was written. Copy it elsewhere first, or train into another output folder")


@contextlib.contextmanager
def said_if_diverged(optimizer: Any, step: int, *, hint: str = "lower the learning rate") -> Iterator[None]:
    """Around a training step's forward pass: a ``ValueError`` it raises (the scores' "contains NaN
    or inf") becomes "training diverged at step ``step``" when an earlier update left a non-finite
    weight (``step``: the updates made so far). The weights are read only then: no cost per step."""
    import torch

    try:
        yield
    except ValueError as exc:
        if step and any(not bool(torch.isfinite(p).all()) for g in optimizer.param_groups for p in g["params"]):
            raise ValueError(f"training diverged at step {step} (a non-finite weight after the update): "
                             f"{hint}; the checkpoints written so far are kept") from exc
        raise


def _of_trainer(folder: Path, trainer: str | None) -> bool:
    """``folder`` may be a checkpoint of ``trainer`` (``None``: any; not told: yes)."""
    if trainer is None:
        return True
    wrote = checkpoint_trainer(folder)
    return wrote is None or wrote == trainer


def _is_checkpoint(folder: Path) -> bool:
    kind = saved_kind(folder)
    return kind == "checkpoint" or (kind is None and (folder / "trainer_state.json").is_file())


def prune_checkpoints(directory: Path, keep: int, *, current: int, trainer: str | None = None) -> None:
    """Keep the ``keep`` newest checkpoints up to step ``current`` (the one just written among them).

    Checkpoints of later steps (left by an earlier run when this one resumed from an older
    checkpoint) are neither counted nor deleted; a warning names them. A folder named like a
    checkpoint that this package did not write as one, a symbolic link, or (with ``trainer``, the
    ``rag-relax`` command of the run) another trainer's checkpoint is neither counted nor deleted.
    """
    found = [(s, p) for s, p in checkpoint_steps(directory)
             if _is_checkpoint(p) and not p.is_symlink() and _of_trainer(p, trainer)]
    later = [p.name for s, p in found if s > current]
    if later:
        log.warning("%s holds checkpoints past step %d from an earlier run: %s", directory, current, later)
    for _, p in [(s, p) for s, p in found if s <= current][:-keep]:
        shutil.rmtree(p, ignore_errors=True)


def pyplot() -> Any | None:
    """``matplotlib.pyplot`` on the non-interactive ``Agg`` backend, or ``None`` (with a warning)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log.warning('matplotlib is not installed (pip install "rag-relax-plugins[plot]"): no loss curve PNG')
        return None
    return plt


def save_png(fig: Any, path: str | Path, *, dpi: int = 100) -> Path:
    """Write ``fig`` as a PNG to ``path`` atomically (parent folders created), then close it."""
    import matplotlib.pyplot as plt  # a figure exists, so matplotlib does

    buf = io.BytesIO()
    try:
        fig.tight_layout()
        fig.savefig(buf, format="png", dpi=dpi)
    finally:
        plt.close(fig)
    return atomic_write_bytes(path, buf.getvalue())


@contextlib.contextmanager
def run_folder(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Create the output folder of a run for the ``with`` body; if the body raises and the folder
    is new, remove it again when it holds nothing but empty files and folders (an empty
    ``training.log``), with the parent folders it created: a run refused for its data, options or
    model leaves nothing behind. A folder with any content (a checkpoint to resume from, a log
    with lines) is kept."""
    folder = Path(path)
    top = None  # the outermost folder this call creates (parents included)
    for candidate in (folder, *folder.parents):
        if candidate.exists():
            break
        top = candidate
    folder.mkdir(parents=True, exist_ok=True)
    try:
        yield folder
    except BaseException:
        if top is not None:
            _remove_if_empty(top)
        raise


def _remove_if_empty(folder: Path) -> None:
    entries = list(folder.rglob("*"))
    if any(p.is_symlink() or (p.is_file() and p.stat().st_size > 0) for p in entries):
        return
    for p in sorted(entries, key=lambda e: len(e.parts), reverse=True):  # files and subfolders first
        if p.is_dir():
            p.rmdir()
        else:
            p.unlink()
    folder.rmdir()


@contextlib.contextmanager
def run_folder_with_log(path: str | os.PathLike[str], logger: logging.Logger) -> Iterator[Path]:
    """:func:`run_folder` whose ``training.log`` receives ``logger``'s INFO records for the body
    (the logger's level is lowered to INFO meanwhile and restored after, as is its handler list)."""
    with run_folder(path) as out:
        handler = logging.FileHandler(out / "training.log", encoding="utf-8")
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        handler.setLevel(logging.INFO)
        logger.addHandler(handler)
        old_level = logger.level
        if logger.getEffectiveLevel() > logging.INFO:
            logger.setLevel(logging.INFO)
        try:
            yield out
        finally:
            logger.setLevel(old_level)
            logger.removeHandler(handler)
            handler.close()
