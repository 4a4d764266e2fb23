"""Isotropic Gaussian embedder: a sentence-transformers backbone plus a projection head.

RAGCUN proposed training a retrieval embedder whose (un-normalised) outputs follow an isotropic
Gaussian; here the isotropy term is SIGReg from LeJEPA (Balestriero & LeCun, 2025; see
:mod:`rag_relax_plugins.core.isotropy`), with RAGCUN's covariance penalty as a baseline. The head
is ``Linear -> GELU -> Dropout -> Linear``. The retrieval geometry (Euclidean distance or inner
product) is part of the config and used by :meth:`GaussianEmbedder.score`, the retriever
(:mod:`rag_relax_plugins.embedders.gaussian_retriever`) and the LangChain / LlamaIndex adapters.

Saved as a folder: ``config.json`` + ``head.safetensors``, plus a ``backbone/``
sentence-transformers folder (its weights in safetensors). The only saves without ``backbone/``
are those whose backbone is the untouched offline MiniLM package (``backbone: null``, whole
backbone frozen) or the hashing double (``"hashing:..."``): a saved model never depends on
another folder or on the working directory, so saving over the folder it was loaded from is
safe. ``config.json`` also records the untrained source of the backbone (``base_backbone``) and
whether the backbone may have been trained (``backbone_fine_tuned``), which ``rag-relax evaluate
--baseline`` uses.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any, ClassVar

import torch
from safetensors.torch import save_file
from torch import nn

from rag_relax_plugins._io import atomic_folder, find_saved_folder, read_json, read_tensors
from rag_relax_plugins._whole_save import reads_whole_save
from rag_relax_plugins.core.config_dict import require_saved_keys
from rag_relax_plugins.core.device import resolve_device
from rag_relax_plugins.core.modes import eval_mode, module_lock
from rag_relax_plugins.embedders._gaussian_backbone import (
    EncoderBackbone,
    default_backbone_path,
    embedding_dim,
    load_sentence_transformer,
    transformer_parts,
)
from rag_relax_plugins.embedders._prefix_cache import FrozenPrefixCache
from rag_relax_plugins.embedders._saved_model_checks import (
    check_float_weights,
    check_saved_weights,
    transformer_folder,
)
from rag_relax_plugins.embedders._texts import check_batch_size, check_texts
from rag_relax_plugins.embedders.gaussian_config import GaussianConfig
from rag_relax_plugins.embedders.gaussian_geometry import (
    geometry_scores,
    relevance_from_scores,
)
from rag_relax_plugins.embedders.gaussian_head import ProjectionHead
from rag_relax_plugins.embedders.sentence_transformer import set_max_seq_length

__all__ = [
    "EncoderBackbone",
    "GaussianConfig",
    "GaussianEmbedder",
    "ProjectionHead",
    "default_backbone_path",
    "geometry_scores",
    "relevance_from_scores",
]


def _is_local_folder(backbone: str | None) -> bool:
    """``backbone`` names a local folder (not ``None`` = the MiniLM package, nor a hashing spec)."""
    return backbone is not None and not backbone.startswith("hashing:")


def _absolute(backbone: str | None) -> str | None:
    """An existing local backbone folder as an absolute path (so it does not depend on the cwd)."""
    if _is_local_folder(backbone) and Path(str(backbone)).expanduser().is_dir():
        return str(Path(str(backbone)).expanduser().resolve())
    return backbone


class GaussianEmbedder(nn.Module):
    """Backbone + projection head; implements the ``TextEncoder`` protocol.

    In training mode the frozen parts of the backbone stay in eval mode (no dropout), so a
    frozen backbone gives the same features in training and at inference.

    Args:
        config: the model configuration (see :class:`GaussianConfig`).
        device: ``None`` picks CUDA, then MPS, then CPU.
        backbone: an already loaded ``SentenceTransformer`` to use instead of loading
            ``config.backbone`` (the config still records where it comes from, as
            ``base_backbone``). Its weights may differ from that source, so :meth:`save` writes
            them (``backbone/``), as for a fine-tuned backbone.

    Example:
        >>> model = GaussianEmbedder(GaussianConfig(output_dim=128, freeze="all"), device="cpu")
        >>> vecs = model.encode(["a query", "a document"])  # (2, 128) x float32
        >>> scores = model.score(vecs[:1], vecs)  # (1, 2), minus Euclidean distances
    """

    SAVE_KIND: ClassVar[str] = "gaussian-embedder"  # the kind its saves record (atomic_folder)
    SAVE_LEGACY_FILES: ClassVar[tuple[str, ...]] = ("head.safetensors",)  # how saves older than the marker look

    def __init__(self, config: GaussianConfig | None = None, *, device: str | torch.device | None = None, backbone: Any = None) -> None:
        super().__init__()
        if config is not None and not isinstance(config, GaussianConfig):
            raise TypeError(f"config must be a GaussianConfig or None, got {type(config).__name__}")
        self.config = config or GaussianConfig()
        target = resolve_device(device)
        passed = backbone is not None
        if backbone is None and (self.config.backbone or "").startswith("hashing:"):
            backbone = EncoderBackbone.from_spec(str(self.config.backbone))
        if backbone is None:
            backbone = load_sentence_transformer(self.config.backbone)
        if _absolute(self.config.backbone) != self.config.backbone:  # relative folder: pin it now
            self.config = dataclasses.replace(self.config, backbone=_absolute(self.config.backbone))
        self.base_backbone: str | None = self.config.backbone
        """Untrained source of the backbone weights: ``None`` (MiniLM package), a spec or an absolute folder."""
        # a backbone passed in may have been changed elsewhere: saved, not taken for the package
        # (a save wrote no backbone/ and the reload used the untouched MiniLM, silently)
        self.backbone_fine_tuned = passed and not isinstance(backbone, EncoderBackbone)
        """Whether the backbone weights may differ from :attr:`base_backbone` (a backbone passed
        in may; :meth:`load` sets it from the save)."""
        if self.config.max_seq_length is not None:
            set_max_seq_length(backbone, self.config.max_seq_length, self.config.backbone or "MiniLM")
        self.backbone = backbone
        in_dim = embedding_dim(backbone)
        self.head = ProjectionHead(in_dim, self.config.hidden_dim or 2 * in_dim, self.config.output_dim, self.config.dropout, self.config.head_init)
        self._frozen_modules: list[nn.Module] = []
        self._prefix_cache: FrozenPrefixCache | None = None
        self.apply_freeze()
        self.to(target)

    # ------------------------------------------------------------------ structure
    @property
    def dim(self) -> int:
        """Output dimension ``D``."""
        return self.config.output_dim

    @property
    def device(self) -> torch.device:
        """Device of the parameters."""
        return next(self.head.parameters()).device

    @property
    def geometry(self) -> str:
        """``"euclidean"`` or ``"inner_product"``."""
        return self.config.geometry

    def apply_freeze(self) -> None:
        """Set ``requires_grad`` of the backbone according to ``config.freeze`` (drops a prefix cache)."""
        self._prefix_cache = None
        is_encoder = isinstance(self.backbone, EncoderBackbone)
        for p in self.backbone.parameters():
            p.requires_grad_(self.config.freeze != "all")
        self._frozen_modules = [self.backbone] if self.config.freeze == "all" or is_encoder else []
        if self.config.freeze == "first_n" and self.config.freeze_layers > 0:
            emb, layers = transformer_parts(self.backbone)
            if not layers:
                raise ValueError("freeze='first_n' needs a backbone with transformer layers (BERT-like)")
            if self.config.freeze_layers > len(layers):
                raise ValueError(f"freeze_layers must be <= {len(layers)} for this backbone, got {self.config.freeze_layers}")
            self._frozen_modules = ([emb] if emb is not None else []) + layers[: self.config.freeze_layers]
            for module in self._frozen_modules:
                for p in module.parameters():
                    p.requires_grad_(False)
        self.train(self.training)

    def train(self, mode: bool = True) -> GaussianEmbedder:
        """Like :meth:`nn.Module.train`, but frozen backbone parts always stay in eval mode."""
        super().train(mode)
        for module in getattr(self, "_frozen_modules", []):
            module.eval()
        return self

    def enable_prefix_cache(self, max_texts: int = 100_000) -> FrozenPrefixCache:
        """Cache the frozen layers' output per text (``freeze="first_n"`` only).

        Later :meth:`forward` / :meth:`encode` calls on a cached text run only the trainable
        layers: training for several epochs over the same texts, or re-encoding a corpus after
        each epoch, gets cheaper by about ``N / L`` (see :mod:`._prefix_cache`). Calling it again
        with the same ``max_texts`` keeps the cached states; another ``max_texts`` starts an empty
        cache. Call :meth:`disable_prefix_cache` before changing the frozen
        weights (:meth:`apply_freeze` drops the cache itself).

        Raises:
            ValueError: the model does not freeze its first ``N >= 1`` layers, or the backbone
                is not BERT-like.
        """
        if self.config.freeze != "first_n" or self.config.freeze_layers < 1 or isinstance(self.backbone, EncoderBackbone):
            raise ValueError("the prefix cache needs freeze='first_n' with freeze_layers >= 1 on a transformer backbone")
        if self._prefix_cache is None or self._prefix_cache.max_texts != max_texts:
            self._prefix_cache = FrozenPrefixCache(self.backbone, self.config.freeze_layers, max_texts=max_texts)
        return self._prefix_cache  # an enabled cache is kept, with its states

    @property
    def prefix_cache(self) -> FrozenPrefixCache | None:
        """The enabled frozen-prefix cache, or ``None``."""
        return self._prefix_cache

    def disable_prefix_cache(self) -> None:
        """Drop the prefix cache (a no-op when none is enabled)."""
        self._prefix_cache = None

    # ------------------------------------------------------------------ forward / encode
    def backbone_features(self, texts: list[str]) -> torch.Tensor:
        """Backbone sentence embeddings, with gradients where not frozen: ``(B, H) x float``
        (``(0, H)`` for an empty list, on every backbone)."""
        texts = check_texts(texts)
        if not texts:  # a transformer backbone raises inside transformers on an empty batch
            return torch.zeros(0, self.head.in_dim, device=self.device)
        if isinstance(self.backbone, EncoderBackbone):
            return self.backbone.encode(texts).to(self.device)
        if self._prefix_cache is not None:
            return self._prefix_cache.sentence_embeddings(texts, self.device)
        tok = getattr(self.backbone, "preprocess", None) or self.backbone.tokenize
        feats = tok(texts)
        feats = {k: v.to(self.device) if isinstance(v, torch.Tensor) else v for k, v in feats.items()}
        return self.backbone(feats)["sentence_embedding"]

    def forward(self, texts: list[str]) -> torch.Tensor:
        """Embed ``texts`` with gradients: ``(B, D) x float`` (``(0, D)`` for an empty list)."""
        return self.head(self.backbone_features(texts))

    def encode(self, texts: list[str], *, batch_size: int = 32, normalize: bool = False, show_progress: bool = False) -> torch.Tensor:
        """Embed ``texts`` deterministically: eval mode, ``torch.inference_mode``, batched.

        Args:
            texts: ``N`` strings (a list, not a bare str).
            batch_size: texts per backbone forward (>= 1); sentence-transformers sorts the texts
                by length into batches.
            normalize: L2-normalise the output (changes the geometry; off by default).
            show_progress: show a tqdm bar.

        Returns:
            ``(N, D) x float32`` on the model's device; ``(0, D)`` for an empty list. An ordinary
            tensor (not an inference tensor).
        """
        texts = check_texts(texts)
        bs = check_batch_size(batch_size)
        if not texts:
            return torch.zeros(0, self.dim, device=self.device)
        # under the module's lock: two threads switching the flags of one model left one encoding
        # with dropout and the caller's training mode lost (as the rerankers, core.modes)
        # the prefix cache keeps tensors for later training steps: no inference tensors there
        with module_lock(self), eval_mode(self), (
            torch.no_grad() if self._prefix_cache is not None else torch.inference_mode()
        ):
            if isinstance(self.backbone, EncoderBackbone):
                feats = self.backbone.encode(texts)
            elif self._prefix_cache is not None:  # sorts by length and runs chunks of batch_size itself
                feats = self._prefix_cache.sentence_embeddings(texts, self.device, chunk=bs)
            else:
                # prompt "": no default prompt of the backbone's config, which forward and
                # the prefix cache (tokenize) never add: encode served another function
                feats = self.backbone.encode(
                    texts, batch_size=bs, convert_to_tensor=True,
                    show_progress_bar=show_progress, device=str(self.device), prompt="",
                )
            out = self.head(feats.to(self.device)).float()
            if normalize:
                out = torch.nn.functional.normalize(out, dim=-1)
        return out.clone()  # outside inference mode: a normal tensor

    def score(self, queries: torch.Tensor, docs: torch.Tensor) -> torch.Tensor:
        """``(B, D), (N, D) -> (B, N)`` scores under the configured geometry (higher is better)."""
        return geometry_scores(queries, docs, self.geometry)

    def relevance(self, scores: torch.Tensor) -> torch.Tensor:
        """Scores of :meth:`score` mapped to ``[0, 1]`` (see :func:`relevance_from_scores`)."""
        return relevance_from_scores(scores, self.geometry, self.dim)

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write ``config.json``, ``head.safetensors`` (and ``backbone/``) atomically to ``path``.

        The folder is written next to ``path`` under a temporary name and renamed into place,
        so an interrupted save never leaves a half-written model. ``backbone/`` is written from
        the weights in memory unless the backbone is the untouched, frozen MiniLM package or the
        hashing double, so the save is self-contained and may replace the folder the model was
        loaded from.
        """
        is_encoder = isinstance(self.backbone, EncoderBackbone)
        fine_tuned = not is_encoder and (self.backbone_fine_tuned or self.config.freeze != "all")

        def write(tmp: Path) -> None:
            cfg = self.config.to_dict()
            if isinstance(self.backbone, EncoderBackbone):
                cfg["backbone"] = self.backbone.spec
            elif fine_tuned or self.config.backbone is not None:
                # weights written from memory: valid even when saving over the folder they came from
                self.backbone.save(str(tmp / "backbone"), safe_serialization=True)
                cfg["backbone"] = None
                cfg["backbone_subfolder"] = "backbone"
            # else: the untouched, frozen MiniLM package: the reference None is enough
            cfg["base_backbone"] = self.base_backbone
            cfg["backbone_fine_tuned"] = fine_tuned
            head = {k: v.detach().cpu().contiguous() for k, v in self.head.state_dict().items()}
            save_file(head, str(tmp / "head.safetensors"))
            (tmp / "config.json").write_text(json.dumps(cfg, indent=2), encoding="utf-8")

        return atomic_folder(path, write, replace_if_contains=self.SAVE_LEGACY_FILES, kind=self.SAVE_KIND)

    @classmethod
    @reads_whole_save("path")  # a save replacing the folder mid-read (best_model/ during training) is read again
    def load(cls, path: str | os.PathLike[str], *, device: str | torch.device | None = None, **overrides: Any) -> GaussianEmbedder:
        """Load a folder written by :meth:`save` onto ``device`` (CPU, CUDA or MPS), in eval mode.

        Args:
            path: the saved folder.
            device: target device; ``None`` picks the best available.
            overrides: config fields to change (e.g. ``freeze="first_n", freeze_layers=4`` to
                fine-tune a saved model with another freezing); ``output_dim``, ``hidden_dim``
                and ``backbone`` cannot be overridden (the weights fix them).

        The ``.<name>.old-*`` backup that a crash during a replacing :meth:`save` left is loaded
        when ``path`` is missing (:func:`~rag_relax_plugins._io.find_saved_folder`).

        Raises:
            FileNotFoundError: no ``config.json`` / ``head.safetensors`` in ``path``, or its
                saved ``backbone/`` folder is missing.
            ValueError: a save of another kind (a checkpoint, a MaxSim reranker ...: named), a
                corrupt or foreign ``config.json`` or ``head.safetensors`` (the message names the
                file; integer head weights included, while half-precision ones are cast), unknown
                format version or config keys, or a forbidden or invalid override (named as an
                override); a damaged saved ``backbone/``: no ``modules.json`` (sentence-transformers
                would build another pipeline, without its Normalize), a module folder missing,
                weights missing from or foreign to its ``model.safetensors``, or a tokenizer
                without its vocabulary (see
                :func:`~rag_relax_plugins.embedders.sentence_transformer.load_local_model`).
        """
        try:
            folder = find_saved_folder(path, "head.safetensors", kind=cls.SAVE_KIND)
        except FileNotFoundError:
            folder = Path(path)  # named below
        cfg_file, head_file = folder / "config.json", folder / "head.safetensors"
        if not cfg_file.is_file() or not head_file.is_file():
            raise FileNotFoundError(f"no Gaussian embedder at {folder} (needs config.json and head.safetensors)")
        data = read_json(cfg_file)
        fixed = {"output_dim", "hidden_dim", "backbone", "head_init"} & set(overrides)
        if fixed:
            raise ValueError(f"cannot override {sorted(fixed)} when loading a saved model")
        sub = data.pop("backbone_subfolder", None)
        if sub is not None:
            if not isinstance(sub, str) or sub in ("", ".", "..") or Path(sub).name != sub:
                # saves write "backbone": a path elsewhere would load weights from outside the save
                raise ValueError(f"{cfg_file}: 'backbone_subfolder' must name a folder inside the save, got {sub!r}")
            if not (folder / sub).is_dir():  # not the "install the offline MiniLM" advice
                raise FileNotFoundError(f"{folder}: its saved backbone folder {sub!r} is missing")
            if not (folder / sub / "modules.json").is_file():  # else a new mean pooling without Normalize
                raise ValueError(f"{folder / sub}: no modules.json (every save writes it): a damaged backbone "
                                 "folder, which would load as another model")
            data["backbone"] = str((folder / sub).resolve())
        # provenance; saves older than these keys: a written backbone was trainable (its base
        # unknown, taken as the MiniLM package), a referenced one is its own base
        base = data.pop("base_backbone", None if sub is not None else data.get("backbone"))
        fine_tuned = data.pop("backbone_fine_tuned", sub is not None)
        if base is not None and not isinstance(base, str):
            raise ValueError(f"{cfg_file}: 'base_backbone' must be a string or null, got {base!r}")
        if not isinstance(fine_tuned, bool):  # bool("false") is True
            raise ValueError(f"{cfg_file}: 'backbone_fine_tuned' must be true or false, got {fine_tuned!r}")
        try:
            config = GaussianConfig.from_dict(data)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{cfg_file}: not a Gaussian embedder config ({exc})") from exc
        require_saved_keys(data, ("geometry", "max_seq_length"), cfg_file)
        if overrides:  # checked apart, so a bad keyword is not blamed on the file
            try:
                config = GaussianConfig.from_dict({**data, **overrides})
            except (TypeError, ValueError) as exc:
                raise ValueError(f"invalid override {sorted(overrides)} of the saved config: {exc}") from exc
        head = read_tensors(head_file)
        model = cls(config, device="cpu")
        auto_model = getattr(model.backbone[0], "auto_model", None) if sub is not None else None
        if isinstance(auto_model, nn.Module):  # our own save: its weights are exactly the model's
            check_saved_weights(auto_model, transformer_folder(folder / sub))  # type: ignore[operator]
        check_float_weights(model.head.state_dict(), head, head_file)
        model.base_backbone = base
        model.backbone_fine_tuned = fine_tuned
        try:
            model.head.load_state_dict(head)
        except RuntimeError as exc:  # missing keys or other shapes
            raise ValueError(f"{head_file}: does not fit the head of {cfg_file} ({exc})") from exc
        model.to(resolve_device(device))
        return model.eval()  # for inference, like a from_pretrained; the trainer calls train()
