"""Differentiable Masked Attention (DMA): a document mask enters a causal LM as a 4-D attention bias.

Gumbel Reranking (Huang et al., ACL 2025, Sec. 3) trains a reranker through a frozen reader: the
reader sees every candidate document, and the attention logits from the question and answer tokens
to the tokens of document ``i`` receive the additive bias ``log(m_i)``, where ``m`` is the relaxed
top-k mask. ``m_i = 1`` leaves attention unchanged, ``m_i -> 0`` removes document ``i``.

The prompt is laid out as ``[prefix][doc_1]...[doc_N][suffix = question + assistant turn][answer]``.
Two variants:

- ``"independent"`` (the paper's form): each document attends only to the prefix and to itself
  (block-diagonal attention among documents) and every document starts at the same position
  offset (shared ``position_ids``); the suffix and answer tokens attend to everything before
  them, with ``log(m_i)`` on the columns of document ``i``. Setting ``m_i = 0`` is exactly the same
  as deleting document ``i`` from this layout, i.e. the independent layout of the other documents
  (the suffix position offset is a fixed ``doc_span``; the answer NLL agrees to float32 rounding,
  within 1e-4 in ``tests/readers/test_layout_vs_generate_prompt.py``).
- ``"concatenated"``: an ordinary causal prompt with the documents one after another
  (positions ``0..T-1``), ``log(m_i)`` added to the attention of *every later token* (later
  documents, suffix, answer) to document ``i``'s tokens. ``m_i = 0`` then equals deleting
  document ``i`` while keeping the other tokens' original positions (RoPE sees the same relative
  distances), which is what the tests compare against.

Neither layout's ``m_i = 0`` is the pruned prompt that
:meth:`CausalLMReader.generate <rag_relax_plugins.readers.causal_lm.CausalLMReader.generate>` reads
at inference (the kept documents concatenated: contiguous positions, each document attending to
the earlier ones). On SmolLM2 the answer NLL differs from that prompt's
(``benchmarks/bench_dma_layout_gap.py`` measures it, 2026-12-03): independent 0.21-0.69 nats on its 3-document
example (doc_tokens 8) and a median of 0.34 (max 0.58) over 20 deletions on two HotpotQA rows
(doc_tokens 48); concatenated 0.13-0.52 and a median of 0.10 (max 0.36). Training uses
``"independent"`` for the larger gold-vs-distractor NLL gap it gives SmolLM2 (docs/gumbel_reranker.md)
and for its mask-independent document states (:meth:`CausalLMReader.encode_documents`), not for a
closer match to the prompt ``generate`` reads.

The mask is additive float ``(B, 1, T, T)`` in the model's dtype: ``0`` where attention is allowed and
unbiased, ``log(m_i)`` (clamped by :func:`rag_relax_plugins.core.gumbel.attention_log_mask`) where
biased, ``finfo.min`` where forbidden. transformers passes a 4-D mask through unchanged to the
eager and sdpa attention implementations.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch

from rag_relax_plugins.core.gumbel import attention_log_mask
from rag_relax_plugins.core.validation import check_count, check_floating, check_ndim

__all__ = ["DMAVariant", "ReaderLayout", "build_layout", "dma_attention_mask"]

DMAVariant = Literal["independent", "concatenated"]
_VARIANTS = ("independent", "concatenated")

DEFAULT_INSTRUCTION = "Answer the question with a short phrase, using the documents."


@dataclass(frozen=True)
class ReaderLayout:
    """Token layout of one reader prompt.

    Attributes:
        input_ids: ``(T,) x long`` tokens of prefix, documents, suffix and answer.
        position_ids: ``(T,) x long`` positions (shared document offsets in the independent variant).
        segment: ``(T,) x long``: ``-1`` prefix, ``i`` document ``i``, ``N`` suffix and answer.
        num_docs: ``N``.
        answer_start: index of the first answer token (``T`` when there is no answer).
        variant: ``"independent"`` or ``"concatenated"``.
        cut_documents: how many documents were longer than ``doc_tokens`` and cut to it.
    """

    input_ids: torch.Tensor
    position_ids: torch.Tensor
    segment: torch.Tensor
    num_docs: int
    answer_start: int
    variant: DMAVariant
    cut_documents: int = 0

    @property
    def length(self) -> int:
        return int(self.input_ids.shape[0])

    def without_doc(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``(input_ids, position_ids)`` with document ``i``'s tokens deleted, others' positions kept."""
        keep = self.segment != i
        return self.input_ids[keep], self.position_ids[keep]


