"""InfoNCE under ``similarity="neg_l2"``: speed and precision of the direct-difference distances
``info_nce`` uses, against cdist's mm expansion ``|a|^2 + |b|^2 - 2 a.b`` and against that
expansion after shifting the batch to its mean ("centred"), in one run.

``neg_l2`` is the Gaussian embedder's default training loss (``geometry="euclidean"``). Session 17
switched it from the mm expansion (cdist's default above 25 rows) to the direct differences,
because the expansion cancels for large-norm embeddings in float32. This script measures what that
costs, in the loss and in a whole Gaussian training step, and what it buys; it is a report for that
choice, whose one bar is the reason for it: the direct path's logits stay within 1e-3 of float64
in every regime below (exit status 1 otherwise).

Run: ``.venv/bin/python benchmarks/bench_neg_l2.py [--device cuda] [--no-step]``. Writes
``benchmarks/results/neg_l2_<device type>.json`` (``neg_l2_cpu.json``, ``neg_l2_cuda.json``):

- ``time_ms``: best-of fwd+bwd time of the loss per case ``B{batch}_M{hard negatives}_D{dim}``,
  for ``direct`` (``info_nce`` itself), ``mm`` and ``centred`` (the same loss on either
  expansion) and ``dot`` (``info_nce(similarity="dot")``, the floor every similarity pays);
- ``direct_over_mm``: the time ratio per case (> 1: the direct path is slower);
- ``max_abs_logit_error``: the largest logit error against float64, over the logits within 30 of
  their row's largest (the rest are 0 in the softmax at any precision), in three regimes:
  ``gaussian_scale`` (norm about ``sqrt(D)``, the Gaussian embedder's ``target_std`` 1, its
  default temperature ``0.1 * D``), ``far_from_origin`` (the same batch shifted to norm about
  1,000) and ``near_duplicates`` (spread batch of norm about 160, positives 0.08 away,
  temperature 1e-3: the regression case of ``tests/core/test_core_edge_inputs.py``);
- ``gaussian_step_ms``: one default Gaussian training step (MiniLM backbone, batch 32, SIGReg),
  from ``train(...)["steps_per_second"]``, and ``loss_share_of_step``: the direct loss's
  ``B32_M0_D384`` time over it.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import Bar, best_time, check_bars, print_table, write_results

from rag_relax_plugins.core.contrastive import _sim, info_nce  # _sim: the logits info_nce uses

CASES = [(32, 0, 384), (128, 0, 384), (512, 0, 384), (32, 7, 384), (128, 3, 768)]  # (B, M, D)
TEMPERATURE = 38.4  # the Gaussian trainer's default for D = 384 (0.1 * D)


def _sq_dist(a: torch.Tensor, b: torch.Tensor, path: str) -> torch.Tensor:
    """``(len(a), len(b))`` squared distances by one of the three paths."""
    if path == "direct":
        return torch.cdist(a, b, compute_mode="donot_use_mm_for_euclid_dist").pow(2)
    if path == "mm":
        return torch.cdist(a, b, compute_mode="use_mm_for_euclid_dist").pow(2)
    mu = torch.cat([a, b]).mean(0).detach()  # centred: distances do not change under a shift
    a, b = a - mu, b - mu
    return (a * a).sum(-1)[:, None] + (b * b).sum(-1)[None, :] - 2 * (a @ b.T)


def _expansion_loss(q: torch.Tensor, docs: torch.Tensor, temperature: float, path: str) -> torch.Tensor:
    """``info_nce(neg_l2)``'s value with the distances of ``path`` (``"mm"`` or ``"centred"``)."""
    cand = docs.reshape(-1, docs.shape[-1])  # (B * (1 + M), D)
    per_row = 1 if docs.dim() == 2 else docs.shape[1]
    logits = -_sq_dist(q, cand, path) / temperature  # (B, B * (1 + M))
    return F.cross_entropy(logits, torch.arange(q.shape[0], device=q.device) * per_row)


