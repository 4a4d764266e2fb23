"""Checks the LangChain and LlamaIndex embedding wrappers share: options a passed model makes unused."""

from __future__ import annotations

from typing import Any

__all__ = ["check_model_arguments"]


def check_model_arguments(model: Any, model_path: Any, device: str | None) -> None:
    """Refuse ``model_path`` beside ``model``, and a ``device`` other than the model's.

    Both only serve to load ``model_path``: with a loaded ``model`` they were silently unused
    (the model stays where it is).

    Raises:
        ValueError: ``model_path`` given with ``model``, or ``device`` naming another device than
            ``model.device``.
    """
    if model is None:
        return
    if model_path is not None:
        raise ValueError("pass model_path or model, not both (model_path would be ignored)")
    if device is None:
        return
    import torch

    from rag_relax_plugins.core.device import resolve_device

    want, have = resolve_device(device), getattr(model, "device", None)
    if not isinstance(have, torch.device):
        raise ValueError(f"device={device!r} is used only to load model_path: move the model yourself")
    same = want.type == have.type and (want.index is None or have.index is None or want.index == have.index)
    if not same:
        raise ValueError(f"device={device!r}, but the model is on {have}: device is used only to load "
                         "model_path; move the model yourself (model.to(...)) or leave device unset")