def _ids(tokenizer: Any, text: str) -> list[int]:
    """Token ids of template text: control-token strings such as ``<|im_end|>`` are parsed."""
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def _special_strings(tokenizer: Any) -> list[str]:
    """The strings the tokenizer turns into control tokens (``<|im_end|>``, ``<|im_start|>`` ...)."""
    names = list(getattr(tokenizer, "all_special_tokens", []) or [])
    added = getattr(tokenizer, "get_added_vocab", None)
    if callable(added):
        names += list(added())
    return [n for n in dict.fromkeys(names) if n]


def _text_ids(tokenizer: Any, text: str, specials: list[str]) -> list[int]:
    """Token ids of user text (a document, question or answer): control-token strings inside it
    (``specials``, from :func:`_special_strings`) stay plain text, so a document holding
    ``<|im_end|>`` cannot end the prompt's turn.

    Text without such strings tokenises exactly as :func:`_ids` does.
    """
    if not any(s in text for s in specials):
        return _ids(tokenizer, text)
    return list(tokenizer(text, add_special_tokens=False, split_special_tokens=True)["input_ids"])


def build_layout(
    tokenizer: Any,
    question: str,
    documents: Sequence[str],
    answer: str | None = None,
    *,
    variant: DMAVariant = "independent",
    doc_tokens: int = 64,
    doc_span: int | None = None,
    instruction: str = DEFAULT_INSTRUCTION,
) -> ReaderLayout:
    """Tokenise a ChatML reader prompt (SmolLM2's template) into a :class:`ReaderLayout`.

    Args:
        tokenizer: the reader's tokenizer.
        question: the question.
        documents: ``N >= 1`` document texts; each is truncated to ``doc_tokens`` tokens.
        answer: gold answer (its tokens are scored by the NLL); ``None`` for generation.
        variant: ``"independent"`` or ``"concatenated"``.
        doc_tokens: tokens kept per document (>= 1).
        doc_span: positions reserved for a document in the independent variant (default
            ``doc_tokens`` plus the newline's tokens, one for SmolLM2); the suffix starts after it.
        instruction: system instruction.

    Returns:
        The layout (CPU tensors).

    Raises:
        ValueError: bad ``variant``, ``doc_tokens``, ``doc_span`` or no documents.
        TypeError: non-string inputs.
    """
    if variant not in _VARIANTS:
        raise ValueError(f"variant must be one of {_VARIANTS}, got {variant!r}")
    doc_tokens = check_count("doc_tokens", doc_tokens, 1)
    if not isinstance(question, str):
        raise TypeError(f"question must be a str, got {type(question).__name__}")
    if answer is not None and not isinstance(answer, str):
        raise TypeError(f"answer must be a str or None, got {type(answer).__name__}")
    if isinstance(documents, str) or len(documents) == 0:
        raise ValueError("documents must be a non-empty sequence of str")
    for j, d in enumerate(documents):
        if not isinstance(d, str):
            raise TypeError(f"documents[{j}] must be a str, got {type(d).__name__}")
    newline = _ids(tokenizer, "\n")
    span = doc_tokens + len(newline) if doc_span is None else check_count("doc_span", doc_span, 1)
    if span < doc_tokens + len(newline):  # else the suffix would share positions with documents
        raise ValueError(f"doc_span must be >= doc_tokens + {len(newline)} (the newline's tokens) = "
                         f"{doc_tokens + len(newline)}, got {doc_span}")

    prefix = _ids(
        tokenizer, f"<|im_start|>system\n{instruction}<|im_end|>\n<|im_start|>user\nDocuments:\n"
    )
    specials = _special_strings(tokenizer)  # once per layout
    full = [_text_ids(tokenizer, d, specials) for d in documents]
    docs = [t[:doc_tokens] + newline for t in full]
    suffix_end = "<|im_end|>\n<|im_start|>assistant\n"
    if any(sp in question for sp in specials):  # keep the question plain text
        suffix = _ids(tokenizer, "Question:") + _text_ids(tokenizer, " " + question, specials) + _ids(tokenizer, suffix_end)
    else:  # one string, as it always tokenised
        suffix = _ids(tokenizer, f"Question: {question}{suffix_end}")
    ans = _text_ids(tokenizer, answer, specials) if answer is not None else []

    ids: list[int] = list(prefix)
    seg: list[int] = [-1] * len(prefix)
    pos: list[int] = list(range(len(prefix)))
    p = len(prefix)
    for i, doc in enumerate(docs):
        start = p if variant == "independent" else len(ids)
        ids += doc
        seg += [i] * len(doc)
        pos += list(range(start, start + len(doc)))
    n = len(docs)
    tail = suffix + ans
    start = p + span if variant == "independent" else len(ids)
    answer_start = len(ids) + len(suffix)
    ids += tail
    seg += [n] * len(tail)
    pos += list(range(start, start + len(tail)))
    return ReaderLayout(
        input_ids=torch.tensor(ids, dtype=torch.long),
        position_ids=torch.tensor(pos, dtype=torch.long),
        segment=torch.tensor(seg, dtype=torch.long),
        num_docs=n,
        answer_start=answer_start,
        variant=variant,
        cut_documents=sum(len(t) > doc_tokens for t in full),
    )


