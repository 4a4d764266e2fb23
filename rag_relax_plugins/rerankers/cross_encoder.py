"""Trainable (query, document) scorers built from a local BERT-style backbone (default: offline MiniLM).

Two scorers share one interface (:class:`PairScorer`): ``forward(query, documents) -> (N,)`` logits
with gradients, used by :class:`~rag_relax_plugins.rerankers.gumbel.GumbelReranker`.

- :class:`CrossEncoderScorer`: ``[CLS] query [SEP] document [SEP]`` through the backbone, masked
  mean pooling of the last hidden states, one-logit linear head. No pretrained cross-encoder
  weights exist offline, so the head starts random (seeded, small): the untrained scorer is only
  as good as the backbone's features under a random projection, which the benchmarks report as
  row (c).
- :class:`BiEncoderScorer`: query and documents encoded separately (mean pooling, L2 norm, as
  all-MiniLM-L6-v2 does), score ``scale * cos(q, d)`` with a learnable ``scale``; untrained it is the
  MiniLM cosine ranking.

Persistence (:meth:`PairScorer.save_into`, inside the reranker's folder): ``scorer.json`` (scorer
kind and hyper-parameters), ``backbone/`` (the backbone's transformers config), ``tokenizer/`` and
``model.safetensors`` (backbone + head weights). No pickle.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from rag_relax_plugins._errors import require
from rag_relax_plugins._io import read_json, read_tensors
from rag_relax_plugins.core.scalars import check_count
from rag_relax_plugins.embedders._saved_model_checks import check_float_weights, check_tokenizer
from rag_relax_plugins.embedders.sentence_transformer import usable_positions

log = logging.getLogger(__name__)

__all__ = ["BiEncoderScorer", "CrossEncoderScorer", "PairScorer", "load_scorer"]

FORMAT_VERSION = 1


def _backbone_folder(backbone: str | os.PathLike[str] | None) -> Path:
    if backbone is None:
        from rag_relax_plugins.embedders.sentence_transformer import default_model_path

        return default_model_path()
    path = Path(backbone)
    if not path.is_dir():
        raise FileNotFoundError(
            f"backbone {str(backbone)!r} is not a local model folder (models are never downloaded)"
        )
    return path


def _masked_mean(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``(B, L, D)`` hidden states, ``(B, L)`` 0/1 mask -> ``(B, D)`` masked mean."""
    m = mask.unsqueeze(-1).to(hidden.dtype)  # (B, L, 1)
    return (hidden * m).sum(dim=1) / m.sum(dim=1).clamp_min(1.0)


