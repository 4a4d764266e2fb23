"""Backbone features of every text the Gaussian benchmark needs, encoded once and cached.

Frozen-backbone runs only train the projection head, whose input (the backbone's sentence
embedding, in eval mode) does not change during training: encoding every unique text once and
training the head on those cached rows is exactly equivalent to training end to end with a
frozen backbone, and turns hours of CPU into seconds. The cache lives in ``.cache/`` of the
repository (git-ignored): one ``feats.safetensors`` + ``texts.json`` per model folder; texts
missing from it are encoded and appended.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch

CACHE_DIR = Path(__file__).resolve().parent.parent / ".cache" / "gaussian_bench"


class FeatureTable:
    """Rows of backbone features looked up by text."""

    def __init__(self, texts: list[str], matrix: torch.Tensor) -> None:
        self.index = {t: i for i, t in enumerate(texts)}
        self.matrix = matrix

    def __call__(self, texts: Iterable[str]) -> torch.Tensor:
        """``(len(texts), H) x float32`` rows for ``texts`` (each must have been encoded)."""
        return self.matrix[[self.index[t] for t in texts]]


def _folder(model_path: str) -> Path:
    return CACHE_DIR / hashlib.sha256(model_path.encode("utf-8")).hexdigest()[:12]


def load_cache(model_path: str) -> tuple[list[str], torch.Tensor]:
    """Cached ``(texts, (N, H) matrix)`` for ``model_path`` (empty when there is none)."""
    from safetensors.torch import load_file

    folder = _folder(model_path)
    if not (folder / "texts.json").is_file():
        return [], torch.zeros(0, 0)
    texts = json.loads((folder / "texts.json").read_text(encoding="utf-8"))
    return texts, load_file(str(folder / "feats.safetensors"))["x"]


def save_cache(model_path: str, texts: list[str], matrix: torch.Tensor) -> None:
    """Write the cache atomically (features first, then the text list that validates them)."""
    from safetensors.torch import save_file

    folder = _folder(model_path)
    folder.mkdir(parents=True, exist_ok=True)
    save_file({"x": matrix.float().contiguous()}, str(folder / "feats.safetensors.tmp"))
    (folder / "texts.json.tmp").write_text(json.dumps(texts), encoding="utf-8")
    os.replace(folder / "feats.safetensors.tmp", folder / "feats.safetensors")
    os.replace(folder / "texts.json.tmp", folder / "texts.json")


def encode_cached(st: Any, model_path: str, texts: Iterable[str], *, batch_size: int = 64) -> FeatureTable:
    """Features of ``texts`` from the SentenceTransformer ``st``; only uncached texts are encoded."""
    cached, matrix = load_cache(model_path)
    if len(cached) != matrix.shape[0]:
        cached, matrix = [], torch.zeros(0, 0)
    known = set(cached)
    missing = sorted({t for t in texts if t not in known}, key=len)  # by length: less padding
    if missing:
        with torch.inference_mode():
            new = st.encode(missing, batch_size=batch_size, convert_to_tensor=True).float().cpu()
        matrix = new.clone() if not cached else torch.cat([matrix, new])
        cached = cached + missing
        save_cache(model_path, cached, matrix)
    return FeatureTable(cached, matrix)
