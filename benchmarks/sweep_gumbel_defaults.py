"""Sweep of the Gumbel reranker's temperature ``tau`` and scale ``kappa`` (sets DEFAULT_TAU/KAPPA).

Part 1 (always, seconds on a CPU): for each ``(tau, kappa)`` the relaxed ``l2x`` top-2 mask of
score vectors like the untrained scorer's (N=10, scores ~ N(0, sigma^2)) is sampled many times and
summarised: mask entropy (normalised mask, in nats; high = exploration), agreement of the
mask's top-2 with the hard top-2 of the scores (exploitation), mask mass ``sum(m)`` and the
relative gradient variance of a linear objective ``sum(m * r)`` w.r.t. the scores (noise of the
estimator).

Part 2 (``--train``, a GPU advised): a short G-Rerank run per ``(tau, kappa)`` on the first
``--train-rows`` training rows, Recall@2 on the 100 test rows. The best Recall@2 is written as
``best`` and used as the library default.

    .venv/bin/python benchmarks/sweep_gumbel_defaults.py
    .venv/bin/python benchmarks/sweep_gumbel_defaults.py --train --train-rows 160 --device cuda
"""

from __future__ import annotations

import argparse
import itertools
import math
from typing import Any

import torch
from _common import print_table, write_results

from rag_relax_plugins.core.gumbel import hard_topk_mask, relaxed_topk

TAUS = (0.1, 0.25, 0.5, 1.0, 2.0)
KAPPAS = (0.5, 1.0, 2.0, 4.0, 8.0)


def mask_stats(
    tau: float, kappa: float, *, sigma: float, draws: int = 100, n: int = 10, k: int = 2
) -> dict[str, float]:
    """Statistics of the l2x mask over ``draws`` noise samples for 32 random score vectors."""
    gen = torch.Generator().manual_seed(0)
    scores = torch.randn(32, n, generator=gen, dtype=torch.float64) * sigma  # (S, N)
    r = torch.randn(32, n, generator=gen, dtype=torch.float64)  # linear objective weights
    hard = hard_topk_mask(scores, k)
    ent, agree, mass, grads = [], [], [], []
    for _ in range(draws):
        s = scores.clone().requires_grad_(True)
        m = relaxed_topk(s, k, mode="l2x", tau=tau, kappa=kappa, generator=gen)  # (S, N)
        p = m / m.sum(dim=1, keepdim=True)
        pd, md = p.detach(), m.detach()
        ent.append(float(-(pd * pd.clamp_min(1e-12).log()).sum(dim=1).mean()))
        agree.append(float((hard_topk_mask(md, k) * hard).sum(dim=1).mean() / k))
        mass.append(float(md.sum(dim=1).mean()))
        (g,) = torch.autograd.grad((m * r).sum(), s)
        grads.append(g)
    gs = torch.stack(grads)  # (draws, S, N)
    rel_var = float(
        (gs.var(dim=0).sum(dim=-1) / gs.mean(dim=0).pow(2).sum(dim=-1).clamp_min(1e-12)).median()
    )
    return {
        "entropy": sum(ent) / draws,
        "max_entropy": math.log(n),
        "agreement_with_hard_top2": sum(agree) / draws,
        "mask_mass": sum(mass) / draws,
        "grad_rel_variance": rel_var,
    }


def train_sweep(args: argparse.Namespace, taus: list[float], kappas: list[float]) -> dict[str, Any]:
    from rag_relax_plugins.datasets.hotpotqa import load_hotpotqa_distractor
    from rag_relax_plugins.readers.causal_lm import CausalLMReader
    from rag_relax_plugins.rerankers.gumbel import GumbelReranker
    from rag_relax_plugins.training.grerank import GRerankConfig, train_grerank
    from rag_relax_plugins.training.grerank_eval import evaluate_reranker, hotpot_split

    train, test = hotpot_split(load_hotpotqa_distractor(), 400)
    train = train[: args.train_rows]
    reader = CausalLMReader(
        args.reader_path, device=args.device, doc_tokens=48, variant=args.variant
    )
    out: dict[str, Any] = {}
    for tau, kappa in itertools.product(taus, kappas):
        r = GumbelReranker(
            "cross",
            backbone=args.backbone,
            max_length=128,
            tau=tau,
            kappa=kappa,
            device=args.device,
        )
        cfg = GRerankConfig(
            output_dir=f"{args.runs}/tau{tau}_kappa{kappa}",
            epochs=1,
            tau=tau,
            kappa=kappa,
            device=args.device,
            grad_accum_steps=4,
            save_every_steps=10_000,
            show_progress=False,
            variant=args.variant,
        )
        res = train_grerank(cfg, examples=train, reranker=r, reader=reader)
        ev = evaluate_reranker(r, test)
        out[f"tau={tau},kappa={kappa}"] = {
            "tau": tau,
            "kappa": kappa,
            "recall@2": ev["all"]["recall@2"],
            "recall@5": ev["all"]["recall@5"],
            "final_loss": res.history["loss"][-1],
        }
    best = max(out.values(), key=lambda v: v["recall@2"])
    return {
        "runs": out,
        "best": {"tau": best["tau"], "kappa": best["kappa"], "recall@2": best["recall@2"]},
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sigma", type=float, default=1.0, help="std of the synthetic scores")
    ap.add_argument("--draws", type=int, default=100, help="noise draws per (tau, kappa)")
    ap.add_argument("--train", action="store_true")
    ap.add_argument("--train-rows", type=int, default=160)
    ap.add_argument("--taus", default="0.25,0.5,1.0")
    ap.add_argument("--kappas", default="1.0,4.0")
    ap.add_argument("--variant", default="independent", choices=["independent", "concatenated"])
    ap.add_argument("--backbone", default=None)
    ap.add_argument("--reader-path", default=None)
    ap.add_argument("--device", default=None)
    ap.add_argument("--runs", default="runs/sweep")
    args = ap.parse_args()
    stats = {
        f"tau={t},kappa={k}": {
            "tau": t,
            "kappa": k,
            **mask_stats(t, k, sigma=args.sigma, draws=args.draws),
        }
        for t in TAUS
        for k in KAPPAS
    }
    print_table(
        [
            (
                f"{v['tau']}",
                f"{v['kappa']}",
                f"{v['entropy']:.3f}",
                f"{v['agreement_with_hard_top2']:.3f}",
                f"{v['mask_mass']:.2f}",
                f"{v['grad_rel_variance']:.2f}",
            )
            for v in stats.values()
        ],
        ("tau", "kappa", "entropy", "agree top2", "mass", "grad rel var"),
    )
    result: dict[str, Any] = {"sigma": args.sigma, "draws": args.draws, "mask_stats": stats}
    if args.train:
        taus = [float(x) for x in args.taus.split(",")]
        kappas = [float(x) for x in args.kappas.split(",")]
        result["training"] = train_sweep(args, taus, kappas)
        print_table(
            [
                (k, f"{v['recall@2']:.3f}", f"{v['recall@5']:.3f}")
                for k, v in result["training"]["runs"].items()
            ],
            ("config", "R@2", "R@5"),
        )
        print("best", result["training"]["best"])
    print(write_results("gumbel_sweep", result))


if __name__ == "__main__":
    main()
