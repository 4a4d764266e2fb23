"""What the LangChain and LlamaIndex embedding wrappers share: the check of options a passed model
makes unused, the model's digest name (a cache key), and the check of raw vectors given back to
them for scoring."""

from __future__ import annotations

import hashlib
import json
from typing import Any

__all__ = ["check_model_arguments", "model_digest_name", "raw_vectors"]


def raw_vectors(name: str, rows: object, dim: int, *, one: bool = False) -> Any:
    """``rows`` (a list of vectors; with ``one``, a single vector) as a ``(N, dim) x float32``
    tensor (``N = 1`` with ``one``); lists, tuples, numpy arrays and tensors alike.

    A vector of another width (a cosine-compatible one is ``dim + 2`` wide, a truncated one
    shorter) was scored as if raw, and a flat list for a list of vectors failed inside torch
    ("shape '[16, 16]' is invalid").

    Raises:
        ValueError: not that, named ``name``, with the shape given.
    """
    import torch

    what = f"a vector of {dim} numbers" if one else f"a list of vectors of {dim} numbers"
    try:
        t = torch.as_tensor(rows, dtype=torch.float32)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise ValueError(f"{name} must be {what} ({exc})") from exc
    if not one and t.shape == (0,):  # an empty list of vectors
        return t.reshape(0, dim)
    if t.dim() != (1 if one else 2) or t.shape[-1] != dim:
        raise ValueError(f"{name} must be {what} (the model's raw width), got shape {tuple(t.shape)}")
    return t.unsqueeze(0) if one else t


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


def model_digest_name(model: Any) -> str:
    """``gaussian-embedder@<16 hex>``: a digest of the model's config and weights (a cache key
    that tells two loaded models apart; a few hundred ms for MiniLM on a CPU)."""
    h = hashlib.sha256()
    config = getattr(model, "config", None)
    to_dict = getattr(config, "to_dict", None)
    h.update(json.dumps(to_dict() if callable(to_dict) else repr(config), sort_keys=True, default=str).encode())
    state_dict = getattr(model, "state_dict", None)
    if callable(state_dict):
        import torch

        for name, tensor in sorted(state_dict().items()):
            t = tensor.detach().to("cpu").contiguous()
            h.update(f"{name}\0{tuple(t.shape)}\0{t.dtype}\n".encode())
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return f"gaussian-embedder@{h.hexdigest()[:16]}"