def _inputs(b: int, m: int, d: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(b * 1_000 + m * 10 + d)
    q = torch.randn(b, d, generator=g)
    docs = q[:, None] + 0.5 * torch.randn(b, 1 + m, d, generator=g)  # (B, 1 + M, D)
    return q.to(device), (docs[:, 0] if m == 0 else docs).to(device)


def _timed(fn, q: torch.Tensor, docs: torch.Tensor, sync) -> float:  # type: ignore[no-untyped-def]
    q = q.clone().requires_grad_(True)
    docs = docs.clone().requires_grad_(True)

    def step() -> None:
        q.grad = docs.grad = None
        fn(q, docs).backward()

    return 1e3 * best_time(step, repeats=30, warmup=3, sync=sync)


def _regimes() -> dict[str, tuple[torch.Tensor, torch.Tensor, float]]:
    """float64 ``(queries, candidates, temperature)`` of the three precision regimes."""
    g = torch.Generator().manual_seed(0)
    q = torch.randn(128, 384, generator=g, dtype=torch.float64)
    d = q + 0.5 * torch.randn(128, 384, generator=g, dtype=torch.float64)
    far = 1000.0 / 384**0.5  # a shift of norm 1,000
    spread = torch.randn(32, 256, generator=g, dtype=torch.float64) * 10
    close = spread + 0.005 * torch.randn(32, 256, generator=g, dtype=torch.float64)
    return {"gaussian_scale": (q, d, TEMPERATURE), "far_from_origin": (q + far, d + far, TEMPERATURE),
            "near_duplicates": (spread, close, 1e-3)}


def _logit_errors(device: torch.device) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for regime, (q64, d64, temperature) in _regimes().items():
        exact = -_sq_dist(q64, d64, "direct") / temperature
        q, d = q64.to(device, torch.float32), d64.to(device, torch.float32)
        # entries within 30 of their row's largest logit: the others are 0 in the softmax at any precision
        counts = exact >= exact.max(dim=1, keepdim=True).values - 30.0  # (B, B)
        got = {"direct": _sim(q, d, "neg_l2"),  # the shipped code's logits (times temperature), not a copy
               "mm": -_sq_dist(q, d, "mm"), "centred": -_sq_dist(q, d, "centred")}
        out[regime] = {path: float((g.double().cpu() / temperature - exact)[counts].abs().max())
                       for path, g in got.items()}
    return out


def _gaussian_step_ms(device: torch.device) -> float:
    """Milliseconds per step of a default Gaussian run (MiniLM, batch 32), 4 steps after 1."""
    from rag_relax_plugins.training.gaussian_train import TrainConfig, train

    words = ["retrieval", "ranking", "gaussian", "embedding", "isotropy", "contrastive", "passage", "query", "answer", "model"]
    with tempfile.TemporaryDirectory() as tmp:
        rows = [{"query": " ".join(words[(i + j) % 10] for j in range(12)),
                 "positive": " ".join(words[(i * 3 + j) % 10] for j in range(48))} for i in range(160)]
        (Path(tmp) / "t.jsonl").write_text("\n".join(json.dumps(r) for r in rows), encoding="utf-8")
        cfg = TrainConfig(train_file=str(Path(tmp) / "t.jsonl"), output_dir=str(Path(tmp) / "run"), batch_size=32,
                          max_steps=5, show_progress=False, save_checkpoints=False, device=str(device))
        return 1e3 / float(train(cfg)["steps_per_second"])


def measure(device: torch.device, *, step: bool = True) -> dict[str, object]:
    sync = torch.cuda.synchronize if device.type == "cuda" else None
    time_ms: dict[str, dict[str, float]] = {}
    for b, m, d in CASES:
        q, docs = _inputs(b, m, d, device)
        time_ms[f"B{b}_M{m}_D{d}"] = {
            "direct": _timed(lambda x, y: info_nce(x, y, temperature=TEMPERATURE, similarity="neg_l2"), q, docs, sync),
            "mm": _timed(lambda x, y: _expansion_loss(x, y, TEMPERATURE, "mm"), q, docs, sync),
            "centred": _timed(lambda x, y: _expansion_loss(x, y, TEMPERATURE, "centred"), q, docs, sync),
            "dot": _timed(lambda x, y: info_nce(x, y, temperature=TEMPERATURE, similarity="dot"), q, docs, sync),
        }
    results: dict[str, object] = {
        "device": str(device), "threads": torch.get_num_threads(), "time_ms": time_ms,
        "direct_over_mm": {case: t["direct"] / t["mm"] for case, t in time_ms.items()},
        "max_abs_logit_error": _logit_errors(device),
    }
    if step:
        step_ms = _gaussian_step_ms(device)
        results["gaussian_step_ms"] = step_ms
        results["loss_share_of_step"] = time_ms["B32_M0_D384"]["direct"] / step_ms
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    parser.add_argument("--no-step", action="store_true", help="skip the Gaussian training step (no MiniLM needed)")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    results = measure(device, step=not args.no_step)
    times: dict[str, dict[str, float]] = results["time_ms"]  # type: ignore[assignment]
    ratios: dict[str, float] = results["direct_over_mm"]  # type: ignore[assignment]
    print_table([(case, *(f"{t[p]:.3f}" for p in ("direct", "mm", "centred", "dot")), f"{ratios[case]:.2f}x")
                 for case, t in times.items()],
                ("case (fwd+bwd)", "direct ms", "mm ms", "centred ms", "dot ms", "direct / mm"))
    print()
    errors: dict[str, dict[str, float]] = results["max_abs_logit_error"]  # type: ignore[assignment]
    print_table([(regime, *(f"{e[p]:.3g}" for p in ("direct", "mm", "centred"))) for regime, e in errors.items()],
                ("regime (max |logit error|)", "direct", "mm", "centred"))
    if "gaussian_step_ms" in results:
        print(f"\nGaussian training step (MiniLM, batch 32): {results['gaussian_step_ms']:.0f} ms; "
              f"the direct neg_l2 loss (B32_M0_D384) is {100 * results['loss_share_of_step']:.2f}% of it")  # type: ignore[operator]
    path = write_results(f"neg_l2_{device.type}", results)
    print(f"\nwrote {path}")
    # the reason the direct path is kept: its logits stay within 1e-3 of float64 in every regime
    return check_bars([Bar(f"direct neg_l2 logit error, {regime}", e["direct"], "<=", 1e-3)
                       for regime, e in errors.items()])


if __name__ == "__main__":
    raise SystemExit(main())
