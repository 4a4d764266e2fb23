"""Cache of a frozen transformer prefix: train or encode through the trainable layers only.

With ``freeze="first_n"`` the token embeddings and the first ``N`` transformer layers of the
backbone are frozen and kept in eval mode (no dropout), so their output for a given text never
changes. :class:`FrozenPrefixCache` stores that output (the hidden states after layer ``N``, one
``(T_i, H)`` tensor per text, padding stripped) and runs only the remaining layers, the pooling
and whatever follows on later calls. Each epoch after the first then costs the forward of
``L - N`` layers instead of ``L`` (for MiniLM-L6 with ``N = 4``, about a third).

Exactness: real tokens never attend to padding, so a text's states do not depend on the batch it
was computed in (up to float rounding, ~1e-6); the padded positions of the cached batch are
zeros, which the attention mask and the mean pooling ignore. States are computed in float32 even
inside an autocast context. In eval mode the outputs are those of the uncached model; in
training, the trainable layers run in length-sorted chunks, so their dropout draws other masks
than one padded batch would (same distribution, different random numbers). The layers are swapped in and out
of the Hugging Face model for the duration of a call, so the cache is not thread-safe.

Works with sentence-transformers models whose first module wraps a BERT-like ``auto_model``
(``embeddings`` + ``encoder.layer``), e.g. MiniLM, BERT, RoBERTa, MPNet-style encoders.
"""

from __future__ import annotations

import contextlib
from collections import OrderedDict
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from rag_relax_plugins.core.validation import check_count, check_k

__all__ = ["FrozenPrefixCache"]


