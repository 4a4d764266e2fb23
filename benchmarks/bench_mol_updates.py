"""How the MoL index behaves under the updates a RAG app makes over time: per-operation latency
at growing store sizes.

The scale benchmark (``bench_mol_scale.py``) times search over a static 1M-item index; a vector
store also takes single adds, upserts and deletes between queries, and filtered searches. This
script times each at ``N`` = 10,000 and 100,000 items (``--sizes``) and prints the ratios that
show whether an operation's cost follows ``N`` where it should not:

- ``add 1 after a delete / add 1``: a delete must leave room for the next add (it once left an
  exact-size cache, and the next add copied all of it: 110 ms at 100k items against 1 ms);
- ``delete 1``, ``delete 100``: O(N) today (the caches are compacted), reported per N;
- ``search, 1-key dict filter / search``: the filter scans every item's metadata in Python;
- ``upsert 1 + approximate search / approximate search`` for the FAISS ``flat`` and ``ivf``
  first stages: an upsert or delete drops the FAISS first stage and the next approximate search
  rebuilds it (IVF: k-means again). This is the known cost of editing a FAISS-backed index
  (docs/mol.md, "Updates"); HNSW, whose rebuild is slower still, is timed only with ``--hnsw``.

Setup: random unit item vectors (``D`` = 384, seeded), the untrained cosine MoL head, metadata
``{"cat": i % 10, "src": "doc<i % 1000>"}`` (the filter ``{"cat": 3}`` matches 10%), ``k`` = 10,
one query, one torch thread. The single-item figures and the searches are medians of
``--repeats`` (15) timed calls (a deleted id is added again, untimed unless it is the ``add 1
after a delete`` figure); ``add 100`` / ``delete 100`` (100 ids spread across the index) are
medians of ``max(3, repeats // 3)`` calls, ``upsert 1 + search`` of 3 (each rebuilds the stage),
``build`` is one call.

Run: ``nice -n 10 .venv/bin/python benchmarks/bench_mol_updates.py`` (about 1 minute; writes
``benchmarks/results/mol_updates.json``). Checks (exit status 1 when missed): at every size, an add
right after a delete costs at most 3x a plain add (the regression this script was written for),
and a plain add at the largest size at most 3x one at the smallest. The other figures are
reported, not barred: no issue sets a bar on them.
"""

from __future__ import annotations

import argparse
import importlib
import statistics
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import Bar, check_bars, print_table, write_results

from rag_relax_plugins.core.mol import MoLSimilarity
from rag_relax_plugins.index import BruteForce, MoLIndex, TopKPerEmbd

DIM = 384
K = 10
ADD_AFTER_DELETE_BAR = 3.0
ADD_GROWTH_BAR = 3.0


def _median_ms(times: list[float]) -> float:
    return 1e3 * statistics.median(times)


