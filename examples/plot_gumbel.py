"""Write docs/img/gumbel_analysis.png and docs/img/gumbel_vs_sigmoid.png.

    .venv/bin/python examples/plot_gumbel.py

gumbel_analysis.png: for one vector of 10 scores, (left) the mean l2x top-2 mask per document for
several temperatures tau (kappa = 1), (middle) the same for several scales kappa (tau = 1),
(right) the distribution of mask values for three tau.
gumbel_vs_sigmoid.png: how often each document is selected (top-2 of a mask sample) by the
Gumbel relaxed top-k, against the fixed sigmoid weights and the deterministic hard top-2.
"""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch

from rag_relax_plugins.core.gumbel import hard_topk_mask, relaxed_topk

# RAG_RELAX_EXAMPLE_OUT redirects the pictures (the tests write them to a temporary folder)
OUT = Path(os.environ.get("RAG_RELAX_EXAMPLE_OUT") or Path(__file__).resolve().parents[1] / "docs" / "img")
SCORES = torch.linspace(1.5, -1.5, 10)
DRAWS = 4000


def masks(tau: float, kappa: float, seed: int = 0) -> torch.Tensor:
    """``(DRAWS, 10)`` l2x top-2 masks of SCORES."""
    gen = torch.Generator().manual_seed(seed)
    return relaxed_topk(
        SCORES.expand(DRAWS, -1), 2, mode="l2x", tau=tau, kappa=kappa, generator=gen
    )


def analysis() -> Path:
    fig, ax = plt.subplots(1, 3, figsize=(13, 3.6))
    x = range(1, 11)
    for tau in (0.1, 0.5, 1.0, 2.0):
        ax[0].plot(x, masks(tau, 1.0).mean(0), marker="o", label=f"tau={tau}")
    ax[0].set(
        title="mean mask vs temperature (kappa=1)", xlabel="document (by score)", ylabel="E[mask]"
    )
    for kappa in (0.5, 1.0, 4.0, 8.0):
        ax[1].plot(x, masks(1.0, kappa).mean(0), marker="o", label=f"kappa={kappa}")
    ax[1].set(title="mean mask vs scale (tau=1)", xlabel="document (by score)")
    for tau in (0.1, 1.0, 2.0):
        ax[2].hist(
            masks(tau, 1.0).flatten().numpy(), bins=40, alpha=0.5, label=f"tau={tau}", density=True
        )
    ax[2].set(title="mask values (all documents)", xlabel="mask value", yscale="log")
    for a in ax:
        a.legend(fontsize=8)
    fig.tight_layout()
    path = OUT / "gumbel_analysis.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def versus_sigmoid() -> Path:
    fig, ax = plt.subplots(figsize=(7, 3.8))
    x = torch.arange(1, 11).float()
    w = 0.25
    for i, (tau, kappa) in enumerate(((1.0, 1.0), (0.5, 4.0))):
        freq = hard_topk_mask(masks(tau, kappa, seed=1), 2).mean(0)
        ax.bar(
            x + (i - 1) * w,
            freq,
            width=w,
            label=f"Gumbel top-2 selection freq (tau={tau}, kappa={kappa})",
        )
    ax.bar(x + w, torch.sigmoid(SCORES / 0.5), width=w, label="sigmoid(s/0.5) weight (fixed)")
    ax.step(x, hard_topk_mask(SCORES, 2), where="mid", color="k", label="hard top-2 (inference)")
    ax.set(
        xlabel="document (by score)",
        ylabel="frequency / weight",
        title="stochastic vs deterministic selection",
    )
    ax.legend(fontsize=7)
    fig.tight_layout()
    path = OUT / "gumbel_vs_sigmoid.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


if __name__ == "__main__":
    OUT.mkdir(parents=True, exist_ok=True)
    for p in (analysis(), versus_sigmoid()):
        print(p)
