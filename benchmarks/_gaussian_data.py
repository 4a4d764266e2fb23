"""Data of the Gaussian-embedder benchmark: HotpotQA open corpus and SNLI retrieval sets.

Built on the shared loaders of :mod:`rag_relax_plugins.datasets`:

- HotpotQA open corpus: every unique paragraph of ``distractor_500.jsonl`` (doc id = title).
  The 500 distractor questions are shuffled with a fixed seed and cut in two halves: the first
  half gives training pairs (question, gold paragraph) with the same question's distractor
  paragraphs as hard negatives (50 of its questions are held out for model selection), the
  second half is the test set. Questions whose gold paragraphs are all absent from the corpus
  (the shared file lacks some) are dropped from the test and validation sets, since no system
  can retrieve them. ``evidence_500.jsonl`` adds (question, joined evidence) pairs.
- SNLI: (hypothesis, premise) entailment pairs of the 100k training sample for training; the
  test split's entailment hypotheses as queries over all its unique premises for evaluation.
"""

from __future__ import annotations

import random
from typing import Any

from rag_relax_plugins.datasets import (
    hotpot_open_corpus,
    load_hotpotqa_distractor,
    load_hotpotqa_evidence,
    load_snli,
)


def _retrieval_set(examples: list[Any], corpus: dict[str, str]) -> tuple[dict[str, str], dict[str, dict[str, int]]]:
    """Queries and qrels of ``examples``; questions with no gold paragraph in the corpus are dropped."""
    queries: dict[str, str] = {}
    qrels: dict[str, dict[str, int]] = {}
    for ex in examples:
        rel = {t: 1 for t in ex.gold_titles if t in corpus}
        if rel:
            queries[ex.id] = ex.question
            qrels[ex.id] = rel
    return queries, qrels


def hotpot(seed_split: int = 0, num_val: int = 50) -> dict[str, Any]:
    """Open corpus, training items, a validation set and the held-out test questions.

    The 500 distractor questions are shuffled (``seed_split``) and halved; the last ``num_val``
    questions of the training half are kept out of training for model selection.

    Returns:
        ``corpus`` {title: text}; ``queries``/``qrels`` of the test half; ``val_queries``/
        ``val_qrels``; ``train_items`` [{"query", "positives", "negatives"}] (gold and distractor
        paragraph texts of each training question); ``evidence_pairs`` [(question, evidence)].
    """
    examples = load_hotpotqa_distractor()
    corpus, _, _ = hotpot_open_corpus(examples)
    order = list(range(len(examples)))
    random.Random(seed_split).shuffle(order)
    half = len(examples) // 2
    train_ex = [examples[i] for i in order[: half - num_val]]
    val_ex = [examples[i] for i in order[half - num_val : half]]
    test_ex = [examples[i] for i in order[half:]]
    queries, qrels = _retrieval_set(test_ex, corpus)
    val_queries, val_qrels = _retrieval_set(val_ex, corpus)
    items = []
    for ex in train_ex:
        gold = set(ex.gold_titles)
        positives = [corpus[t] for t in ex.gold_titles if t in corpus]
        negatives = [corpus[t] for t in ex.titles if t not in gold and t in corpus]
        if positives and negatives:
            items.append({"query": ex.question, "positives": positives, "negatives": negatives})
    evidence = [(ev.question, " ".join(s.strip() for s in ev.evidence)) for ev in load_hotpotqa_evidence()]
    return {
        "corpus": corpus,
        "queries": queries,
        "qrels": qrels,
        "val_queries": val_queries,
        "val_qrels": val_qrels,
        "train_items": items,
        "evidence_pairs": evidence,
        "all_questions": [ex.question for ex in examples],
    }


def snli_pairs(n: int, seed: int = 0) -> list[tuple[str, str]]:
    """``n`` (hypothesis, premise) entailment pairs from the SNLI training sample (seeded)."""
    ent = [(p.hypothesis, p.premise) for p in load_snli("train", labels=("entailment",))]
    random.Random(seed).shuffle(ent)
    return ent[:n]


def snli_test() -> dict[str, Any]:
    """Hypothesis -> premise retrieval on the SNLI test split (entailment hypotheses as queries)."""
    premises: dict[str, str] = {}
    queries: dict[str, str] = {}
    qrels: dict[str, dict[str, int]] = {}
    for p in load_snli("test"):
        pid = premises.setdefault(p.premise, f"p{len(premises)}")
        if p.label == "entailment":
            qid = f"h{len(queries)}"
            queries[qid] = p.hypothesis
            qrels[qid] = {pid: 1}
    corpus = {pid: text for text, pid in premises.items()}
    return {"corpus": corpus, "queries": queries, "qrels": qrels}
