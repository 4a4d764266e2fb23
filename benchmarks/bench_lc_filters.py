"""Filtered search in the LangChain MoL store, against langchain-core's ``InMemoryVectorStore``.

A callable filter (``filter=lambda doc: ...``) is evaluated on every stored document per query:
each gets a ``Document`` built for it, with a copy of its metadata so that the callable cannot
change the store (``InMemoryVectorStore``'s ``Document`` holds a shallow copy: nested values are
the stored ones). A dict
filter is evaluated on the stored metadata directly. This prints both against the same
callable filter in ``InMemoryVectorStore`` and the unfiltered search, for flat metadata
(strings and numbers only) and for metadata with a nested list.

Setup: ``N_DOCS`` (100,000) documents with random unit vectors (``DIM`` = 384, seeded), looked up
by text (no embedding model in the loop: ``bench_mol_adapters.LookupEmbeddings``), the store's
default exact search, ``k`` = 10; the filter matches about 1% (``topic == 3`` of 97 topics).
Medians of ``--repeats`` (9) queries per path, the paths interleaved query by query; one torch
thread.

Run: ``nice -n 10 .venv/bin/python benchmarks/bench_lc_filters.py`` (writes
``benchmarks/results/lc_filters.json``, or ``<--name>.json``; ``--no-write`` prints only). No
bar: a measurement of what a filter costs, for docs/mol_adapters.md. The figures before the
metadata copy was made cheaper: the same script run on the package of commit 7aa23ee
(``PYTHONPATH=<that package> ... --name lc_filters_deepcopy``).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import print_table, write_results
from bench_mol_adapters import LookupEmbeddings, Table
from langchain_core.vectorstores import InMemoryVectorStore

from rag_relax_plugins.langchain.vectorstore import MoLVectorStore

DIM, N_DOCS, K, TOPICS = 384, 100_000, 10, 97


def _metadata(i: int, nested: bool) -> dict[str, Any]:
    meta: dict[str, Any] = {"topic": i % TOPICS, "source": f"doc{i // 20}.txt", "page": i % 20}
    if nested:
        meta["tags"] = ["news", f"t{i % 7}"]
    return meta


def _stores(n: int, nested: bool) -> tuple[MoLVectorStore, InMemoryVectorStore, list[str]]:
    g = torch.Generator().manual_seed(0)
    vectors = torch.nn.functional.normalize(torch.randn(n + 20, DIM, generator=g), dim=1)
    texts = [f"passage {i}" for i in range(n)]
    queries = [f"question {j}" for j in range(20)]
    embeddings = LookupEmbeddings(Table(texts + queries, vectors))
    metas = [_metadata(i, nested) for i in range(n)]
    ids = [str(i) for i in range(n)]
    mol = MoLVectorStore(embeddings, device="cpu")
    memory = InMemoryVectorStore(embeddings)
    for s in range(0, n, 10_000):
        mol.add_texts(texts[s : s + 10_000], metas[s : s + 10_000], ids=list[str | None](ids[s : s + 10_000]))
        memory.add_texts(texts[s : s + 10_000], metas[s : s + 10_000], ids=ids[s : s + 10_000])
    return mol, memory, queries


def measure(n: int, nested: bool, repeats: int) -> dict[str, float]:
    """Median ms per query of each path."""
    mol, memory, queries = _stores(n, nested)

    def by_callable(doc: Any) -> bool:
        return bool(doc.metadata["topic"] == 3)

    paths: dict[str, Callable[[str], Any]] = {
        "mol_unfiltered": lambda q: mol.similarity_search(q, k=K),
        "mol_dict_filter": lambda q: mol.similarity_search(q, k=K, filter={"topic": 3}),
        "mol_callable_filter": lambda q: mol.similarity_search(q, k=K, filter=by_callable),
        "in_memory_callable_filter": lambda q: memory.similarity_search(q, k=K, filter=by_callable),
    }
    want = [d.id for d in memory.similarity_search(queries[0], k=K, filter=by_callable)]
    assert [d.id for d in mol.similarity_search(queries[0], k=K, filter=by_callable)] == want
    assert [d.id for d in mol.similarity_search(queries[0], k=K, filter={"topic": 3})] == want
    times: dict[str, list[float]] = {name: [] for name in paths}
    for j in range(repeats + 1):
        for name, fn in paths.items():
            t0 = time.perf_counter()
            fn(queries[j % len(queries)])
            if j:  # the first round warms up
                times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(ts) * 1e3 for name, ts in times.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--docs", type=int, default=N_DOCS)
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--name", default="lc_filters", help="results file name (benchmarks/results/<name>.json)")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    results: dict[str, Any] = {"n_docs": args.docs, "dim": DIM, "k": K, "repeats": args.repeats, "median_ms": {}}
    rows: list[list[str]] = []
    for nested in (False, True):
        label = "nested list" if nested else "flat"
        med = measure(args.docs, nested, args.repeats)
        results["median_ms"][label] = med
        base = med["in_memory_callable_filter"]
        rows.extend([label, name, f"{ms:.1f}", f"{ms / base:.2f}"] for name, ms in med.items())
    print(f"{args.docs:,} documents, dim {DIM}, k={K}, exact search, medians of {args.repeats} queries (ms)")
    print_table(rows, ["metadata", "path", "ms per query", "x InMemoryVectorStore callable"])
    if not args.no_write:
        import rag_relax_plugins.langchain._mol_checks as checks

        results["package"] = str(Path(checks.__file__).resolve().parents[2])  # which code was measured
        print(f"wrote {write_results(args.name, results)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
