"""Late-interaction (ColBERT-style MaxSim) reranker over a local token encoder.

Khattab & Zaharia, "ColBERT: Efficient and Effective Passage Search via Contextualized Late
Interaction over BERT" (SIGIR 2020). Every query and document token gets a vector; the score of a
document is, for each query token, the best cosine to any document token, combined over the query.

Pipeline (all batched, under ``torch.inference_mode()`` at inference):

1. Marker prefixes: queries are encoded as ``"[Q] " + query`` and documents as
   ``"[D] " + document`` (configurable). ColBERT inserts dedicated marker tokens (BERT's unused
   ids) after ``[CLS]``; we use plain text prefixes instead, so any local sentence-transformers
   model (and the hashing test double) works without touching its vocabulary.
2. Token vectors: the backbone's last hidden states with ``[CLS]``/``[SEP]`` kept
   (:meth:`SentenceTransformerEncoder.encode_tokens
   <rag_relax_plugins.embedders.sentence_transformer.SentenceTransformerEncoder.encode_tokens>`),
   truncated to ``max_seq_length`` word pieces.
3. Projection: an optional bias-free ``Linear(token_dim, projection_dim)`` (ColBERT uses 768 -> 128;
   here 384 -> 128 by default), initialised with orthonormal rows so that an untrained projection
   approximately preserves cosines, then L2 normalisation. ``projection_dim=None`` keeps the raw
   backbone vectors (normalised).
4. Scoring: :func:`~rag_relax_plugins.core.maxsim.maxsim_packed` over the documents' tokens packed
   back to back (no padding), one GEMM for all candidates.

Departures from the paper: text markers rather than reserved tokens; no query augmentation with
``[MASK]`` padding; punctuation tokens are not filtered; the score is the *mean* over query tokens
of the best cosine instead of the sum (the same ranking for one query, and a value in ``[-1, 1]``
that is comparable across queries; :meth:`MaxSimReranker.relevance` maps it to ``[0, 1]``).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import ClassVar

import torch
from safetensors.torch import save_file
from torch import nn

from rag_relax_plugins._io import atomic_folder, find_saved_folder, read_json, read_tensors
from rag_relax_plugins._whole_save import reads_whole_save
from rag_relax_plugins.core.maxsim import maxsim_packed
from rag_relax_plugins.core.modes import eval_mode, module_lock
from rag_relax_plugins.core.scalars import check_int
from rag_relax_plugins.embedders._saved_model_checks import check_float_weights
from rag_relax_plugins.embedders.base import TokenEmbeddings, TokenEncoder
from rag_relax_plugins.rerankers.base import (
    BaseReranker,
    check_candidates,
    distinct_texts,
)
from rag_relax_plugins.rerankers.maxsim_config import MaxSimConfig
from rag_relax_plugins.rerankers.maxsim_tokens import MaxSimHead, PackedTokens, pack_tokens

logger = logging.getLogger(__name__)

__all__ = ["FORMAT_VERSION", "MaxSimConfig", "MaxSimHead", "MaxSimReranker", "PackedTokens", "pack_tokens"]

FORMAT_VERSION = 1
_WEIGHTS = "model.safetensors"
_CONFIG = "config.json"


def _other_encoder_model(encoder: object, config: MaxSimConfig, *, moved_only: bool = False) -> str | None:
    """The encoder's model folder (``model_path``) when it is not ``config.backbone``'s, else
    ``None`` (also for an encoder without one, such as the hashing double). ``moved_only``: only
    when ``config.backbone`` names no folder any more (a backbone moved since a save)."""
    path = getattr(encoder, "model_path", None)
    if not isinstance(path, (str, os.PathLike)):
        return None
    from rag_relax_plugins.embedders.sentence_transformer import resolve_model_path

    try:
        same = resolve_model_path(config.backbone).resolve() == Path(path).resolve()
    except (FileNotFoundError, ValueError):  # config.backbone names no model folder
        return str(Path(path).resolve())
    return None if same or moved_only else str(path)


def _check_encoder_model(encoder: object, config: MaxSimConfig) -> None:
    """An encoder that names its model folder (``model_path``) must load ``config.backbone``,
    what :meth:`MaxSimReranker.save` records: a reranker built on another model saved
    ``backbone: null`` and reloaded on the offline MiniLM, scoring otherwise, silently.

    Raises:
        ValueError: the encoder's model is not ``config.backbone``'s.
    """
    path = _other_encoder_model(encoder, config)
    if path is not None:
        raise ValueError(
            f"the encoder's model {str(path)!r} is not config.backbone "
            f"({config.backbone!r}{', the offline MiniLM' if config.backbone is None else ''}; what save() "
            f"records, so a reload would score with another model): build the config with backbone={str(path)!r}"
        )


class MaxSimReranker(BaseReranker):
    """ColBERT-style late-interaction reranker (see the module docstring for the pipeline).

    Args:
        config: a :class:`MaxSimConfig` (default: offline MiniLM, 384 -> 128 projection).
        encoder: any :class:`~rag_relax_plugins.embedders.base.TokenEncoder` to use instead of
            loading ``config.backbone`` (e.g. a shared ``SentenceTransformerEncoder``, or the
            ``HashingEncoder`` test double); its token size must equal ``config.token_dim``, and
            an encoder with a ``max_seq_length`` must truncate at ``config.max_seq_length``, and
            one with a ``model_path`` must load ``config.backbone`` (what :meth:`save` records,
            so that a reload scores alike).
        device: where the backbone and projection run (``None``: best available). Ignored for
            a given ``encoder``, whose device is used.
        batch_size: texts per backbone forward pass.

    Example:
        >>> rr = MaxSimReranker(MaxSimConfig(projection_dim=None))  # untrained, offline MiniLM
        >>> best = rr.rerank("capital of France", ["Berlin is in Germany.", "Paris is in France."], top_n=1)
        >>> best[0].index  # doctest: +SKIP
        1
    """

    SAVE_KIND: ClassVar[str] = "maxsim-reranker"  # the kind its saves record (atomic_folder)

    def __init__(
        self,
        config: MaxSimConfig | None = None,
        *,
        encoder: TokenEncoder | None = None,
        device: str | torch.device | None = None,
        batch_size: int = 32,
    ) -> None:
        config = MaxSimConfig() if config is None else config
        if not isinstance(config, MaxSimConfig):
            raise TypeError(f"config must be a MaxSimConfig, got {type(config).__name__}")
        self.batch_size = check_int("batch_size", batch_size, 1)
        if encoder is None:
            from rag_relax_plugins.embedders.sentence_transformer import SentenceTransformerEncoder

            encoder = SentenceTransformerEncoder(
                config.backbone, device=device, max_seq_length=config.max_seq_length, batch_size=batch_size
            )
        elif not isinstance(encoder, TokenEncoder):
            raise TypeError(f"encoder must implement TokenEncoder (encode_tokens), got {type(encoder).__name__}")
        token_dim = int(getattr(encoder, "token_dim", encoder.dim))
        if token_dim != config.token_dim:
            raise ValueError(
                f"encoder token size {token_dim} does not match config.token_dim={config.token_dim}"
            )
        length = getattr(encoder, "max_seq_length", None)
        if isinstance(length, int) and not isinstance(length, bool) and length != config.max_seq_length:
            # save() records config.max_seq_length: a reload would truncate elsewhere, other scores
            raise ValueError(
                f"the encoder truncates at {length} tokens but config.max_seq_length={config.max_seq_length} "
                f"(what save() records): give an encoder built with max_seq_length={config.max_seq_length}, "
                f"or a config with max_seq_length={length}"
            )
        _check_encoder_model(encoder, config)
        self.config = config
        self.encoder = encoder
        self.device = torch.device(getattr(encoder, "device", "cpu"))
        self.head = MaxSimHead(config.token_dim, config.projection_dim, seed=config.seed).to(self.device)
        self.head.eval()

    def __repr__(self) -> str:
        c = self.config
        return (
            f"MaxSimReranker(backbone={c.backbone!r}, projection_dim={c.projection_dim}, "
            f"markers=({c.query_marker!r}, {c.document_marker!r}), device={str(self.device)!r})"
        )

    # -- encoding ------------------------------------------------------------------------------
    def backbone_tokens(self, texts: list[str], *, marker: str, show_progress: bool = False) -> PackedTokens:
        """Backbone token vectors (before projection) of ``marker + text``, packed.

        Args:
            texts: ``N`` strings.
            marker: prefix (``config.query_marker`` or ``config.document_marker``).
            show_progress: progress bar over backbone batches.

        Returns:
            :class:`PackedTokens` with ``(T, token_dim) x float32`` rows on :attr:`device`.
        """
        emb = self.encoder.encode_tokens(
            [marker + t for t in texts], batch_size=self.batch_size, show_progress=show_progress
        )
        return pack_tokens(emb)

    @contextmanager
    def _inference(self) -> Iterator[None]:
        """``torch.inference_mode`` with the head and the encoder's model in eval mode (each
        module's own flag restored after): a shared encoder a caller put in train mode scored
        with dropout, differently at each call (BaseReranker asks for deterministic scores)."""
        model = getattr(self.encoder, "model", None)
        modules = [m for m in (model, self.head) if isinstance(m, nn.Module)]
        with ExitStack() as stack:
            for m in modules:  # one order everywhere: encoder model, then head (no lock cycle)
                stack.enter_context(module_lock(m))
            stack.enter_context(torch.inference_mode())
            for m in modules:
                stack.enter_context(eval_mode(m))
            yield

    def encode_queries(self, queries: list[str]) -> TokenEmbeddings:
        """Projected, normalised query token vectors.

        Args:
            queries: ``B`` strings.

        Returns:
            :class:`TokenEmbeddings` ``(B, Lq, d) x float32`` (zeros at padding) with its mask.
        """
        with self._inference():
            emb = self.encoder.encode_tokens(
                [self.config.query_marker + q for q in queries], batch_size=self.batch_size
            )
            vecs = self.head(emb.embeddings) * emb.mask[..., None]
        return TokenEmbeddings(embeddings=vecs.clone(), mask=emb.mask.clone())

    def encode_documents(self, documents: list[str], *, show_progress: bool = False) -> PackedTokens:
        """Projected, normalised document token vectors, packed (no padding).

        Args:
            documents: ``N`` strings.
            show_progress: progress bar over backbone batches.

        Returns:
            :class:`PackedTokens` with ``(T, d) x float32`` rows.
        """
        with self._inference():
            packed = self.backbone_tokens(documents, marker=self.config.document_marker, show_progress=show_progress)
            tokens = self.head(packed.tokens)  # (T, d): projected once per real token
        return PackedTokens(tokens=tokens.clone(), offsets=packed.offsets.clone())

    # -- scoring ---------------------------------------------------------------------------------
    @staticmethod
    def score_tokens(
        q: torch.Tensor, q_mask: torch.Tensor, docs: torch.Tensor, offsets: torch.Tensor
    ) -> torch.Tensor:
        """Mean-over-query-tokens MaxSim of projected vectors (differentiable; used in training).

        Args:
            q: ``(B, Lq, d) x float`` unit query vectors.
            q_mask: ``(B, Lq) x bool`` real query tokens (each row needs at least one).
            docs: ``(T, d) x float`` unit document vectors, packed.
            offsets: ``(N + 1,) x long`` document offsets into ``docs``.

        Returns:
            ``(B, N) x float`` scores in ``[-1, 1]``.
        """
        n_tokens = q_mask.sum(dim=1, keepdim=True).clamp(min=1).to(q.dtype)  # (B, 1)
        weights = q_mask.to(q.dtype) / n_tokens  # (B, Lq): mean over the real query tokens
        return maxsim_packed(q, docs, offsets, q_mask=q_mask, similarity="dot", query_weights=weights)

    def score(self, query: str, documents: Sequence[str]) -> torch.Tensor:
        """Score candidates for one query.

        Args:
            query: the query text.
            documents: ``N`` candidate texts.

        Returns:
            ``(N,) x float32`` on the CPU: mean over query tokens of the best cosine, in ``[-1, 1]``.
        """
        query, docs = check_candidates(query, documents)
        if not docs:
            return torch.zeros(0, dtype=torch.float32)
        unique, rows = distinct_texts(docs)  # exact duplicates: one score, input order kept
        with torch.inference_mode():
            q = self.encode_queries([query])
            d = self.encode_documents(unique)
            scores = self.score_tokens(q.embeddings, q.mask, d.tokens, d.offsets)[0]
        return scores.to("cpu", torch.float32)[torch.tensor(rows)]

    @staticmethod
    def relevance(scores: torch.Tensor) -> torch.Tensor:
        """Map scores in ``[-1, 1]`` to relevances in ``[0, 1]``: ``(s + 1) / 2``, clamped.

        Args:
            scores: ``(N,) x float`` from :meth:`score`.

        Returns:
            ``(N,) x float`` in ``[0, 1]``.
        """
        return ((scores + 1.0) / 2.0).clamp(0.0, 1.0)

    def relevance_of(self, score: float) -> float:
        """:meth:`relevance` of one score (the :class:`BaseReranker` hook the adapters call)."""
        return float(self.relevance(torch.tensor(score, dtype=torch.float64)))

    # -- persistence -----------------------------------------------------------------------------
    def trainable_backbone_parameters(self, last_layers: int) -> dict[str, nn.Parameter]:
        """Parameters of the final ``last_layers`` transformer layers of a sentence-transformers backbone.

        Raises:
            TypeError: the encoder is not a ``SentenceTransformerEncoder`` with a BERT-like stack.
            ValueError: ``last_layers`` exceeds the number of layers.
        """
        check_int("last_layers", last_layers, 0)
        model = getattr(self.encoder, "model", None)
        try:
            layers = model[0].auto_model.encoder.layer  # type: ignore[index]
        except (AttributeError, TypeError, IndexError) as exc:
            raise TypeError("train_last_layers needs a sentence-transformers BERT-like backbone") from exc
        if last_layers > len(layers):
            raise ValueError(f"last_layers must be <= {len(layers)} (backbone layers), got {last_layers}")
        first = len(layers) - last_layers
        return {
            f"backbone.layer.{first + i}.{name}": p
            for i, layer in enumerate(layers[first:])
            for name, p in layer.named_parameters()
        }

    def state_tensors(self) -> dict[str, torch.Tensor]:
        """Tensors saved with the reranker: the projection and any trained backbone layers."""
        out = {f"head.{k}": v.detach().cpu().contiguous() for k, v in self.head.state_dict().items()}
        if self.config.trained_layers:
            for name, p in self.trainable_backbone_parameters(self.config.trained_layers).items():
                out[name] = p.detach().cpu().contiguous()
        return out

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write ``config.json`` + ``model.safetensors`` atomically (temp folder, then rename).

        Returns:
            The folder written.
        """
        def write(tmp: Path) -> None:
            save_file(self.state_tensors(), str(tmp / _WEIGHTS))
            meta = {"format_version": FORMAT_VERSION, "type": "maxsim", **self.config.to_dict()}
            (tmp / _CONFIG).write_text(json.dumps(meta, indent=2), encoding="utf-8")

        return atomic_folder(path, write, kind=self.SAVE_KIND)

    @classmethod
    @reads_whole_save("path")  # a save replacing the folder mid-read is read again
    def load(
        cls,
        path: str | os.PathLike[str],
        *,
        encoder: TokenEncoder | None = None,
        device: str | torch.device | None = None,
        batch_size: int = 32,
    ) -> MaxSimReranker:
        """Load a reranker written by :meth:`save`.

        Args:
            path: the folder.
            encoder: reuse an already loaded encoder of the same backbone (its trained layers, if
                any, are overwritten with the saved ones). Where the saved ``config.backbone``
                names no folder any more (a backbone moved since the save), the encoder's model
                folder is taken as the backbone, and a later save records it; an encoder of
                another model than a backbone still there is refused.
            device, batch_size: as in the constructor.

        A crash between the two renames of a replacing :meth:`save` leaves only the previous
        save, as ``.<name>.old-*``; it is loaded then (:func:`~rag_relax_plugins._io.find_saved_folder`).

        Raises:
            FileNotFoundError: no ``config.json`` / ``model.safetensors`` in ``path``.
            ValueError: a save of another kind (named), a corrupt ``config.json`` or
                ``model.safetensors`` (the message names it),
                a folder of another model type (``"type"`` other than ``"maxsim"``; a save
                without a ``"type"`` is accepted only when its keys are all :class:`MaxSimConfig`
                fields), unknown format version, a config whose values do not fit the backbone
                (token size, trained layers, length: the message names ``config.json``), or
                weights that do not match the config: head tensors missing, mis-shaped or integer
                (half-precision ones are cast), trained-layer tensors missing, or tensors the config
                does not use (a stray key, or ``trained_layers`` edited down). Nothing of a passed
                ``encoder`` is changed then.
        """
        try:
            folder = find_saved_folder(path, _CONFIG, kind=cls.SAVE_KIND)
        except FileNotFoundError:
            folder = Path(path)
        for name in (_CONFIG, _WEIGHTS):
            if not (folder / name).is_file():
                raise FileNotFoundError(f"no saved MaxSim reranker at {folder} (missing {name})")
        meta = read_json(folder / _CONFIG)
        version = meta.pop("format_version", None)
        kind = meta.pop("type", None)
        fields = set(MaxSimConfig.__dataclass_fields__)
        if kind is None and not set(meta) <= fields:  # a save from before "type" was written
            kind = "unknown"
        if kind not in (None, "maxsim"):
            raise ValueError(f"{folder} is not a MaxSim reranker (config.json has type {kind!r}, keys "
                             f"{sorted(meta)}); load it with the class that saved it")
        if version != FORMAT_VERSION:
            raise ValueError(f"{folder} holds format 'maxsim' v{version}; expected v{FORMAT_VERSION}")
        try:
            config = MaxSimConfig.from_dict(meta)
        except (TypeError, ValueError) as exc:  # a value out of range or of the wrong type: name the file
            raise ValueError(f"{folder / _CONFIG}: {exc} (corrupt or hand-edited file?)") from exc
        moved = _other_encoder_model(encoder, config, moved_only=True) if encoder is not None else None
        if moved is not None:  # the saved backbone folder is gone: the encoder's folder takes its place
            logger.info("%s: loading with the given encoder's model %s (config.backbone %r)", folder, moved,
                        config.backbone)
            config = dataclasses.replace(config, backbone=moved)
        tensors = read_tensors(folder / _WEIGHTS)
        proj = tensors.get("head.proj.weight")
        if config.projection_dim is not None and proj is not None and proj.shape[:1] != (config.projection_dim,):
            # before the head is built: a hand-edited projection_dim 10**8 made it allocate gigabytes
            raise ValueError(f"{folder}/{_WEIGHTS} does not match its config: head.proj.weight is "
                             f"{tuple(proj.shape)}, config.json has projection_dim {config.projection_dim}")
        try:  # the config's values checked against the backbone (token size, layers, length)
            rr = cls(config, encoder=encoder, device=device, batch_size=batch_size)
            params = rr.trainable_backbone_parameters(rr.config.trained_layers) if rr.config.trained_layers else {}
        except (TypeError, ValueError) as exc:  # named the checks' own parameters ("last_layers must be <= 6"), not the file
            raise ValueError(f"{folder / _CONFIG}: {exc} (the saved config does not fit the backbone)") from exc
        head = {k[len("head.") :]: v for k, v in tensors.items() if k.startswith("head.")}
        # every check before any tensor is loaded: a passed encoder's layers stay as they were
        unused = sorted(k for k in tensors if not k.startswith("head.") and k not in params)
        if unused:  # e.g. a trained layer whose trained_layers was edited to 0: dropped silently
            raise ValueError(f"{folder}/{_WEIGHTS} holds tensors its config.json (trained_layers "
                             f"{rr.config.trained_layers}) does not use, e.g. {unused[0]} ({len(unused)} in all)")
        check_float_weights({f"head.{k}": v for k, v in rr.head.state_dict().items()}, tensors, folder / _WEIGHTS)
        missing = sorted(set(params) - set(tensors))
        if missing:
            raise ValueError(f"{folder}/{_WEIGHTS} lacks trained backbone tensors, e.g. {missing[0]}")
        for name, p in params.items():  # copy_ broadcast a (1,) tensor over a whole LayerNorm
            t = tensors[name]
            if tuple(t.shape) != tuple(p.shape) or not t.is_floating_point():
                raise ValueError(f"{folder}/{_WEIGHTS}: {name} is {t.dtype} {tuple(t.shape)}, the backbone's "
                                 f"{p.dtype} {tuple(p.shape)}")
        try:
            rr.head.load_state_dict(head, strict=True)
        except RuntimeError as exc:
            raise ValueError(f"{folder}/{_WEIGHTS} does not match its config: {exc}") from exc
        if params:
            with torch.no_grad():
                for name, p in params.items():
                    p.copy_(tensors[name].to(p.device, p.dtype))
        rr.head.to(rr.device).eval()
        return rr
