"""Rerank the HotpotQA distractor paragraphs of each question with a text encoder.

For each question, its (up to 10) context paragraphs are ordered by the cosine between the
question vector and each paragraph vector (``title: sentences``), and compared with the order in
the data file and a seeded random order on Recall@k and MRR of the gold paragraphs (the
supporting-fact titles). All unique paragraph texts and all questions are encoded in one batched
pass each. Relevance judgements only count gold paragraphs that are present in the context;
questions with none present are skipped (``skip_empty``) and counted in the result.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from rag_relax_plugins.core.metrics import DocId, check_metrics, evaluate
from rag_relax_plugins.datasets.hotpotqa import HotpotExample
from rag_relax_plugins.embedders.base import TextEncoder

__all__ = ["HotpotRerankResult", "rerank_hotpot"]

DEFAULT_METRICS = ("recall@2", "recall@5", "mrr")


@dataclass(frozen=True)
class HotpotRerankResult:
    """Figures of one reranking run.

    Attributes:
        metrics: ``{order name: {metric: mean}}`` for ``"data order"``, ``"random"`` and
            ``"encoder"``, over the evaluated questions.
        num_questions: questions given.
        num_evaluated: questions with at least one gold paragraph present (the mean is over these).
        num_paragraphs: unique paragraph texts encoded.
        gold_present: ``{number of gold paragraphs present: questions}``.
        encode_seconds: wall time of the encoding passes.
        rankings: encoder ranking (paragraph indices, best first) per question.
    """

    metrics: dict[str, dict[str, float]]
    num_questions: int
    num_evaluated: int
    num_paragraphs: int
    gold_present: dict[int, int]
    encode_seconds: float
    rankings: list[list[int]] = field(repr=False, default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (without the rankings)."""
        return {
            "metrics": self.metrics,
            "num_questions": self.num_questions,
            "num_evaluated": self.num_evaluated,
            "num_paragraphs": self.num_paragraphs,
            "gold_present": {str(k): v for k, v in sorted(self.gold_present.items())},
            "encode_seconds": self.encode_seconds,
        }


def rerank_hotpot(
    examples: Sequence[HotpotExample],
    encoder: TextEncoder,
    *,
    metrics: Sequence[str] = DEFAULT_METRICS,
    batch_size: int = 64,
    show_progress: bool = False,
    seed: int = 0,
) -> HotpotRerankResult:
    """Rerank each question's paragraphs by cosine similarity and score three orders.

    Args:
        examples: HotpotQA distractor questions (see ``load_hotpotqa_distractor``).
        encoder: any :class:`TextEncoder` (e.g. the offline MiniLM or the hashing encoder).
        metrics: names understood by :func:`rag_relax_plugins.core.metrics.evaluate`.
        batch_size: texts per forward pass.
        show_progress: show the encoder's progress bar.
        seed: seed of the random baseline order (a ``torch.Generator``).

    Returns:
        :class:`HotpotRerankResult`.

    Raises:
        TypeError / ValueError: ``metrics`` a single string, an unknown or repeated metric
            (checked before anything is encoded).
        ValueError: ``examples`` is empty or no question has a paragraph.
    """
    metrics = check_metrics(metrics)  # a typo is refused now, not after encoding every paragraph
    if len(examples) == 0:
        raise ValueError("examples must hold at least one question")
    texts: dict[str, int] = {}  # unique paragraph text -> row in the paragraph matrix
    para_rows: list[list[int]] = []
    for ex in examples:
        para_rows.append([texts.setdefault(t, len(texts)) for t in ex.paragraph_texts()])
    if not texts:
        raise ValueError("no question in examples has any context paragraph")

    start = time.perf_counter()
    paras = encoder.encode(
        list(texts), batch_size=batch_size, normalize=True, show_progress=show_progress
    )
    questions = encoder.encode(
        [ex.question for ex in examples], batch_size=batch_size, normalize=True
    )
    encode_seconds = time.perf_counter() - start

    # gather each question's paragraphs into a padded (Q, P) index with a mask
    width = max(len(r) for r in para_rows)
    index = torch.zeros(len(examples), width, dtype=torch.long, device=paras.device)
    mask = torch.zeros(len(examples), width, dtype=torch.bool, device=paras.device)
    for q, rows in enumerate(para_rows):
        index[q, : len(rows)] = torch.tensor(rows, dtype=torch.long)
        mask[q, : len(rows)] = True
    with torch.inference_mode():
        cand = paras[index]  # (Q, P, D)
        scores = torch.einsum(
            "qd,qpd->qp", questions.to(paras.device), cand
        )  # cosine (unit vectors)
        scores = scores.masked_fill(~mask, float("-inf"))
        order = torch.sort(scores, dim=1, descending=True, stable=True).indices.cpu().tolist()
    encoder_rankings: list[list[int]] = [
        row[: len(rows)] for row, rows in zip(order, para_rows, strict=True)
    ]

    gen = torch.Generator().manual_seed(seed)
    random_rankings = [torch.randperm(len(rows), generator=gen).tolist() for rows in para_rows]
    data_rankings = [list(range(len(rows))) for rows in para_rows]
    qrels: list[dict[DocId, float]] = [{i: 1.0 for i in ex.gold_indices} for ex in examples]

    gold_present: dict[int, int] = {}
    for judged in qrels:
        gold_present[len(judged)] = gold_present.get(len(judged), 0) + 1
    evaluated = sum(1 for judged in qrels if judged)
    if evaluated == 0:
        raise ValueError("no question has a gold paragraph among its context paragraphs")
    results = {
        name: evaluate(rankings, qrels, metrics, skip_empty=True)
        for name, rankings in (
            ("data order", data_rankings),
            ("random", random_rankings),
            ("encoder", encoder_rankings),
        )
    }
    return HotpotRerankResult(
        metrics=results,
        num_questions=len(examples),
        num_evaluated=evaluated,
        num_paragraphs=len(texts),
        gold_present=gold_present,
        encode_seconds=encode_seconds,
        rankings=encoder_rankings,
    )
