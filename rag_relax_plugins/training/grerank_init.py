"""The scorer a G-Rerank run trains when a saved folder decides it: ``init_from`` and ``resume_from``.

A run started from a saved :class:`~rag_relax_plugins.rerankers.gumbel.GumbelReranker` folder
(``init_from``), or resumed from a checkpoint (whose ``reranker/`` folder it loads), takes its
scorer kind, backbone, word-piece length and frozen layers from that folder. The config's
``scorer``, ``backbone``, ``scorer_max_length`` and ``trainable_layers`` (:data:`SCORER_OPTIONS`)
are then only allowed at their defaults (they give way) or at the folder's values (on resume also
at the values the checkpoint recorded, as the original command gave them); anything else is
refused, because it would be ignored. :func:`effective_config` returns the config with the values
used: the one ``train_config.json`` records and checkpoints store, so a resume works with the
original options and with the recorded ``train_config.json`` alike.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields, replace
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

from rag_relax_plugins._io import find_saved_folder, read_json
from rag_relax_plugins.training._resume_check import resume_options

if TYPE_CHECKING:
    from rag_relax_plugins.training.grerank_config import GRerankConfig

__all__ = ["SCORER_OPTIONS", "effective_config", "saved_scorer_settings"]

# GRerankConfig options a saved reranker folder decides (init_from, or a checkpoint on resume)
SCORER_OPTIONS = ("scorer", "backbone", "scorer_max_length", "trainable_layers")


def saved_scorer_settings(folder: str | Path) -> dict[str, Any]:
    """``scorer``, ``backbone``, ``scorer_max_length``, ``trainable_layers`` of a saved reranker folder
    (read from its ``scorer.json``; ``backbone`` is ``None``: the folder holds its own).

    Raises:
        FileNotFoundError: ``folder`` is not a saved reranker. ValueError: a corrupt ``scorer.json``.
    """
    from rag_relax_plugins.rerankers.gumbel import GumbelReranker

    root = find_saved_folder(folder, "config.json", what="saved Gumbel reranker", kind=GumbelReranker.SAVE_KIND)
    file = root / "scorer.json"
    if not file.is_file():
        raise FileNotFoundError(f"no scorer.json in {root} (expected a GumbelReranker folder)")
    meta = read_json(file)
    try:
        settings = {"scorer": meta["kind"], "backbone": None, "scorer_max_length": int(meta["max_length"]),
                    "trainable_layers": int(meta["trainable_layers"])}
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{file} is not a valid scorer config: {exc!r}") from exc
    backbone = root / "backbone" / "config.json"
    if backbone.is_file():  # the max_length load_scorer uses: capped at the backbone's positions
        from rag_relax_plugins.embedders.sentence_transformer import usable_positions

        positions = usable_positions(SimpleNamespace(**read_json(backbone)))
        if positions is not None:
            settings["scorer_max_length"] = min(settings["scorer_max_length"], positions)
    return settings


def effective_config(
    cfg: GRerankConfig,
    *,
    checkpoint: Path | None = None,
    recorded: Mapping[str, Any] | None = None,
    scorer: Any = None,
) -> GRerankConfig:
    """``cfg`` with the scorer settings the run trains.

    Args:
        cfg: the run's options.
        checkpoint: the checkpoint resumed (``cfg.resume_from``, found): its ``reranker/`` decides
            the scorer; ``None``: ``cfg.init_from`` decides it, or ``cfg`` itself without one.
        recorded: the options the checkpoint stored (``None`` for a checkpoint without them).
            Their ``backbone`` is kept (``None`` when that run started from ``init_from``), and
            their values are accepted too: checkpoints written before the effective settings were
            stored hold the options as given. A ``backbone`` path given is compared as
            checkpoints store it (absolute).
        scorer: the scorer of a reranker passed to the run (without a checkpoint): it decides, as a
            saved ``init_from`` does (a frozen backbone asked for trained every layer, and the
            options given were recorded as if used).

    Raises:
        ValueError: a scorer setting differs from its default and from the folder's (and the
            recorded) value.
    """
    if checkpoint is None and cfg.init_from is None and scorer is None:
        return cfg
    source = str(checkpoint) if checkpoint is not None else repr(cfg.init_from)
    if checkpoint is None and scorer is not None:
        saved = {"scorer": scorer.kind, "backbone": None, "scorer_max_length": int(scorer.max_length),
                 "trainable_layers": int(scorer.trainable_layers)}
    else:
        saved = saved_scorer_settings(checkpoint / "reranker" if checkpoint is not None else cfg.init_from)  # type: ignore[arg-type]
    allowed: dict[str, list[Any]] = {name: [saved[name]] for name in SCORER_OPTIONS}
    if checkpoint is not None and recorded is None:  # no stored options: the backbone given is kept
        saved["backbone"] = cfg.backbone
        allowed["backbone"].append(resume_options({"backbone": cfg.backbone}, ("backbone",))["backbone"])
    elif checkpoint is not None and recorded is not None:
        if recorded.get("init_from") is None and "backbone" in recorded:
            saved["backbone"] = recorded["backbone"]  # a fresh run's backbone, as stored
        allowed = {name: [saved[name], *([recorded[name]] if name in recorded else [])] for name in SCORER_OPTIONS}
    default = {f.name: f.default for f in fields(cfg)}

    def fits(name: str) -> bool:
        given = getattr(cfg, name)
        if name == "backbone" and checkpoint is not None:  # stored absolute (resume_options)
            given = resume_options({name: given}, (name,))[name]
        return given == default[name] or given in allowed[name]

    passed = checkpoint is None and scorer is not None
    shown = {name: repr(saved[name]) for name in SCORER_OPTIONS}
    if saved["backbone"] is None:
        shown["backbone"] = "its own" if passed else "the one inside the folder"
    label = "checkpoint" if checkpoint is not None else "the reranker's" if passed else "saved"
    clash = [f"{name} ({label} {shown[name]}, given {getattr(cfg, name)!r})" for name in SCORER_OPTIONS if not fits(name)]
    if clash:
        what, values = ((f"cannot resume from {source}: its reranker", "the checkpoint's") if checkpoint is not None
                        else ("the reranker passed", "its") if passed else (f"init_from={source}", "the saved"))
        raise ValueError(f"{what} decides the scorer, so these options would be ignored: {', '.join(clash)}; "
                         f"leave them at their defaults or give {values} values")
    return replace(cfg, **saved)
