"""The rule shared by the trainers' ``resume_from``: a checkpoint resumes only with its own options.

Each trainer stores its options in the checkpoint (:func:`resume_options`) and, before it writes
anything or changes any weight, compares them with the new run's (:func:`check_resume_options`).
Options that shape the run (data, model, loss, optimiser, schedule, seed ...) must be equal;
each trainer names the few runtime-only ones that may change (device, progress bar, output and
checkpoint paths ...) and says why. ``train-mol`` applies the same rule
(:func:`rag_relax_plugins.training.mol_train.train_retrieval`).
"""

from __future__ import annotations

import hashlib
import logging
import numbers
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rag_relax_plugins._io import file_sha256, read_json

__all__ = ["TRAINING_DATA", "ResumePolicy", "check_checkpoint_options", "check_resume_options", "check_state_fields",
           "data_sha256", "read_trainer_state", "resume_options", "stored_options"]

log = logging.getLogger(__name__)


def resume_options(config: Mapping[str, Any], paths: Iterable[str] = ()) -> dict[str, Any]:
    """``config`` as stored in a checkpoint and compared on resume.

    The options named in ``paths`` that hold an existing local path are made absolute, so a
    resume started from another working directory (or with ``./x`` for ``x``) compares the same
    files; other values (``None``, hub names, ``hashing:64``) are kept as they are. A path that is
    a file also gets ``<name>_sha256``, the SHA-256 of its content, so a data file edited in place
    between the run and its resume is refused too (folders, e.g. model folders, are compared by
    path only).
    """
    out = dict(config)
    for name in paths:
        value = out.get(name)
        if isinstance(value, str) and value:
            path = Path(value).expanduser()
            if path.exists():
                out[name] = str(path.resolve())
            if path.is_file():
                out[f"{name}_sha256"] = file_sha256(path)
    return out


# the checkpoint option holding data_sha256 of what a run trains on, whichever way it was given
TRAINING_DATA = "training_data_sha256"


def data_sha256(value: Any) -> str:
    """SHA-256 of ``value`` as JSON (dataclasses as dicts, tuples as lists): the training data
    a run was actually given, stored beside the options so that a resume on other data is
    refused even when the options do not name it (data passed to the Python API, or the default
    data file edited in place)."""
    import dataclasses
    import json

    def plain(obj: Any) -> Any:
        if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
            return dataclasses.asdict(obj)
        if isinstance(obj, numbers.Integral):  # numpy integers, as the data checks accept them
            return int(obj)
        if isinstance(obj, numbers.Real):
            return float(obj)
        if callable(getattr(obj, "tolist", None)):  # numpy arrays
            return obj.tolist()
        raise TypeError(f"cannot fingerprint a {type(obj).__name__}")

    return hashlib.sha256(json.dumps(value, default=plain, sort_keys=True).encode()).hexdigest()


# the fields of trainer_state.json every trainer's resume reads, and their JSON types
STATE_FIELDS: dict[str, tuple[type, ...]] = {
    "scheduler": (dict,), "epoch": (int,), "step": (int,), "best": (int, float), "history": (dict,),
    "config": (dict,), "pos": (int,),
}


_COUNTERS = ("epoch", "step", "pos")  # counts of work done: never negative


def check_state_fields(file: Path, state: Any, names: Iterable[str]) -> None:
    """Refuse a ``trainer_state.json`` (``file``) that lacks a field a resume reads (``names``, of
    :data:`STATE_FIELDS`) or holds one of another type, naming the file and the field: it was a
    ``KeyError``, or a ``TypeError`` deep in the training loop after files had been written.
    ``history`` must map names to lists; ``epoch``, ``step`` and ``pos`` must be ``>= 0``.

    Raises:
        ValueError: ``"<file>: 'step' is missing or not int ..."``.
    """
    if not isinstance(state, dict):
        raise ValueError(f"{file}: expected a JSON object (a damaged checkpoint?)")
    for name in names:
        value, types = state.get(name), STATE_FIELDS[name]
        ok = isinstance(value, types) and not isinstance(value, bool)
        if ok and name == "history" and isinstance(value, dict):
            ok = all(isinstance(v, list) for v in value.values())
        if not ok:
            kind = " or ".join(t.__name__ for t in types) + (" of lists" if name == "history" else "")
            raise ValueError(f"{file}: {name!r} is missing or not {kind}, got {value!r:.80} (a damaged checkpoint?); "
                             "nothing was changed")
        if name in _COUNTERS and isinstance(value, int) and value < 0:  # a negative pos sliced the epoch's order from its end
            raise ValueError(f"{file}: {name!r} must be >= 0, got {value!r} (a damaged checkpoint?); nothing was changed")


