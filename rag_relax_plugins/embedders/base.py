"""The text-encoder interface every embedder, index and reranker codes against."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import torch

__all__ = ["TextEncoder", "TokenEmbeddings", "TokenEncoder", "encoder_settings"]

# encoder attributes that determine its vectors (the ones an encoder has)
_SETTING_NAMES = ("model_path", "max_seq_length", "dim", "seed", "ngram_range", "char_ngram_range", "normalize")
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf")


def encoder_settings(encoder: Any) -> dict[str, str]:
    """The encoder's class and the settings it has that shape its vectors, as strings.

    For cache keys of computed vectors (a model folder, truncation length, a hashing encoder's
    seed and n-grams). A local model folder also contributes ``"weights"``: a digest of its weight
    files' names, sizes and modification times, so weights replaced in the same folder give
    another key (a stat per file, no read).
    """
    out = {"class": f"{type(encoder).__module__}.{type(encoder).__qualname__}"}
    for name in _SETTING_NAMES:
        value = getattr(encoder, name, None)
        if value is not None:
            out[name] = str(value)
    folder = getattr(encoder, "model_path", None)
    if isinstance(folder, (str, Path)) and Path(folder).is_dir():
        h = hashlib.sha256()
        for f in sorted(p for p in Path(folder).rglob("*") if p.suffix in _WEIGHT_SUFFIXES and p.is_file()):
            st = f.stat()
            h.update(f"{f.relative_to(folder)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
        out["weights"] = h.hexdigest()
    return out


@dataclass(frozen=True)
class TokenEmbeddings:
    """Padded token embeddings of a batch of texts.

    Attributes:
        embeddings: ``(B, L, D) x float`` token vectors; padded positions hold zeros.
        mask: ``(B, L) x bool``, True at real tokens.
    """

    embeddings: torch.Tensor
    mask: torch.Tensor

    @property
    def lengths(self) -> torch.Tensor:
        """``(B,) x long`` number of real tokens per text."""
        return self.mask.sum(dim=1)


@runtime_checkable
class TextEncoder(Protocol):
    """Maps texts to one vector each.

    Implementations: :class:`~rag_relax_plugins.embedders.hashing.HashingEncoder` (deterministic
    test double) and :class:`~rag_relax_plugins.embedders.sentence_transformer.SentenceTransformerEncoder`.
    """

    @property
    def dim(self) -> int:
        """Output dimension ``D``."""
        ...

    def encode(
        self, texts: list[str], *, batch_size: int = 32, normalize: bool = False, show_progress: bool = False
    ) -> torch.Tensor:
        """Encode ``texts`` into a ``(N, D) x float32`` tensor (on the encoder's device)."""
        ...


@runtime_checkable
class TokenEncoder(Protocol):
    """Maps texts to per-token vectors (for late interaction / MaxSim)."""

    @property
    def dim(self) -> int:
        """Token vector dimension ``D``."""
        ...

    def encode_tokens(
        self, texts: list[str], *, batch_size: int = 32, normalize: bool = False, show_progress: bool = False
    ) -> TokenEmbeddings:
        """Encode ``texts`` into padded token embeddings with a mask."""
        ...
