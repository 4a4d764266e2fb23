"""Stochastic (Gumbel top-k) vs deterministic (sigmoid) document selection: exploration.

A deterministic sigmoid mask ``sigmoid(s_i / tau)`` gives the same weights at every step and has no
budget: its total mass is whatever the scores make it (here about 3.2 documents for k = 2), so the
reader is trained on a soft mixture that never matches the k documents it sees at inference. The
Gumbel relaxed top-k samples a different subset at each step, with a mask mass of at most k (about
1.5 here: the l2x mask is the element-wise maximum of k relaxed one-hot samples, which can pick the
same document twice); lower-scored documents are sometimes selected (exploration, controlled by tau and kappa), and the expected
selection follows the scores. Both give gradients to every score; the printout shows the
selection frequencies, the mask mass, and the gradient a low-scored document receives.

    .venv/bin/python examples/gumbel_vs_sigmoid.py
"""

from __future__ import annotations

import torch

from rag_relax_plugins.core.gumbel import hard_topk_mask, relaxed_topk


def selection_frequency(
    scores: torch.Tensor, k: int, tau: float, kappa: float, draws: int = 2000
) -> torch.Tensor:
    """How often each item is among the top-k of one relaxed mask sample, over ``draws`` samples."""
    gen = torch.Generator().manual_seed(0)
    batch = scores.expand(draws, -1)  # (draws, N): one noise draw per row
    masks = relaxed_topk(batch, k, mode="l2x", tau=tau, kappa=kappa, generator=gen)
    return hard_topk_mask(masks, k).mean(dim=0)


def main() -> None:
    scores = torch.tensor([1.0, 0.8, 0.3, 0.0, -0.5, -1.0])
    sig = torch.sigmoid(scores / 0.5)
    print("scores                ", scores.tolist())
    print(
        "sigmoid mask (fixed)  ",
        [round(v, 3) for v in sig.tolist()],
        "mass",
        round(float(sig.sum()), 2),
    )
    for tau, kappa in ((1.0, 1.0), (0.5, 4.0)):
        f = selection_frequency(scores, 2, tau, kappa)
        m = relaxed_topk(
            scores.expand(2000, -1),
            2,
            tau=tau,
            kappa=kappa,
            generator=torch.Generator().manual_seed(2),
        )
        print(
            f"Gumbel top-2 freq tau={tau} kappa={kappa}",
            [round(v, 3) for v in f.tolist()],
            "mean mass",
            round(float(m.sum(dim=1).mean()), 2),
        )
    # gradient each document's score receives through a loss that rewards document 3 (a low score)
    target = torch.zeros(6)
    target[3] = 1.0
    s = scores.clone().requires_grad_(True)
    (-(torch.sigmoid(s / 0.5) * target).sum()).backward()
    print("sigmoid grad on doc 3 ", round(float(s.grad[3]), 4))  # type: ignore[index]
    s = scores.clone().requires_grad_(True)
    gen = torch.Generator().manual_seed(1)
    m = relaxed_topk(s.expand(256, -1), 2, tau=1.0, generator=gen)
    (-(m * target).sum(dim=1).mean()).backward()
    print("Gumbel  grad on doc 3 ", round(float(s.grad[3]), 4))  # type: ignore[index]


if __name__ == "__main__":
    main()