def dma_attention_mask(
    layout: ReaderLayout,
    doc_mask: torch.Tensor,
    *,
    dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """Additive 4-D attention mask with the DMA bias ``log(doc_mask_i)``.

    Args:
        layout: the prompt layout (length ``T``, ``N`` documents).
        doc_mask: ``(N,)`` or ``(B, N) x float`` in ``[0, 1]``; differentiable.
        dtype: mask dtype (the model's); defaults to ``doc_mask.dtype``.

    Returns:
        ``(B, 1, T, T)`` (``B = 1`` for a 1-D ``doc_mask``) on ``doc_mask.device``: ``0`` allowed,
        ``log(m_i)`` biased, ``finfo(dtype).min`` forbidden.

    Raises:
        ValueError: ``doc_mask`` has the wrong number of documents or values outside ``[0, 1]``.
        TypeError: ``doc_mask`` is not floating.
    """
    check_floating("doc_mask", doc_mask)
    check_ndim("doc_mask", doc_mask, (1, 2))
    m = doc_mask.unsqueeze(0) if doc_mask.dim() == 1 else doc_mask  # (B, N)
    if m.shape[1] != layout.num_docs:
        raise ValueError(
            f"doc_mask must have {layout.num_docs} documents in its last dim, got {tuple(doc_mask.shape)}"
        )
    dtype = dtype or m.dtype
    dev = m.device
    seg = layout.segment.to(dev)
    n, t = layout.num_docs, layout.length
    row, col = seg.view(t, 1), seg.view(1, t)  # (T, 1), (1, T)
    causal = torch.ones(t, t, dtype=torch.bool, device=dev).tril()  # (T, T)
    col_is_doc = (col >= 0) & (col < n)  # (1, T)
    if layout.variant == "independent":
        allowed = causal & ((col == -1) | (col == row) | (row == n))
        biased = col_is_doc & (row == n)
    else:
        allowed = causal
        biased = col_is_doc & (row != col)
    # (B, N) -> (B, N + 2): an unbiased slot for the prefix (-1 -> 0) and the suffix (N -> N + 1)
    # the log (and its gradient 1 / m) in at least float32 and the mask's own precision, then cast:
    # in a float16 model's dtype a mask below ~1.5e-5 gave an inf gradient (NaN on the scorer)
    work = torch.promote_types(torch.promote_types(m.dtype, dtype), torch.float32)
    logm = attention_log_mask(m.to(work), floor=torch.finfo(dtype).min / 2).to(dtype)
    zeros = torch.zeros(m.shape[0], 1, dtype=dtype, device=dev)
    table = torch.cat([zeros, logm, zeros], dim=1)
    col_bias = table[:, (seg + 1)]  # (B, T): log(m_i) of each column's document
    bias = torch.where(
        biased.unsqueeze(0), col_bias.unsqueeze(1), torch.zeros((), dtype=dtype, device=dev)
    )
    neg = torch.finfo(dtype).min
    out = torch.where(allowed.unsqueeze(0), bias, torch.full((), neg, dtype=dtype, device=dev))
    return out.unsqueeze(1)  # (B, 1, T, T)