class PairScorer(nn.Module):
    """Base class: a backbone + tokenizer scoring documents against a query.

    Args:
        backbone: local folder of a BERT-style model (``None``: the offline MiniLM).
        max_length: word pieces kept per encoded sequence (longer inputs are truncated by the
            tokenizer, documented behaviour of the scorer).
        trainable_layers: number of top transformer layers left trainable, at most the backbone's
            layer count (``-1``: all, including embeddings); lower layers are frozen, which makes
            the backward pass cheaper.
        seed: seed of the head initialisation.
    """

    kind = "base"

    def __init__(
        self,
        backbone: str | os.PathLike[str] | None = None,
        *,
        max_length: int = 256,
        trainable_layers: int = -1,
        seed: int = 0,
        _config: Any = None,
        _tokenizer: Any = None,
    ) -> None:
        super().__init__()
        max_length = check_count("max_length", max_length, 8)
        trainable_layers = check_count("trainable_layers", trainable_layers, -1)
        transformers = require("transformers", "st")
        if _config is None:
            folder = _backbone_folder(backbone)
            self.tokenizer = transformers.AutoTokenizer.from_pretrained(str(folder))
            self.backbone = transformers.AutoModel.from_pretrained(str(folder)).float()
            check_tokenizer(self.tokenizer, getattr(self.backbone.config, "vocab_size", None), folder)
        else:  # rebuilt by load_scorer: weights come from model.safetensors
            self.tokenizer = _tokenizer
            self.backbone = transformers.AutoModel.from_config(_config).float()
        positions = usable_positions(self.backbone.config)
        if positions is not None and max_length > positions:  # a longer input failed mid-training
            raise ValueError(f"max_length {max_length} exceeds the backbone's {positions} usable positions "
                             f"(max_position_embeddings); use at most {positions}")
        self.max_length = max_length
        self.trainable_layers = trainable_layers
        self.seed = seed
        hidden = int(self.backbone.config.hidden_size)
        gen = torch.Generator().manual_seed(seed)
        self._build_head(hidden, gen)
        self._freeze(trainable_layers, saved=_config is not None)

    def _build_head(self, hidden: int, gen: torch.Generator) -> None:
        raise NotImplementedError

    def _freeze(self, trainable_layers: int, *, saved: bool) -> None:
        """Leave the top ``trainable_layers`` transformer layers trainable (``-1``: everything).

        Raises:
            ValueError: more layers than the backbone has (a new scorer: ``layers[n - t:]``
                counted from the end, so 7 of 6 trained one layer), or a count on a backbone
                without BERT-style ``encoder.layer``.
        """
        if trainable_layers < 0:
            return
        block = getattr(getattr(self.backbone, "encoder", None), "layer", None) if trainable_layers else ()
        if block is None:
            raise ValueError(f"trainable_layers={trainable_layers} needs a BERT-style backbone (encoder.layer); "
                             f"{type(self.backbone).__name__} has none: use -1 (all) or 0 (head only)")
        layers = list(block)
        n = len(layers)
        if trainable_layers > n:
            if not saved:
                raise ValueError(f"trainable_layers must be <= {n} (the backbone's layers) or -1 "
                                 f"(all, embeddings included), got {trainable_layers}")
            trained = min(n, trainable_layers - n)  # what layers[n - t:] left trainable when it was saved
            log.warning("the saved trainable_layers %d exceeds the backbone's %d layers: the top %d stay "
                        "trainable, as the version that saved it (before 2026-12-05) trained them",
                        trainable_layers, n, trained)
            trainable_layers = trained
        for p in self.backbone.parameters():
            p.requires_grad_(False)
        for layer in layers[n - trainable_layers :] if trainable_layers else []:
            for p in layer.parameters():
                p.requires_grad_(True)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def _encode(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Tokenised batch -> ``(B, D)`` masked-mean pooled last hidden states."""
        out = self.backbone(**batch)
        return _masked_mean(out.last_hidden_state, batch["attention_mask"])

    def _tok(self, *texts: list[str]) -> dict[str, torch.Tensor]:
        enc = self.tokenizer(
            *texts, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
        )
        return {k: v.to(self.device) for k, v in enc.items()}

    def forward(
        self, query: str, documents: list[str]
    ) -> torch.Tensor:  # pragma: no cover - abstract
        """Score ``documents`` against ``query``: ``(N,) x float`` logits (with gradients)."""
        raise NotImplementedError

    def config_dict(self) -> dict[str, Any]:
        """JSON-ready hyper-parameters (the backbone config is saved separately)."""
        return {
            "format_version": FORMAT_VERSION,
            "kind": self.kind,
            "max_length": self.max_length,
            "trainable_layers": self.trainable_layers,
            "seed": self.seed,
        }

    def save_into(self, folder: Path) -> None:
        """Write config, backbone config, tokenizer and weights into an existing ``folder``."""
        from safetensors.torch import save_file

        (folder / "scorer.json").write_text(
            json.dumps(self.config_dict(), indent=2) + "\n", encoding="utf-8"
        )
        self.backbone.config.save_pretrained(str(folder / "backbone"))
        self.tokenizer.save_pretrained(str(folder / "tokenizer"))
        state = {k: v.detach().to("cpu").contiguous() for k, v in self.state_dict().items()}
        save_file(state, str(folder / "model.safetensors"))


class CrossEncoderScorer(PairScorer):
    """Cross-encoder: joint encoding of ``(query, document)`` and a one-logit head.

    ``forward(query, documents)``: ``N`` pairs in one padded batch -> ``(N,) x float`` logits.
    """

    kind = "cross"

    def _build_head(self, hidden: int, gen: torch.Generator) -> None:
        self.head = nn.Linear(hidden, 1)
        with torch.no_grad():
            self.head.weight.copy_(torch.randn(1, hidden, generator=gen) * 0.02)
            self.head.bias.zero_()

    def forward(self, query: str, documents: list[str]) -> torch.Tensor:
        """Args: ``query``, ``documents`` (N >= 1). Returns ``(N,) x float`` logits."""
        batch = self._tok([query] * len(documents), list(documents))
        pooled = self._encode(batch)  # (N, D)
        return self.head(pooled).squeeze(-1)


class BiEncoderScorer(PairScorer):
    """Bi-encoder: ``scale * cos(e(query), e(document))``, mean pooling, learnable scale (init 20)."""

    kind = "bi"

    def _build_head(self, hidden: int, gen: torch.Generator) -> None:
        self.log_scale = nn.Parameter(torch.tensor(float(torch.log(torch.tensor(20.0)))))

    def forward(self, query: str, documents: list[str]) -> torch.Tensor:
        """Args: ``query``, ``documents`` (N >= 1). Returns ``(N,) x float`` scaled cosines."""
        q = torch.nn.functional.normalize(self._encode(self._tok([query])), dim=-1)  # (1, D)
        d = torch.nn.functional.normalize(
            self._encode(self._tok(list(documents))), dim=-1
        )  # (N, D)
        return self.log_scale.exp() * (d @ q.squeeze(0))


_KINDS: dict[str, type[PairScorer]] = {"cross": CrossEncoderScorer, "bi": BiEncoderScorer}


def build_scorer(
    kind: str, backbone: str | os.PathLike[str] | None = None, **kwargs: Any
) -> PairScorer:
    """A new scorer of ``kind`` (``"cross"`` or ``"bi"``)."""
    if kind not in _KINDS:
        raise ValueError(f"scorer must be one of {sorted(_KINDS)} or a PairScorer, got {kind!r}")
    return _KINDS[kind](backbone, **kwargs)


def load_scorer(folder: str | os.PathLike[str]) -> PairScorer:
    """Rebuild a scorer saved by :meth:`PairScorer.save_into`.

    Raises:
        FileNotFoundError: missing files.
        ValueError: unknown kind or format version; a corrupt ``scorer.json`` or
            ``model.safetensors`` (the message names the file): tensors missing, unexpected,
            mis-shaped or integer where the scorer's are float (half-precision ones are cast); a
            ``tokenizer/`` without its vocabulary (``tokenizer.json`` missing: every word would be
            ``[UNK]``) or larger than ``backbone/config.json``'s ``vocab_size``.
    """
    transformers = require("transformers", "st")
    root = Path(folder)
    cfg_file = root / "scorer.json"
    if not cfg_file.is_file():
        raise FileNotFoundError(f"no scorer.json in {root}")
    cfg = read_json(cfg_file)
    if cfg.get("format_version") != FORMAT_VERSION:
        raise ValueError(
            f"unsupported scorer format_version {cfg.get('format_version')!r} in {cfg_file}"
        )
    kind = cfg.get("kind")
    if kind not in _KINDS:
        raise ValueError(f"unknown scorer kind {kind!r} in {cfg_file}")
    settings = {}
    for name in ("max_length", "trainable_layers", "seed"):  # int("64") and int(64.9) were taken
        value = cfg.get(name)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{cfg_file}: {name} must be an int, got {value!r} (corrupt file?)")
        settings[name] = value
    for part in ("backbone", "tokenizer"):  # transformers read a missing folder as a hub repo id
        if not (root / part).is_dir():
            raise FileNotFoundError(f"no {part}/ folder in {root} (a scorer saved by save_into has one)")
    try:
        bcfg = transformers.AutoConfig.from_pretrained(str(root / "backbone"))
        tok = transformers.AutoTokenizer.from_pretrained(str(root / "tokenizer"))
    except (OSError, ValueError) as exc:  # a damaged config.json / tokenizer.json
        raise ValueError(f"{root}: the saved backbone config or tokenizer cannot be read: {exc}") from exc
    check_tokenizer(tok, getattr(bcfg, "vocab_size", None), root / "tokenizer")
    positions = usable_positions(bcfg)
    if positions is not None and settings["max_length"] > positions:  # saved before max_length was checked
        log.warning("%s: max_length %d exceeds the backbone's %d usable positions; using %d (a longer input "
                    "could not be encoded anyway)", cfg_file, settings["max_length"], positions, positions)
        settings["max_length"] = positions
    try:
        scorer = _KINDS[kind](None, **settings, _config=bcfg, _tokenizer=tok)
    except ValueError as exc:  # a setting out of range (max_length 0 ...), or the backbone's config
        raise ValueError(f"{root}: scorer.json and backbone/config.json do not build a scorer: {exc}") from exc
    weights = root / "model.safetensors"
    state = read_tensors(weights)
    check_float_weights(scorer.state_dict(), state, weights)
    try:
        scorer.load_state_dict(state)
    except RuntimeError as exc:  # missing, unexpected or mis-shaped tensors
        raise ValueError(f"{weights} does not match scorer.json ({kind}): {exc}") from exc
    return scorer
