"""Prove the CUDA path of the core ops: each op runs on the GPU, returns tensors on the GPU, and
matches the CPU result; then time a few GPU figures.

Run on a machine with a GPU (no install needed beyond torch and numpy):
``PYTHONPATH=. python benchmarks/cuda_check.py``. Writes results/cuda_check.json, then exits
with status 1 when an op fails or disagrees with the CPU (``all_ok`` false).
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import Bar, best_time, check_bars, print_table, write_results


def _cases() -> list[tuple[str, Callable[[torch.device], torch.Tensor]]]:
    from rag_relax_plugins.core import gumbel, maxsim, ranking_losses

    cases: list[tuple[str, Callable[[torch.device], torch.Tensor]]] = []

    def topk(dev: torch.device) -> torch.Tensor:
        s = torch.linspace(-2, 2, 64, dtype=torch.float64).view(4, 16).to(dev).requires_grad_()
        noise = torch.linspace(0, 1, 3 * 64, dtype=torch.float64).view(3, 4, 16).to(dev)
        out = gumbel.relaxed_topk(s, 3, mode="l2x", tau=0.5, noise=noise)
        out.pow(2).sum().backward()
        return torch.cat([out.detach().flatten(), s.grad.flatten()])  # type: ignore[union-attr]

    cases.append(("relaxed_topk l2x (+grad)", topk))

    def subset(dev: torch.device) -> torch.Tensor:
        s = torch.linspace(-2, 2, 64, dtype=torch.float64).view(4, 16).to(dev)
        noise = torch.linspace(0, 1, 64, dtype=torch.float64).view(4, 16).to(dev)
        return gumbel.relaxed_topk(s, 3, mode="subset", tau=0.5, noise=noise)

    cases.append(("relaxed_topk subset", subset))

    def ms(dev: torch.device) -> torch.Tensor:
        g = torch.Generator().manual_seed(0)
        q = torch.randn(2, 8, 16, generator=g, dtype=torch.float64).to(dev)
        d = torch.randn(10, 12, 16, generator=g, dtype=torch.float64).to(dev)
        m = (torch.rand(10, 12, generator=g) > 0.2).to(dev)
        return maxsim.maxsim(q, d, d_mask=m, similarity="cosine")

    cases.append(("maxsim padded", ms))

    def losses(dev: torch.device) -> torch.Tensor:
        g = torch.Generator().manual_seed(0)
        s = torch.randn(3, 7, generator=g, dtype=torch.float64).to(dev)
        r = torch.randint(0, 3, (3, 7), generator=g).to(torch.float64).to(dev)
        return torch.stack([ranking_losses.approx_ndcg_loss(s, r), ranking_losses.lambda_loss(s, r),
                            ranking_losses.neural_ndcg_loss(s, r), ranking_losses.list_net_loss(s, r)])

    cases.append(("ranking losses", losses))

    if importlib.util.find_spec("rag_relax_plugins.core.softsort") is not None:
        from rag_relax_plugins.core import softsort

        def sr(dev: torch.device) -> torch.Tensor:
            x = torch.linspace(-3, 3, 40, dtype=torch.float64).view(2, 20).flip(1).to(dev).requires_grad_()
            out = softsort.soft_rank(x, regularization_strength=0.5)
            out.pow(2).sum().backward()
            return torch.cat([out.detach().flatten(), x.grad.flatten()])  # type: ignore[union-attr]

        cases.append(("soft_rank (+grad)", sr))
    if importlib.util.find_spec("rag_relax_plugins.core.mol") is not None:
        cases.append(("MoL similarity", _mol_case))
    return cases


def _mol_case(dev: torch.device) -> torch.Tensor:
    from rag_relax_plugins.core import mol

    torch.manual_seed(0)
    cfg = mol.MoLConfig(query_dim=8, item_dim=8, num_query_embeddings=2, num_item_embeddings=2, component_dim=4)
    model = mol.MoLSimilarity(cfg).double().eval().to(dev)
    g = torch.Generator().manual_seed(1)
    q = torch.randn(3, 8, generator=g, dtype=torch.float64).to(dev)
    x = torch.randn(5, 8, generator=g, dtype=torch.float64).to(dev)
    scores, _ = model(q, x)
    return scores


def main() -> int:
    if not torch.cuda.is_available():
        raise SystemExit("no CUDA device")
    dev = torch.device("cuda")
    rows: list[tuple[str, ...]] = []
    results: dict[str, object] = {}
    for name, fn in _cases():
        try:
            torch.manual_seed(0)
            cpu = fn(torch.device("cpu"))
            torch.manual_seed(0)
            gpu = fn(dev)
            assert isinstance(gpu, torch.Tensor) and gpu.device.type == "cuda"
            err = float((gpu.detach().cpu() - cpu.detach()).abs().max())
            status = "ok" if err < 1e-8 else "MISMATCH"
        except Exception as exc:
            err, status = float("nan"), f"error: {exc}"
        rows.append((name, status, f"{err:.1e}"))
        results[f"cuda_{name.split()[0]}_{status == 'ok'}"] = err
    print_table(rows, ("op", "on CUDA", "max |gpu - cpu|"))

    from rag_relax_plugins.core.gumbel import relaxed_topk
    from rag_relax_plugins.core.maxsim import maxsim

    sync = torch.cuda.synchronize
    s = torch.randn(32, 1000, device=dev, requires_grad=True)

    def topk_step() -> None:
        relaxed_topk(s, 10, generator=torch.Generator(device=dev).manual_seed(0)).sum().backward()

    q = torch.randn(1, 32, 128, device=dev)
    d = torch.randn(1000, 180, 128, device=dev)
    results["gpu_relaxed_topk_ms_b32_n1000_k10"] = best_time(topk_step, repeats=20, warmup=3, sync=sync) * 1e3
    results["gpu_maxsim_ms_1x32_vs_1000x180"] = best_time(lambda: maxsim(q, d), repeats=20, warmup=3, sync=sync) * 1e3
    from rag_relax_plugins.core.softsort import soft_rank

    r = torch.randn(32, 1000, device=dev, requires_grad=True)
    results["gpu_soft_rank_ms_b32_n1000_fwd_bwd"] = (
        best_time(lambda: soft_rank(r).sum().backward(), repeats=20, warmup=3, sync=sync) * 1e3
    )
    all_ok = all(row[1] == "ok" for row in rows)
    results["all_ok"] = all_ok
    print(results)
    write_results("cuda_check", results)
    return check_bars([Bar("every core op on CUDA matches the CPU (all_ok)", float(all_ok), "==", 1)])


if __name__ == "__main__":
    raise SystemExit(main())
