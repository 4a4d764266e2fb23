"""Saved models checked against their files after a load (transformers fills missing weights
at random and only logs it, builds a specials-only tokenizer without ``tokenizer.json``, and
``load_state_dict`` casts integer tensors silently): used by the sentence-transformers loader, the
Gaussian embedder, the cross-encoder scorer and the MaxSim reranker."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

__all__ = ["check_float_weights", "check_saved_weights", "check_tokenizer", "transformer_folder"]


def check_tokenizer(tokenizer: Any, vocab_size: object, folder: object) -> None:
    """Refuse a tokenizer that cannot serve a model whose embedding table has ``vocab_size`` rows.

    Without ``tokenizer.json`` (and no ``vocab.txt``, which the saves of this package do not
    write) transformers 5 builds a tokenizer holding only its special tokens: every word becomes
    ``[UNK]`` and every text the same embedding.

    Raises:
        ValueError: at most as many tokens as special ones, or more tokens than ``vocab_size``
            (an int; anything else is not checked); ``folder`` names the model in the message.
    """
    size = len(tokenizer)
    specials = len(set(getattr(tokenizer, "all_special_tokens", ())))
    if size <= specials:
        raise ValueError(f"{folder}: its tokenizer holds only {size} token(s), its special ones (tokenizer.json "
                         "missing or damaged?): every word would be read as [UNK]")
    if isinstance(vocab_size, int) and not isinstance(vocab_size, bool) and size > vocab_size:
        raise ValueError(f"{folder}: its tokenizer holds {size} tokens, more than the model's vocab_size "
                         f"{vocab_size} (config.json): a tokenizer of another model?")


def check_float_weights(own: Mapping[str, torch.Tensor], saved: Mapping[str, Any], file: object) -> None:
    """Refuse saved tensors that are not floating point where ``own`` (a ``state_dict``) is.

    ``load_state_dict`` casts integer tensors silently; half-precision ones are accepted (cast).
    Keys of ``saved`` missing from ``own`` are left to the caller.

    Raises:
        ValueError: naming ``file`` and the first such key.
    """
    bad = sorted(k for k, v in saved.items() if k in own and own[k].is_floating_point() and not v.is_floating_point())
    if bad:
        k = bad[0]
        raise ValueError(f"{file}: {k} holds {saved[k].dtype} values where the model's are {own[k].dtype} "
                         f"({len(bad)} such tensor(s); a damaged file?); nothing was loaded")


def transformer_folder(path: Path) -> Path:
    """The folder of the Transformer module: its ``path`` in ``modules.json`` (``path`` itself
    without one, or when the file cannot be read: the load has read it already)."""
    try:
        modules = json.loads((path / "modules.json").read_text(encoding="utf-8"))
        sub = next(m.get("path", "") for m in modules if str(m.get("type", "")).endswith("Transformer"))
    except (OSError, ValueError, TypeError, AttributeError, StopIteration):
        return path
    return path / sub if isinstance(sub, str) else path


def check_saved_weights(auto_model: torch.nn.Module, folder: Path) -> None:
    """Compare a loaded transformer with the keys and dtypes of ``folder/model.safetensors`` (when
    one file; sharded or ``.bin`` weights are not checked), for a backbone this package saved
    itself (its keys are the model's own). Allowed: saved buffers (``embeddings.position_ids``),
    tied weights, a missing ``pooler`` (sentence-transformers never uses it), legacy LayerNorm
    names (:func:`_legacy_renamed`).

    Raises:
        ValueError: weights missing (transformers fills them at random, logging only) or
            unexpected (dropped), or integer where the model's are float.
    """
    from safetensors import safe_open

    file = folder / "model.safetensors"
    if not file.is_file():
        return
    with safe_open(str(file), framework="pt") as fh:  # "F32", "I64" ...
        dtypes = {_legacy_renamed(k): str(fh.get_slice(k).get_dtype()) for k in fh.keys()}  # noqa: SIM118
    own = auto_model.state_dict()
    tied = set(getattr(auto_model, "all_tied_weights_keys", None) or ())
    missing = sorted(k for k in own.keys() - dtypes.keys() - tied if not k.startswith("pooler."))
    unexpected = sorted(dtypes.keys() - own.keys() - {name for name, _ in auto_model.named_buffers()})
    if missing or unexpected:
        raise ValueError(f"{file}: does not hold the weights of {folder / 'config.json'} (missing {missing[:3]}"
                         f"{' ...' if len(missing) > 3 else ''}, unexpected {unexpected[:3]}"
                         f"{' ...' if len(unexpected) > 3 else ''}): a damaged or hand-edited save")
    bad = sorted(k for k, v in dtypes.items() if k in own and own[k].is_floating_point() and not v.startswith(("F", "BF")))
    if bad:
        raise ValueError(f"{file}: {bad[0]} holds {dtypes[bad[0]]} values where the model's are "
                         f"{own[bad[0]].dtype} ({len(bad)} such tensor(s); a damaged file?)")


def _legacy_renamed(key: str) -> str:
    """``key`` as transformers reads it: ``LayerNorm.gamma`` / ``.beta`` are ``.weight`` / ``.bias``
    (transformers 5.0-5.5 write them so in their saves)."""
    return key.replace("LayerNorm.gamma", "LayerNorm.weight").replace("LayerNorm.beta", "LayerNorm.bias")
