"""Documented behaviour of the embedders and the HotpotQA reranking evaluation that hand mutants
changed unnoticed (review 2026-12-05). Each test fails on one mutant and passes on the code."""

from __future__ import annotations

from rag_relax_plugins.datasets.hotpotqa import HotpotExample
from rag_relax_plugins.embedders.hashing import HashingEncoder
from rag_relax_plugins.evals.hotpot_rerank import rerank_hotpot


def _example(i: int, gold_present: bool) -> HotpotExample:
    paras = tuple((f"T{i}-{j}", (f"paragraph {j} about {'apples' if j == 0 else 'stones'} in question {i}.",))
                  for j in range(4))
    gold = f"T{i}-0" if gold_present else "absent title"
    return HotpotExample(id=f"x{i}", question=f"which fruit, apples? ({i})", answer="apples", type="bridge",
                         level="easy", paragraphs=paras, supporting_facts=((gold, 0),))


def test_questions_without_a_gold_paragraph_are_skipped_not_scored_zero() -> None:
    enc = HashingEncoder(dim=256)
    alone = rerank_hotpot([_example(0, True)], enc)
    mixed = rerank_hotpot([_example(0, True), _example(1, False)], enc)
    assert (mixed.num_questions, mixed.num_evaluated) == (2, 1)
    assert mixed.metrics == alone.metrics  # the mean is over the evaluated question only
    assert mixed.metrics["data order"]["mrr"] == 1.0
