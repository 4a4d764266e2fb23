"""MoL index edits on CUDA: the same adds, upserts, deletes, filtered searches and save / load on a
CPU index and on a CUDA index give the same results, for each first stage.

Run on a machine with a GPU: ``PYTHONPATH=. python benchmarks/cuda_mol_edits_check.py``
(torch; the FAISS stages ``flat``, ``ivf`` and ``hnsw`` are checked too when ``faiss`` imports,
else only the torch stage). ``--device cpu`` runs the same script with "cpu" as the second device
(a dry run of the script itself on a machine without a GPU). Writes
``results/cuda_mol_edits.json`` unless ``--no-write``; exit status 1 when a check fails.

Checks, after every step (build, upsert, delete, append, filtered searches, save / load both ways):
- the exact searches (``BruteForce``, ``ExactTwoPass``) agree across devices: top-20 id overlap
  >= ``MIN_OVERLAP`` (ties aside) and scores within ``MAX_SCORE_DIFF`` (float32 rounding);
- the approximate strategies agree as well over an exact first stage (torch, FAISS flat); over
  IVF and HNSW, whose FAISS builds see vectors computed on different devices, each device's
  recall against its own brute force is reported and must be within ``MAX_RECALL_GAP``;
- no deleted id is ever returned and every filtered result satisfies its filter;
- an index saved on one device and loaded on the other agrees with the other device's index, and
  one loaded back on its own device returns its ids and scores unchanged.
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import Bar, check_bars, print_table, write_results
from bench_mol_scale import CLUSTERS, Synthetic, head_config, train

from rag_relax_plugins.core.mol import MoLSimilarity
from rag_relax_plugins.index import (
    BruteForce,
    Combined,
    ExactTwoPass,
    FirstStageConfig,
    MoLIndex,
    Strategy,
    TopKAvg,
    TopKPerEmbd,
)

MIN_OVERLAP = 0.99  # top-20 ids across devices (near-ties may swap an item)
MAX_SCORE_DIFF = 1e-4  # float32 rounding of scores up to 1 / tau = 20
MAX_RECALL_GAP = 0.05  # IVF / HNSW: |recall on CPU - recall on the other device|
K, B, N = 20, 16, 6_000
STRATEGIES: list[tuple[str, Strategy]] = [
    ("BruteForce", BruteForce()), ("ExactTwoPass", ExactTwoPass(2_000)), ("TopKAvg", TopKAvg(200)),
    ("TopKPerEmbd", TopKPerEmbd(100)), ("Combined", Combined(50, 200)),
]
EXACT = ("BruteForce", "ExactTwoPass")


def overlap(a: list[list[str]], b: list[list[str]]) -> float:
    total = sum(max(len(x), len(y)) for x, y in zip(a, b, strict=True))
    return sum(len(set(x) & set(y)) for x, y in zip(a, b, strict=True)) / max(total, 1)


class Pair:
    """A CPU index and the same index on ``device``, edited in step; collects check rows."""

    def __init__(self, sim: MoLSimilarity, stage: str, device: str, cache_dtype: str) -> None:
        def make(dev: str) -> MoLIndex:
            config = FirstStageConfig(kind=stage, ivf_nprobe=64)  # type: ignore[arg-type]
            index = MoLIndex(copy.deepcopy(sim), first_stage=config, device=dev, cache_dtype=cache_dtype)
            index.exact_filter_threshold = 500  # filtered subsets go through the strategies' masks
            return index

        self.cpu, self.dev = make("cpu"), make(device)
        self.name = f"{stage}/{cache_dtype}"
        self.approx_exact = stage in ("torch", "flat")
        self.tol = MAX_SCORE_DIFF if cache_dtype == "fp32" else 0.15  # bf16 / fp16 components
        self.rows: list[tuple[str, ...]] = []
        self.failures: list[str] = []
        self.deleted: set[str] = set()

    def apply(self, fn_name: str, *args: object, **kwargs: object) -> None:
        for index in (self.cpu, self.dev):
            getattr(index, fn_name)(*args, **kwargs)

    def compare(self, step: str, q: torch.Tensor, flt: object = None, ok: object = None,
                cpu: MoLIndex | None = None, dev: MoLIndex | None = None) -> None:
        cpu, dev = cpu or self.cpu, dev or self.dev
        exact_ids: dict[str, list[list[str]]] = {}
        for name, strategy in STRATEGIES:
            s_c, i_c = cpu.search(q, K, strategy=strategy, filter=flt)  # type: ignore[arg-type]
            s_d, i_d = dev.search(q.to(dev.device), K, strategy=strategy, filter=flt)  # type: ignore[arg-type]
            if s_d.device.type != dev.device.type:
                self.failures.append(f"{self.name} {step} {name}: scores on {s_d.device}")
            for index, results in ((cpu, i_c), (dev, i_d)):
                for b, ids in enumerate(results):  # b: the query, whose own filter ``ok`` checks
                    if self.deleted & set(ids):
                        self.failures.append(f"{self.name} {step} {name}: deleted id returned")
                    metas = index.get_metadata(ids)
                    if ok is not None and not all(ok(b, i, m) for i, m in zip(ids, metas, strict=True)):  # type: ignore[operator]
                        self.failures.append(f"{self.name} {step} {name}: a result fails its query's filter")
            if name == "BruteForce":
                exact_ids = {"cpu": i_c, "dev": i_d}
            if name in EXACT or self.approx_exact:
                same = overlap(i_c, i_d)
                finite = torch.isfinite(s_c)
                err = float((s_d.cpu()[finite] - s_c[finite]).abs().max()) if finite.any() else 0.0
                self.rows.append((self.name, step, name, f"{same:.4f}", f"{err:.1e}", "-"))
                if same < MIN_OVERLAP or err > self.tol:
                    self.failures.append(f"{self.name} {step} {name}: overlap {same:.4f}, score diff {err:.1e}")
            else:
                r_c, r_d = overlap(i_c, exact_ids["cpu"]), overlap(i_d, exact_ids["dev"])
                self.rows.append((self.name, step, name, "-", "-", f"{r_c:.3f} / {r_d:.3f}"))
                if abs(r_c - r_d) > MAX_RECALL_GAP:
                    self.failures.append(f"{self.name} {step} {name}: recall {r_c:.3f} vs {r_d:.3f}")


def summary(rows: list[tuple[str, ...]]) -> list[tuple[str, ...]]:
    """One line per (case, step): the worst figures over its strategies (all are in the JSON)."""
    out: dict[tuple[str, str], list[tuple[str, ...]]] = {}
    for r in rows:
        out.setdefault((r[0], r[1]), []).append(r)

    def worst(values: list[str], largest: bool) -> str:
        kept = sorted((v for v in values if v != "-"), key=float)
        return (kept[-1] if largest else kept[0]) if kept else "-"

    lines: list[tuple[str, ...]] = []
    for (case, step), rs in out.items():
        recalls = [r[5] for r in rs if r[5] != "-"]
        recall = min(recalls, key=lambda v: min(float(x) for x in v.split(" / "))) if recalls else "-"
        lines.append((case, step, worst([r[3] for r in rs], False), worst([r[4] for r in rs], True), recall))
    return lines


def run_pair(sim: MoLSimilarity, data: Synthetic, stage: str, device: str, cache_dtype: str) -> Pair:
    pair = Pair(sim, stage, device, cache_dtype)
    g = torch.Generator().manual_seed(7)
    items = data.items(torch.randint(0, CLUSTERS, (N,), generator=data.g))
    ids = [f"d{i}" for i in range(N)]
    meta = [{"shard": i % 4, "even": i // 4 % 2 == 0} for i in range(N)]  # independent keys
    pair.apply("add", ids, items, metadata=meta)
    q, _ = data.queries(B)
    if stage != "torch":
        pair.apply("build")  # the FAISS stages exist before the edits, so the edits update them
    pair.compare("built", q)

    up = torch.randperm(N, generator=g)[:600].tolist()
    moved = data.items(torch.randint(0, CLUSTERS, (len(up),), generator=data.g))
    pair.apply("add", [ids[i] for i in up], moved, metadata=[meta[i] for i in up])
    pair.compare("upsert 600", q)

    gone = [ids[i] for i in torch.randperm(N, generator=g)[:450].tolist()]
    pair.apply("delete", gone)
    pair.deleted = set(gone)
    pair.compare("delete 450", q)

    new = [f"n{i}" for i in range(300)]
    pair.apply("add", new, data.items(torch.randint(0, CLUSTERS, (300,), generator=data.g)),
               metadata=[{"shard": i % 4, "even": True} for i in range(300)])
    pair.compare("append 300", q)

    # every filter leaves more than exact_filter_threshold (500) items: they go through the masks
    pair.compare("filter 1 key", q, {"shard": 2}, lambda b, i, m: m["shard"] == 2)
    pair.compare("filter 2 keys", q, {"shard": 1, "even": True}, lambda b, i, m: m == {"shard": 1, "even": True})
    pair.compare("filter callable", q, lambda m: m["shard"] != 3, lambda b, i, m: m["shard"] != 3)
    subset = pair.cpu.ids[::3]
    allowed = set(subset)
    pair.compare("filter id list", q, subset, lambda b, i, m: i in allowed)
    other = pair.cpu.ids[1::3]
    per_query = [subset if j % 2 else other for j in range(B)]  # two groups of queries
    own = [set(ids) for ids in per_query]
    pair.compare("filter per query", q, per_query, lambda b, i, m: i in own[b])

    with tempfile.TemporaryDirectory() as tmp:
        pair.cpu.save(Path(tmp, "cpu"))
        pair.dev.save(Path(tmp, "dev"))
        dev_on_cpu = MoLIndex.load(Path(tmp, "dev"), device="cpu")
        cpu_on_dev = MoLIndex.load(Path(tmp, "cpu"), device=device)
        pair.compare("saved on dev, loaded on cpu", q, dev=dev_on_cpu, cpu=pair.cpu)
        pair.compare("saved on cpu, loaded on dev", q, cpu=pair.cpu, dev=cpu_on_dev)
        again = MoLIndex.load(Path(tmp, "dev"), device=device)
        for name, strategy in STRATEGIES:
            s0, i0 = pair.dev.search(q.to(device), K, strategy=strategy)
            s1, i1 = again.search(q.to(device), K, strategy=strategy)
            diff = float((s0 - s1).abs().max())
            pair.rows.append((pair.name, "reloaded on dev", name, f"{overlap(i0, i1):.4f}", f"{diff:.1e}", "-"))
            if i0 != i1 or diff > 1e-6:
                pair.failures.append(f"{pair.name} reload {name}: ids equal {i0 == i1}, score diff {diff:.1e}")
    return pair


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", help="the second device (default cuda)")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("no CUDA device (use --device cpu for a dry run)")
    torch.manual_seed(0)
    data = Synthetic(0)
    sim = MoLSimilarity(head_config())
    train(sim, data, steps=60, batch=256)
    stages = ["torch"] + (["flat", "ivf", "hnsw"] if importlib.util.find_spec("faiss") else [])
    cases = [(s, "fp32") for s in stages] + [("torch", "bf16")]
    pairs = [run_pair(sim, data, s, args.device, d) for s, d in cases]
    rows = [r for p in pairs for r in p.rows]
    print_table(summary(rows), ("stage/cache", "step", f"worst id overlap cpu vs {args.device}",
                                "worst |score diff|", "approx. recall cpu / dev (worst)"))
    failures = [f for p in pairs for f in p.failures]
    for f in failures:
        print("FAILED:", f)
    if not args.no_write:
        results = {"device": args.device, "stages": stages, "cases": [p.name for p in pairs],
                   "checks": len(rows), "failures": failures,
                   "rows": [dict(zip(("case", "step", "strategy", "overlap", "score_diff", "recall"), r, strict=True))
                            for r in rows]}
        print(f"wrote {write_results('cuda_mol_edits', results)}")
    return check_bars([Bar("failed checks (CPU vs device, deleted ids, filters, reload)", len(failures), "<=", 0)])


if __name__ == "__main__":
    raise SystemExit(main())
