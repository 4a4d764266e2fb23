"""The Gumbel reranker's selection mask, step by step, then the reranker itself on a few passages.

    .venv/bin/python examples/gumbel_reranking.py

Training uses a *relaxed* top-k mask (Gumbel noise, temperature tau, scale kappa; Huang et al.,
ACL 2025); inference uses the deterministic hard top-k of the scores.
"""

from __future__ import annotations

import torch

from rag_relax_plugins.core.gumbel import hard_topk_mask, relaxed_topk
from rag_relax_plugins.rerankers.gumbel import GumbelReranker


def main() -> None:
    scores = torch.tensor([2.0, 1.5, 0.2, -0.5, -1.0])
    gen = torch.Generator().manual_seed(0)
    print("scores           ", scores.tolist())
    print("hard top-2       ", hard_topk_mask(scores, 2).tolist())
    for tau in (0.1, 0.5, 1.0):
        m = relaxed_topk(scores, 2, mode="l2x", tau=tau, kappa=1.0, generator=gen)
        print(f"l2x tau={tau:<4}     ", [round(v, 3) for v in m.tolist()])
    m = relaxed_topk(scores, 2, mode="subset", tau=0.5, generator=gen)
    print("subset tau=0.5   ", [round(v, 3) for v in m.tolist()], "sum", round(float(m.sum()), 3))

    query = "Which river flows through Paris?"
    docs = [
        "The Seine flows through Paris before reaching the English Channel.",
        "The Thames is the river of London.",
        "Paris is the capital of France.",
        "Mount Everest is the highest mountain.",
    ]
    # the untrained cross-encoder head is random: train it (rag-relax train-reranker) or use the
    # bi-encoder scorer, whose untrained ranking is the MiniLM cosine
    reranker = GumbelReranker("bi")
    for r in reranker.rerank(query, docs, top_n=3):
        print(f"{r.score:7.3f}  relevance={reranker.relevance(r.score):.3f}  {docs[r.index]}")


if __name__ == "__main__":
    main()
