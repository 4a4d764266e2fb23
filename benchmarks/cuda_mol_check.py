"""MoL / RAILS on CUDA: the index gives the same results on the GPU as on the CPU, then the
strategies' recall and latency at N = 1,000,000 on the GPU (the paper's setting).

Run on a machine with a GPU: ``PYTHONPATH=. python benchmarks/cuda_mol_check.py [--profile]``
(torch only; FAISS is not needed: the first stage is the exact torch matmul; ``--profile`` also
prints where a ``TopKAvg(500)`` search spends its time). Writes ``results/cuda_mol.json``. Same synthetic data and head as ``bench_mol_scale.py``; the
"flat" baseline here is a plain torch matmul top-100 over the N x 64 mean item components.

Exit status 1 (after writing) when the CPU and GPU indexes disagree (``cpu_gpu_agree`` false):
for some strategy an id overlap below ``MIN_OVERLAP`` (ties aside, the ids are the same) or a
score difference above ``MAX_SCORE_DIFF`` (float32 rounding).
"""

from __future__ import annotations

import copy
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import Bar, best_time, check_bars, print_table, write_results
from bench_mol_scale import CLUSTERS, D_ITEM, Synthetic, head_config, train

from rag_relax_plugins.core.mol import MoLSimilarity
from rag_relax_plugins.index import (
    BruteForce,
    Combined,
    ExactTwoPass,
    MoLIndex,
    Strategy,
    TopKAvg,
    TopKPerEmbd,
)

MIN_OVERLAP = 0.99  # CPU vs GPU top-100 ids at N = 20k (near-ties may swap an item or two)
MAX_SCORE_DIFF = 1e-4  # CPU vs GPU scores (float32)


def build(sim: MoLSimilarity, items: torch.Tensor, device: str) -> MoLIndex:
    index = MoLIndex(copy.deepcopy(sim), first_stage="torch", device=device)
    for start in range(0, len(items), 250_000):
        stop = min(start + 250_000, len(items))
        index.add([str(i) for i in range(start, stop)], items[start:stop])
    return index


