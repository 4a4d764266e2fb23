"""The shared torch core in one page: relaxed top-k, soft rank, MaxSim, metrics and fusion.

Run: ``python examples/core_quickstart.py`` (CPU, a second or two; no model, no data).
Every op is a plain torch function on ``(B, N)`` or token tensors; gradients flow through the
relaxed ones, so any scorer placed in front of them can be trained.
"""

from __future__ import annotations

import torch

from rag_relax_plugins.core.fusion import reciprocal_rank_fusion
from rag_relax_plugins.core.gumbel import hard_topk_mask, relaxed_topk
from rag_relax_plugins.core.maxsim import maxsim
from rag_relax_plugins.core.metrics import evaluate
from rag_relax_plugins.core.softsort import soft_rank


def main() -> None:
    g = torch.Generator().manual_seed(0)

    # 1. A differentiable top-k mask over reranker scores (Gumbel Reranking's l2x relaxation).
    scores = torch.randn(4, 20, generator=g, requires_grad=True)  # (B, N)
    mask = relaxed_topk(scores, k=5, mode="l2x", tau=0.5, generator=torch.Generator().manual_seed(1))
    mask.sum().backward()  # gradients reach the scores
    assert scores.grad is not None
    print(f"relaxed top-5 mask: in [{float(mask.detach().min()):.3f}, {float(mask.detach().max()):.3f}], "
          f"grad norm {float(scores.grad.norm()):.3f}")
    print(f"hard top-5 at inference selects {int(hard_topk_mask(scores.detach(), 5).sum(dim=1)[0])} per row")

    # 2. Soft ranks (Blondel et al. 2020): rank 1 is the smallest; strength -> 0 gives hard ranks.
    x = torch.tensor([[0.3, -1.2, 2.0, 0.1]])
    print("soft ranks  :", [round(v, 3) for v in soft_rank(x, regularization_strength=0.5)[0].tolist()])
    print("hard ranks  :", soft_rank(x, regularization_strength=1e-4)[0].round().tolist())

    # 3. ColBERT late interaction: 1 query of 32 tokens against 100 documents of 180 tokens.
    q, d = torch.randn(1, 32, 128, generator=g), torch.randn(100, 180, 128, generator=g)
    late = maxsim(q, d)  # (1, 100)
    print(f"MaxSim scores: shape {tuple(late.shape)}, best document {int(late.argmax())}")

    # 4. IR metrics over ranked id lists and graded qrels, and reciprocal rank fusion.
    run = [["d3", "d1", "d7"], ["d2", "d9"]]
    qrels = [{"d1": 1}, {"d9": 2, "d4": 1}]
    print("metrics     :", {k: round(v, 4) for k, v in evaluate(run, qrels, ["recall@2", "mrr", "ndcg@10"]).items()})
    fused = reciprocal_rank_fusion([["a", "b", "c"], ["c", "a", "d"]])
    print("RRF fused   :", [doc for doc, _ in fused])


if __name__ == "__main__":
    main()
