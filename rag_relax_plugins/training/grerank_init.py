"""``init_from`` of the G-Rerank trainer: the saved folder decides the scorer, the config must agree.

A run started from a saved :class:`~rag_relax_plugins.rerankers.gumbel.GumbelReranker` folder takes
its scorer kind, backbone, word-piece length and frozen layers from that folder. The config's
``scorer``, ``backbone``, ``scorer_max_length`` and ``trainable_layers`` are then only allowed at
their defaults (they give way) or at the saved values; anything else is refused, because it would
be ignored. :func:`effective_config` returns the config with the saved values, the one
``train_config.json`` records.
"""

from __future__ import annotations

from dataclasses import fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rag_relax_plugins._io import find_saved_folder, read_json

if TYPE_CHECKING:
    from rag_relax_plugins.training.grerank import GRerankConfig

__all__ = ["effective_config", "saved_scorer_settings"]


def saved_scorer_settings(folder: str | Path) -> dict[str, Any]:
    """``scorer``, ``backbone``, ``scorer_max_length``, ``trainable_layers`` of a saved reranker folder
    (read from its ``scorer.json``; ``backbone`` is ``None``: the folder holds its own).

    Raises:
        FileNotFoundError: ``folder`` is not a saved reranker. ValueError: a corrupt ``scorer.json``.
    """
    root = find_saved_folder(folder, "config.json")
    file = root / "scorer.json"
    if not file.is_file():
        raise FileNotFoundError(f"no scorer.json in {root} (expected a GumbelReranker folder)")
    meta = read_json(file)
    try:
        return {"scorer": meta["kind"], "backbone": None, "scorer_max_length": int(meta["max_length"]),
                "trainable_layers": int(meta["trainable_layers"])}
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{file} is not a valid scorer config: {exc!r}") from exc


def effective_config(cfg: GRerankConfig) -> GRerankConfig:
    """``cfg`` with the scorer settings of ``cfg.init_from`` (``cfg`` itself without one, or when
    resuming: the checkpoint's weights are used then).

    Raises:
        ValueError: a scorer setting differs from both its default and the saved value.
    """
    if cfg.init_from is None or cfg.resume_from is not None:
        return cfg
    saved = saved_scorer_settings(cfg.init_from)
    default = {f.name: f.default for f in fields(cfg)}
    shown = {**{k: repr(v) for k, v in saved.items()}, "backbone": "the one inside the folder"}
    clash = [f"{name} (saved {shown[name]}, given {getattr(cfg, name)!r})" for name in saved
             if getattr(cfg, name) not in (saved[name], default[name])]
    if clash:
        raise ValueError(f"init_from={cfg.init_from!r} decides the scorer, so these options would be ignored: "
                         f"{', '.join(clash)}; leave them at their defaults or give the saved values")
    return replace(cfg, **saved)
