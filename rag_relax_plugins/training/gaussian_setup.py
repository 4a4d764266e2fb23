"""What a Gaussian-embedder run starts from: the model, the options it really uses, precision advice.

Used by :func:`~rag_relax_plugins.training.gaussian_train.train`: options that the model would
silently ignore are refused (:func:`check_against_model`); the dropout and freezing the run
trains with are resolved before the options are stored in checkpoints (:func:`effective_config`),
so a resume rebuilds the same model; :func:`precision_notes` (from
:mod:`rag_relax_plugins.core.device`, shared with the MoL trainer) says what mixed precision does
on a device.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch

from rag_relax_plugins._io import read_json
from rag_relax_plugins.core.device import precision_notes
from rag_relax_plugins.embedders._gaussian_backbone import embedding_dim
from rag_relax_plugins.embedders.gaussian import GaussianEmbedder
from rag_relax_plugins.training.gaussian_objective import TrainConfig

__all__ = ["build_model", "check_against_model", "effective_config", "ignored_options", "precision_notes",
           "saved_model_settings", "unused_options"]

log = logging.getLogger("rag_relax_plugins.training.gaussian_train")  # the trainer's log (training.log)


def same_backbone(a: str | None, b: str | None) -> bool:
    """Two backbone references name the same thing (folders compared as resolved paths; ``None``
    is the offline MiniLM package: a config's default, and the base of a save written before
    ``base_backbone`` was recorded, which ``GaussianEmbedder.load`` takes as that package)."""
    if a is None or b is None:
        if a == b:
            return True
        try:
            from rag_relax_plugins.embedders._gaussian_backbone import default_backbone_path

            a, b = (default_backbone_path() if x is None else x for x in (a, b))
        except ImportError:  # MissingExtraError: without the package, None names nothing else
            return False
    if a.startswith("hashing:") or b.startswith("hashing:"):
        return a == b
    return Path(a).expanduser().resolve() == Path(b).expanduser().resolve()


def check_against_model(cfg: TrainConfig, model: GaussianEmbedder, source: str, *, settable: bool) -> None:
    """Refuse options of ``cfg`` that the model actually trained would silently ignore.

    ``output_dim`` / ``geometry`` / ``backbone`` are checked when set (not ``None``). With
    ``settable=False`` (a model passed to :func:`~.gaussian_train.train`), ``dropout`` and
    ``freeze_early_layers`` are checked too, unless they keep the :class:`TrainConfig` default
    (then the model's own values are used); with ``init_model`` / ``resume_from`` they are
    applied to the loaded model instead.
    """
    for name in ("output_dim", "geometry"):
        want = getattr(cfg, name)
        if want is not None and want != getattr(model.config, name):
            raise ValueError(f"{name}={want!r} differs from the {source}'s {getattr(model.config, name)!r}")
    if cfg.backbone is not None and not any(
        same_backbone(cfg.backbone, b) for b in (model.base_backbone, model.config.backbone)
    ):
        raise ValueError(f"backbone={cfg.backbone!r} differs from the {source}'s backbone "
                         f"{model.base_backbone or 'offline MiniLM'!r}: drop the backbone option (the model brings its own)")
    if settable:
        return
    defaults = TrainConfig()
    if cfg.dropout not in (defaults.dropout, model.config.dropout):
        raise ValueError(f"dropout={cfg.dropout!r} differs from the {source}'s {model.config.dropout!r}")
    have = (model.config.freeze, model.config.freeze_layers if model.config.freeze == "first_n" else 0)
    want_freeze = cfg.freeze_fields()
    if cfg.freeze_early_layers != defaults.freeze_early_layers and (want_freeze["freeze"], want_freeze["freeze_layers"]) != have:
        raise ValueError(f"freeze_early_layers={cfg.freeze_early_layers!r} differs from the {source}'s freezing "
                         f"(freeze={have[0]!r}, freeze_layers={have[1]})")


def model_settings(dropout: float, freeze: str, freeze_layers: int) -> dict[str, Any]:
    """``dropout`` and ``freeze_early_layers`` of :class:`TrainConfig` from a model config's fields."""
    layers = {"all": -1, "first_n": freeze_layers}.get(freeze, 0)
    return {"dropout": dropout, "freeze_early_layers": layers}


def saved_model_settings(checkpoint: Path) -> dict[str, Any] | None:
    """``dropout`` and ``freeze_early_layers`` of the model in ``checkpoint`` (its ``model/config.json``).

    These are what the checkpoint's run trained with. ``None`` when there is no such file (not a
    checkpoint: the resume check says so).

    Raises:
        ValueError: an unreadable or foreign ``config.json`` (named).
    """
    file = checkpoint / "model" / "config.json"
    if not file.is_file():
        return None
    try:
        saved = read_json(file)
        return model_settings(float(saved["dropout"]), str(saved["freeze"]), int(saved["freeze_layers"]))
    except (KeyError, TypeError, ValueError) as exc:  # read_json's ValueErrors included
        raise ValueError(f"{file}: not a readable Gaussian embedder config ({exc})") from exc


def effective_config(cfg: TrainConfig, model: GaussianEmbedder | None) -> TrainConfig:
    """``cfg`` with the dropout and freezing the run really trains with (stored in checkpoints).

    A model passed to :func:`~.gaussian_train.train` brings its own (``cfg`` must match it, or keep the
    defaults). A resume takes them from the checkpoint's ``model/config.json`` where ``cfg``
    keeps the defaults, so a run started with ``model=`` resumes with that model's settings; a
    value set explicitly is compared with the checkpoint's by the resume check.
    """
    if model is not None:
        check_against_model(cfg, model, "model passed to train()", settable=False)
        mc = model.config
        return dataclasses.replace(cfg, **model_settings(mc.dropout, mc.freeze, mc.freeze_layers))
    if cfg.resume_from is None:
        return cfg
    settings = saved_model_settings(Path(cfg.resume_from))
    if settings is None:
        return cfg  # not a checkpoint: the resume check says so
    defaults = TrainConfig()
    keep = {k: v for k, v in settings.items() if getattr(cfg, k) == getattr(defaults, k)}
    return dataclasses.replace(cfg, **keep)


def build_model(cfg: TrainConfig, dev: torch.device) -> GaussianEmbedder:
    """A new model, a fine-tuning start (``init_model``) or the checkpoint's model."""
    source = cfg.init_model if cfg.init_model is not None else (
        str(Path(cfg.resume_from) / "model") if cfg.resume_from is not None else None
    )
    if source is None:
        model = GaussianEmbedder(cfg.model_config(), device=dev)
        in_dim = embedding_dim(model.backbone)
        if model.config.head_init == "identity" and model.dim < in_dim:
            log.warning("output_dim=%d is below the backbone dimension %d: the identity head starts as a projection, "
                        "so the untrained model does not rank exactly like the backbone", model.dim, in_dim)
        return model
    model = GaussianEmbedder.load(source, device=dev, dropout=cfg.dropout, **cfg.freeze_fields())
    check_against_model(cfg, model, f"saved model ({source})", settable=True)
    return model


def ignored_options(cfg: TrainConfig) -> list[str]:
    """Options changed from their defaults that this configuration does not use (one line each).

    Harmless, so :func:`~.gaussian_train.train` only warns: e.g. a margin with InfoNCE or a
    target std with ``lambda_reg == 0``.
    """
    d = TrainConfig()
    return [f"{name}={getattr(cfg, name)!r} is ignored: {why}"
            for name, unused, why in _unused_rules(lambda key: getattr(cfg, key))
            if unused and getattr(cfg, name) != getattr(d, name)]


def unused_options(options: Mapping[str, Any]) -> set[str]:
    """The options (``TrainConfig`` field names) that a configuration given as a mapping (e.g. a
    checkpoint's stored options) does not use: whatever their values, the run is the same, so a
    resume does not compare them. With the isotropy term off either way (``isotropy='none'`` or
    ``lambda_isotropy=0``) neither option is used: ``none`` with 0.05 resumes as ``sigreg`` with 0."""
    unused = {name for name, off, _ in _unused_rules(options.get) if off}
    if {"isotropy", "lambda_isotropy"} & unused:
        unused |= {"isotropy", "lambda_isotropy"}
    return unused


def _unused_rules(value: Callable[[str], Any]) -> list[tuple[str, bool, str]]:
    """``(option, unused in this configuration, why)``; ``value(name)`` reads the configuration."""
    return [
        ("margin", value("loss") != "triplet", "the margin is used by the triplet loss only"),
        ("temperature", value("loss") != "infonce", "the temperature is used by InfoNCE only"),
        ("num_slices", value("isotropy") != "sigreg" or value("lambda_isotropy") == 0,
         "num_slices is used by isotropy='sigreg' with lambda_isotropy > 0 only"),
        ("isotropy", value("lambda_isotropy") == 0, "the isotropy term is off with lambda_isotropy=0"),
        ("lambda_isotropy", value("isotropy") == "none", "lambda_isotropy has no effect with isotropy='none'"),
        ("target_std", value("lambda_reg") == 0, "target_std is used only with lambda_reg > 0"),
        ("lambda_predictor", not value("predictor"), "lambda_predictor is used only with predictor=True"),
    ]