def profile(index: MoLIndex, queries: torch.Tensor) -> None:
    """Print where one ``TopKAvg(500)`` search spends its time (torch profiler, 3 searches):
    the operators by GPU time, then by CPU time (launch overhead and host-side work)."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    index.search(queries, 100, strategy=TopKAvg(500))
    torch.cuda.synchronize()
    with torch_profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        for _ in range(3):
            index.search(queries, 100, strategy=TopKAvg(500))
        torch.cuda.synchronize()
    for key in ("cuda_time_total", "cpu_time_total"):
        print(prof.key_averages().table(sort_by=key, row_limit=14, max_name_column_width=48))


def main() -> int:
    if not torch.cuda.is_available():
        raise SystemExit("no CUDA device")
    torch.manual_seed(0)
    data = Synthetic(0)
    sim = MoLSimilarity(head_config())
    train(sim, data, steps=150, batch=256)
    q, _ = data.queries(32)
    results: dict[str, object] = {}

    # 1. the same index on CPU and GPU: identical ids (ties aside), scores within float32 rounding
    small = data.items(torch.randint(0, CLUSTERS, (20_000,), generator=data.g))
    cpu, gpu = build(sim, small, "cpu"), build(sim, small, "cuda")
    rows: list[tuple[str, ...]] = []
    overlaps: list[float] = []
    diffs: list[float] = []
    small_cases: list[tuple[str, Strategy]] = [("BruteForce", BruteForce()), ("TopKAvg(500)", TopKAvg(500)),
                           ("TopKPerEmbd(200)", TopKPerEmbd(200)), ("ExactTwoPass(5000)", ExactTwoPass(5000))]
    for name, strategy in small_cases:
        s_cpu, i_cpu = cpu.search(q, 100, strategy=strategy)
        s_gpu, i_gpu = gpu.search(q.cuda(), 100, strategy=strategy)
        assert s_gpu.device.type == "cuda"
        same = sum(len(set(a) & set(b)) for a, b in zip(i_cpu, i_gpu, strict=True)) / (32 * 100)
        err = float((s_gpu.cpu() - s_cpu).abs().max())
        rows.append((name, f"{same:.4f}", f"{err:.1e}"))
        results[f"cpu_gpu_overlap_{name}"] = same
        results[f"cpu_gpu_max_score_diff_{name}"] = err
        overlaps.append(same)
        diffs.append(err)
    print_table(rows, ("strategy (N=20k)", "id overlap CPU vs GPU", "max |score diff|"))
    agreement = [Bar("CPU vs GPU id overlap (worst strategy)", min(overlaps), ">=", MIN_OVERLAP),
                 Bar("CPU vs GPU max |score diff| (worst strategy)", max(diffs), "<=", MAX_SCORE_DIFF)]
    results["cpu_gpu_agree"] = all(b.met for b in agreement)

    # 2. N = 1M on the GPU
    items = data.items(torch.randint(0, CLUSTERS, (1_000_000,), generator=data.g))
    index = build(sim, items, "cuda")
    qg = q.cuda()
    sync = torch.cuda.synchronize
    _, exact_ids = index.search(qg, 100, strategy=BruteForce())
    t_brute = best_time(lambda: index.search(qg, 100, strategy=BruteForce()), repeats=5, sync=sync)
    means = F.normalize(index.get_features([str(i) for i in range(1_000_000)]).cuda(), dim=-1)
    qm = F.normalize(qg.view(32, 2, D_ITEM).mean(dim=1), dim=-1)
    t_flat = best_time(lambda: torch.topk(qm @ means.T, 100, dim=1), repeats=10, sync=sync)
    rows = [("BruteForce", "1.0000", f"{t_brute * 1e3:.1f}", "1.0", f"{t_brute / t_flat:.2f}")]
    best: tuple[str, float, float] | None = None
    cases: list[tuple[str, Strategy]] = [("TopKAvg(500)", TopKAvg(500)), ("TopKAvg(1000)", TopKAvg(1000)),
                                         ("TopKPerEmbd(200)", TopKPerEmbd(200)), ("Combined(100, 500)", Combined(100, 500)),
                                         ("ExactTwoPass(20000)", ExactTwoPass(20000))]
    for name, strategy in cases:
        _, ids = index.search(qg, 100, strategy=strategy)
        recall = sum(len(set(a) & set(b)) for a, b in zip(ids, exact_ids, strict=True)) / (32 * 100)
        def run(s: Strategy = strategy) -> object:
            return index.search(qg, 100, strategy=s)

        t = best_time(run, repeats=5, sync=sync)
        rows.append((name, f"{recall:.4f}", f"{t * 1e3:.1f}", f"{t_brute / t:.1f}", f"{t / t_flat:.2f}"))
        results[f"gpu_{name}"] = {"relative_recall_at_100": recall, "ms": t * 1e3, "speedup_vs_bruteforce": t_brute / t}
        if recall >= 0.99 and (best is None or t < best[2]):
            best = (name, recall, t)
    print_table(rows, ("strategy (N=1M, B=32, K=100)", "rel. recall@100", "ms", "speedup vs brute", "ratio to matmul top-100"))
    results.update(gpu_bruteforce_ms=t_brute * 1e3, gpu_matmul_top100_ms=t_flat * 1e3)
    if best is not None:
        results.update(gpu_best_strategy=best[0], gpu_best_relative_recall=best[1],
                       gpu_best_speedup_vs_bruteforce=t_brute / best[2])
    if "--profile" in sys.argv[1:]:
        profile(index, qg)
    print(f"wrote {write_results('cuda_mol', results)}")
    return check_bars(agreement)


if __name__ == "__main__":
    raise SystemExit(main())