class _CachedStates(nn.Module):
    """Stands in for the token-embedding module: returns precomputed hidden states."""

    def __init__(self, states: torch.Tensor) -> None:
        super().__init__()
        self.states = states

    def forward(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        return self.states


@contextlib.contextmanager
def _swapped(auto: Any, *, embeddings: nn.Module | None, layers: list[nn.Module]) -> Iterator[None]:
    """Temporarily replace ``auto.embeddings`` (when given) and ``auto.encoder.layer``."""
    old_emb, old_layers = auto.embeddings, auto.encoder.layer
    try:
        if embeddings is not None:
            auto.embeddings = embeddings
        auto.encoder.layer = nn.ModuleList(layers)
        yield
    finally:
        auto.embeddings = old_emb
        auto.encoder.layer = old_layers


class FrozenPrefixCache:
    """Hidden states after the first ``num_frozen`` layers of a sentence-transformers model, per text.

    Args:
        backbone: a ``SentenceTransformer`` whose first module has a BERT-like ``auto_model``.
        num_frozen: ``N >= 1``, the number of frozen layers (the embeddings are frozen too); the
            caller guarantees they are frozen and in eval mode.
        max_texts: most texts kept (least recently used evicted first), ``>= 1``. Memory per text
            is ``T_i * H * 4`` bytes (MiniLM, 150 tokens: ~230 kB).
        chunk: texts per pass through the trainable layers; a batch is sorted by length and cut
            into chunks of this size, so short texts are not padded to the longest one.

    Raises:
        ValueError: a backbone without ``embeddings`` / ``encoder.layer``, or ``num_frozen`` out
            of ``[1, L]``, or ``max_texts < 1``.
    """

    def __init__(self, backbone: Any, num_frozen: int, *, max_texts: int = 100_000, chunk: int = 16) -> None:
        auto = getattr(backbone[0], "auto_model", None)
        layers = getattr(getattr(auto, "encoder", None), "layer", None)
        if auto is None or getattr(auto, "embeddings", None) is None or layers is None:
            raise ValueError("the frozen-prefix cache needs a BERT-like backbone (auto_model.embeddings + encoder.layer)")
        num_frozen = check_count("num_frozen", num_frozen, 1, len(layers))
        check_k("max_texts", max_texts)
        check_k("chunk", chunk)
        self.backbone = backbone
        self.num_frozen = num_frozen
        self.max_texts = max_texts
        self.chunk = chunk
        self._auto = auto
        self._states: OrderedDict[str, torch.Tensor] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._states)

    def clear(self) -> None:
        """Drop every cached text."""
        self._states.clear()

    def _layers(self) -> list[nn.Module]:
        return list(self._auto.encoder.layer)

    @torch.no_grad()
    def _fill(self, texts: list[str], device: torch.device) -> None:
        """Run embeddings + the frozen layers on ``texts`` (not yet cached) and store their states.

        Always in float32, with any autocast context (a mixed-precision training step) turned
        off: the states are kept and reused by later calls, e.g. a float32 ``encode``.
        """
        feats = self._tokenize(texts, device)
        layers = self._layers()
        with torch.autocast(device.type, enabled=False), \
                _swapped(self._auto, embeddings=None, layers=layers[: self.num_frozen]):
            kwargs = {k: v for k, v in feats.items() if k in ("input_ids", "attention_mask", "token_type_ids")}
            hidden = self._auto(**kwargs, return_dict=True).last_hidden_state  # (B, T, H)
        lengths = feats["attention_mask"].sum(dim=1).tolist()
        for text, h, n in zip(texts, hidden, lengths, strict=True):
            self._states[text] = h[: int(n)].detach().clone()
            if len(self._states) > self.max_texts:
                self._states.popitem(last=False)

    def _tokenize(self, texts: list[str], device: torch.device) -> dict[str, Any]:
        tok = getattr(self.backbone, "preprocess", None) or self.backbone.tokenize
        feats = tok(texts)
        return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in feats.items()}

    def sentence_embeddings(self, texts: list[str], device: torch.device, *, chunk: int | None = None) -> torch.Tensor:
        """Sentence embeddings of ``texts`` through the cache, with gradients in the trainable part.

        Args:
            texts: ``B`` strings.
            device: the model's device.
            chunk: texts per pass through the trainable layers (default: the cache's ``chunk``).

        Returns:
            ``(B, H) x float``: what ``backbone(tokenize(texts))["sentence_embedding"]`` returns
            (to float rounding), computing only layers ``N+1..L``, pooling and later modules.

        Raises:
            ValueError: ``texts`` is empty.
        """
        if not texts:  # (0, H) would need the trainable layers' output width: refuse clearly instead
            raise ValueError("texts must hold at least one string")
        missing = list(dict.fromkeys(t for t in texts if t not in self._states))
        self.misses += len(missing)
        self.hits += len(texts) - len(missing)
        size = self.chunk if chunk is None else chunk
        for start in range(0, len(missing), max(size, 64)):
            self._fill(missing[start : start + max(size, 64)], device)
        cached = []
        for t in texts:
            state = self._states.get(t)
            if state is None:  # evicted by this very call (max_texts smaller than the batch)
                self._fill([t], device)
                state = self._states[t]
            self._states.move_to_end(t)
            cached.append(state)
        # texts of similar length share a sub-batch: less padding through the trainable layers
        order = sorted(range(len(texts)), key=lambda i: cached[i].shape[0])
        outs = [self._suffix([texts[i] for i in order[s : s + size]], [cached[i] for i in order[s : s + size]], device)
                for s in range(0, len(texts), size)]
        inverse = torch.empty(len(texts), dtype=torch.long, device=device)
        inverse[torch.tensor(order, device=device)] = torch.arange(len(texts), device=device)
        return torch.cat(outs)[inverse]  # back to the order of ``texts``

    def _suffix(self, texts: list[str], cached: list[torch.Tensor], device: torch.device) -> torch.Tensor:
        """Trainable layers, pooling and later modules over cached states: ``(b, H)``."""
        feats = self._tokenize(texts, device)
        t_max = feats["attention_mask"].shape[1]
        states = torch.zeros(len(texts), t_max, cached[0].shape[-1], dtype=cached[0].dtype, device=device)  # (b, T, H)
        for i, s in enumerate(cached):
            states[i, : s.shape[0]] = s
        with _swapped(self._auto, embeddings=_CachedStates(states), layers=self._layers()[self.num_frozen :]):
            out: torch.Tensor = self.backbone(feats)["sentence_embedding"]
        return out