def _timed(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _vectors(n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.nn.functional.normalize(torch.randn(n, DIM, generator=g), dim=1)


def _index(n: int, first_stage: str = "torch") -> MoLIndex:
    index = MoLIndex(MoLSimilarity.cosine(DIM), first_stage=first_stage)
    meta = [{"cat": i % 10, "src": f"doc{i % 1000}"} for i in range(n)]
    index.add([f"d{i}" for i in range(n)], _vectors(n, 0), meta)
    return index


def measure_updates(n: int, repeats: int) -> dict[str, float]:
    """Median latencies (ms) of single and batched updates and of searches, at ``n`` items."""
    index = _index(n)
    extra = _vectors(repeats + 100, 1)
    query = _vectors(1, 2)
    victims = [f"d{(j * 7919) % n}" for j in range(repeats)]
    add1, upsert1, delete1, add_after = [], [], [], []
    for j, victim in enumerate(victims):
        vector = extra[j : j + 1]
        add1.append(_timed(partial(index.add, [f"new{j}"], vector)))
        upsert1.append(_timed(partial(index.add, [victim], vector)))
        delete1.append(_timed(partial(index.delete, [victim])))
        add_after.append(_timed(partial(index.add, [victim], vector)))
    batch = [f"batch{j}" for j in range(100)]
    add100, delete100 = [], []
    for r in range(max(3, repeats // 3)):
        add100.append(_timed(partial(index.add, batch, extra[:100])))
        index.delete(batch)
        spread = list(dict.fromkeys(f"d{(r * 131 + j * (n // 100)) % n}" for j in range(100)))  # across the index
        delete100.append(_timed(partial(index.delete, spread)))
        index.add(spread, extra[: len(spread)])
    search = [_timed(lambda: index.search(query, K, strategy=BruteForce())) for _ in range(repeats)]
    filtered = [_timed(lambda: index.search(query, K, strategy=BruteForce(), filter={"cat": 3}))
                for _ in range(repeats)]
    two_keys = [_timed(lambda: index.search(query, K, strategy=BruteForce(), filter={"cat": 3, "src": "doc3"}))
                for _ in range(repeats)]
    return {
        "add_1_ms": _median_ms(add1),
        "add_100_ms": _median_ms(add100),
        "upsert_1_ms": _median_ms(upsert1),
        "delete_1_ms": _median_ms(delete1),
        "delete_100_ms": _median_ms(delete100),
        "add_1_after_delete_ms": _median_ms(add_after),
        "search_ms": _median_ms(search),
        "search_filter_1key_ms": _median_ms(filtered),
        "search_filter_2keys_ms": _median_ms(two_keys),
    }


def measure_first_stage(n: int, kind: str, repeats: int) -> dict[str, float]:
    """Approximate search (``TopKPerEmbd(100)`` over a FAISS first stage) steady, and right after
    an upsert (which drops the stage: the search rebuilds it)."""
    index = _index(n, first_stage=kind)
    query, extra = _vectors(1, 2), _vectors(repeats, 3)
    strategy = TopKPerEmbd(100)
    build = _timed(lambda: index.search(query, K, strategy=strategy))  # the first search builds
    steady = [_timed(lambda: index.search(query, K, strategy=strategy)) for _ in range(repeats)]
    after = []
    for j in range(min(repeats, 3)):  # each one rebuilds the whole stage
        index.add([f"d{j}"], extra[j : j + 1])
        after.append(_timed(lambda: index.search(query, K, strategy=strategy)))
    return {"build_ms": 1e3 * build, "search_ms": _median_ms(steady), "upsert_then_search_ms": _median_ms(after)}


def update_bars(updates: dict[str, dict[str, float]]) -> list[Bar]:
    """At every size, an add right after a delete within :data:`ADD_AFTER_DELETE_BAR` x a plain add;
    a plain add at the largest size within :data:`ADD_GROWTH_BAR` x one at the smallest (an add
    that became O(N) everywhere would pass the first bar)."""
    bars = [
        Bar(f"add 1 after a delete / add 1 at N={n}", u["add_1_after_delete_ms"] / u["add_1_ms"], "<=",
            ADD_AFTER_DELETE_BAR, "x")
        for n, u in updates.items()
    ]
    sizes = sorted(updates, key=int)
    if len(sizes) > 1:
        small, large = updates[sizes[0]], updates[sizes[-1]]
        bars.append(Bar(f"add 1 at N={sizes[-1]} / add 1 at N={sizes[0]}", large["add_1_ms"] / small["add_1_ms"],
                        "<=", ADD_GROWTH_BAR, "x"))
    return bars


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--stages", nargs="*", default=["flat", "ivf"], choices=["flat", "ivf", "hnsw"])
    parser.add_argument("--hnsw", action="store_true", help="also time the HNSW first stage (slow rebuilds)")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    if args.stages or args.hnsw:
        importlib.import_module("faiss")  # imported before the first timed build
    stages = [*args.stages, *(["hnsw"] if args.hnsw and "hnsw" not in args.stages else [])]
    results: dict[str, Any] = {"sizes": args.sizes, "dim": DIM, "k": K, "repeats": args.repeats, "updates": {},
                               "first_stage": {}}
    rows, stage_rows = [], []
    for n in args.sizes:
        u = measure_updates(n, args.repeats)
        results["updates"][str(n)] = u
        ratio = u["add_1_after_delete_ms"] / u["add_1_ms"]
        rows.append([f"{n:,}", f"{u['add_1_ms']:.2f}", f"{u['add_1_after_delete_ms']:.2f} ({ratio:.1f}x)",
                     f"{u['upsert_1_ms']:.2f}", f"{u['delete_1_ms']:.1f}", f"{u['delete_100_ms']:.1f}",
                     f"{u['add_100_ms']:.2f}", f"{u['search_ms']:.1f}",
                     f"{u['search_filter_1key_ms']:.1f} ({u['search_filter_1key_ms'] / u['search_ms']:.1f}x)",
                     f"{u['search_filter_2keys_ms']:.1f} ({u['search_filter_2keys_ms'] / u['search_ms']:.1f}x)"])
        for kind in stages:
            s = measure_first_stage(n, kind, args.repeats)
            results["first_stage"][f"{kind}_{n}"] = s
            stage_rows.append([kind, f"{n:,}", f"{s['build_ms']:.0f}", f"{s['search_ms']:.2f}",
                               f"{s['upsert_then_search_ms']:.0f} ({s['upsert_then_search_ms'] / s['search_ms']:.0f}x)"])
    print("MoL index updates (ms, medians; ratios in parentheses)")
    print_table(rows, ["N", "add 1", "add 1 after delete", "upsert 1", "delete 1", "delete 100", "add 100",
                       "search k=10", "search, 1-key filter", "search, 2-key filter"])
    if stage_rows:
        print("\nFAISS first stage, TopKPerEmbd(100): an upsert drops it, the next search rebuilds it (ms)")
        print_table(stage_rows, ["stage", "N", "build", "search", "upsert 1 + search"])
    if not args.no_write:
        print(f"\nwrote {write_results('mol_updates', results)}")
    return check_bars(update_bars(results["updates"]))


if __name__ == "__main__":
    raise SystemExit(main())