def read_trainer_state(
    folder: Path, *, version: int, fields: Iterable[str], unversioned: int | None = None,
    history_lists: Sequence[str] = (),
    step_list: str | None = None,
) -> dict[str, Any]:
    """The ``trainer_state.json`` of checkpoint ``folder``: a JSON object of format ``version``
    holding ``fields`` (:func:`check_state_fields`), read before a resume changes anything.

    Args:
        folder: the checkpoint folder.
        version: the trainer's checkpoint format version.
        fields: the fields its resume reads.
        unversioned: the version of a state without ``format_version`` (written before the key
            existed); ``None`` refuses such a state.
        history_lists: the lists ``history`` must hold (the loop indexes them: a missing one was
            a ``KeyError`` after the model had loaded).
        step_list: the list of ``history`` holding one entry per optimiser step: its length must
            be ``step`` (a damaged ``step`` resumed past the schedule and returned untrained).

    Raises:
        FileNotFoundError: no ``trainer_state.json``.
        ValueError: not a JSON object, another format version, or a field missing or mistyped
            (each naming the file).
    """
    file = folder / "trainer_state.json"
    state = read_json(file)
    check_state_fields(file, state, ())  # a JSON object, not a list
    found = state.get("format_version", unversioned)
    if found != version:
        raise ValueError(f"{file}: unsupported checkpoint format_version {found!r}; this library reads {version}")
    check_state_fields(file, state, fields)
    history = state.get("history")
    if history_lists and not (isinstance(history, dict) and all(isinstance(history.get(k), list) for k in history_lists)):
        names = [repr(k) for k in history_lists]
        listed = names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"
        raise ValueError(f"{file}: 'history' must hold the lists {listed} (a damaged checkpoint?)")
    if step_list is not None and len(history[step_list]) != state["step"]:
        raise ValueError(f"{file}: 'step' is {state['step']}, but 'history' holds {len(history[step_list])} "
                         f"{step_list!r} entries, one per step (a damaged checkpoint?); nothing was changed")
    return dict(state)


def check_resume_options(
    saved: Mapping[str, Any] | None,
    now: Mapping[str, Any],
    runtime_only: Iterable[str],
    where: str | Path,
) -> None:
    """Refuse to resume checkpoint ``where`` with options other than those it was trained with.

    Args:
        saved: the options stored in the checkpoint (:func:`resume_options` of the interrupted
            run); ``None`` for a checkpoint written before they were stored: resumes with a
            warning, unchecked.
        now: the new run's options, through the same :func:`resume_options`.
        runtime_only: names that may differ (the caller documents why each one may).
        where: the checkpoint, for the messages.

    Options the checkpoint does not record (added to the trainer after it was written) are not
    checked.

    Raises:
        ValueError: ``"cannot resume from <where>: different options: name (checkpoint X, now Y), ..."``.
    """
    if saved is None:
        log.warning("checkpoint %s does not store its training options (older format): resuming "
                    "without checking that they match this run's", where)
        return
    skip = set(runtime_only)
    diff = [f"{k} (checkpoint {saved[k]!r}, now {now[k]!r})"
            for k in sorted(now) if k not in skip and k in saved and saved[k] != now[k]]
    if diff:
        raise ValueError(f"cannot resume from {where}: different options: {', '.join(diff)}")


def check_checkpoint_options(
    folder: Path, options: Mapping[str, Any], *, runtime_only: Iterable[str]
) -> None:
    """:func:`check_resume_options` against the ``"config"`` of ``folder/trainer_state.json``.

    Args:
        folder: the checkpoint.
        options: the new run's options, already through :func:`resume_options` (the same dict
            the run stores in its checkpoints: every data file is hashed once per run).
        runtime_only: names that may differ.

    Raises:
        FileNotFoundError: ``folder`` is not a checkpoint (no ``trainer_state.json``).
        ValueError: different options, named with both values.
    """
    check_resume_options(stored_options(folder), options, runtime_only, folder)


def stored_options(folder: Path) -> dict[str, Any] | None:
    """The options checkpoint ``folder`` stored under ``"config"`` of its ``trainer_state.json``
    (``None`` for a checkpoint written before they were: no ``"config"`` key).

    Raises:
        FileNotFoundError: ``folder`` is not a checkpoint (no ``trainer_state.json``).
        ValueError: an unreadable ``trainer_state.json``, or a ``"config"`` that is not a JSON
            object (named: a damaged checkpoint resumed unchecked as if it were an older one).
    """
    file = folder / "trainer_state.json"
    if not file.is_file():
        raise FileNotFoundError(f"checkpoint not found: {folder} (expected trainer_state.json inside)")
    state = read_json(file)
    if "config" in state and not isinstance(state["config"], dict):  # not an older format: damaged
        raise ValueError(f"{file}: 'config' is not a JSON object, got {state['config']!r:.80} (a damaged "
                         "checkpoint?); nothing was changed")
    return state.get("config")


@dataclass(frozen=True)
class ResumePolicy:
    """One trainer's resume rule: the options a resume may change and those holding local paths.

    ``options(cfg.to_dict())`` gives what every checkpoint stores (paths absolute, files hashed);
    ``check(folder, options)`` refuses a resume whose options differ from the checkpoint's.
    """

    runtime_only: frozenset[str]
    paths: tuple[str, ...] = ()
    # the options a configuration (stored options or the new run's) does not use at all: they may
    # differ when neither run uses them (a backbone learning rate with a frozen backbone)
    unused: Callable[[Mapping[str, Any]], set[str]] | None = None
    # options the checkpoint decides on a resume (G-Rerank's scorer settings): the new run's values
    # of these are read from the checkpoint when judging what it leaves unused
    from_checkpoint: tuple[str, ...] = ()

    def options(self, config: Mapping[str, Any]) -> dict[str, Any]:
        """``config`` as stored in a checkpoint (:func:`resume_options`)."""
        return resume_options(config, self.paths)

    def check(self, folder: Path, options: Mapping[str, Any]) -> None:
        """:meth:`compare` against the options ``folder`` stored (``options`` from :meth:`options`)."""
        self.compare(stored_options(folder), options, folder)

    def compare(self, saved: Mapping[str, Any] | None, options: Mapping[str, Any], where: Path) -> None:
        """:func:`check_resume_options` with this policy: the runtime-only options, and an option
        neither run uses (:attr:`unused`), may differ."""
        inert: set[str] = set()
        if self.unused is not None and saved is not None:
            resumed = {**options, **{k: saved[k] for k in self.from_checkpoint if k in saved}}
            inert = self.unused(saved) & self.unused(resumed)
        check_resume_options(saved, options, self.runtime_only | inert, where)
