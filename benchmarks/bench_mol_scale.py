"""RAILS retrieval at scale: MoL strategies vs BruteForce MoL vs a plain FAISS flat top-100.

Synthetic but realistic: items are noisy members of 4,096 clusters in R^64; a query is a user
with two interests (two cluster centres, one per 64-d slot of a 128-d feature) whose positives
come from either interest. A MoL head (P_q x P_x = 4 x 4, d_P = 64) is trained briefly on this
data (in-batch softmax + the MI load-balancing loss) so that the gate is learned, then N items
are indexed and B = 32 queries retrieve K = 100.

Reported per strategy: recall@100 relative to BruteForce MoL, latency, speedup vs BruteForce and
ratio to FAISS ``IndexFlatIP`` top-100 over the N x 64 mean item components (same queries).
Every MoL row (BruteForce and ExactTwoPass included) is timed the same way: one warm-up call,
then the best of two calls, in each interleaved round; the FAISS flat baseline the best of three
(favouring the baseline).

Bars (issue 3, defined on N = 1,000,000 and K = 100; a smaller run checks none of these): the
best approximate strategy (of those with relative recall@100 >= 0.99 the one with the highest
worst-round speedup, else the one with the highest recall) has relative recall@100 >= 0.99, is >= 50x faster than BruteForce and <= 1.5x
FAISS flat (worst round). At any size: ExactTwoPass equals BruteForce (relative recall 1, scores
within 1e-4). The figures are written first; the exit status is 1 when a bar is missed.

    nice -n 10 .venv/bin/python benchmarks/bench_mol_scale.py            # N = 1,000,000
    .venv/bin/python benchmarks/bench_mol_scale.py --n 100000 --steps 100 --no-write   # quick look

Only a run at the bars' setting (N = 1M, K = 100, 32 queries, >= 2 rounds) writes mol.json; any
other run needs ``--no-write`` (it exits 2 without writing otherwise).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from _common import RESULTS, Bar, best_time, check_bars, machine, print_table, today

from rag_relax_plugins.core.mol import MoLConfig, MoLSimilarity
from rag_relax_plugins.index import (
    BruteForce,
    Combined,
    ExactTwoPass,
    FirstStageConfig,
    MoLIndex,
    TopKAvg,
    TopKPerEmbd,
)

D_ITEM, D_QUERY, CLUSTERS = 64, 128, 4096
BAR_N, BAR_K, BAR_QUERIES = 1_000_000, 100, 32  # the setting the bars are defined on


def off_bar_setting(n: int, k: int, queries: int, rounds: int) -> str | None:
    """Why a run is not at the bars' setting (its figures are then not the figures of record), or None."""
    if (n, k, queries) != (BAR_N, BAR_K, BAR_QUERIES):
        return (f"the bars are defined on N = {BAR_N:,}, K = {BAR_K}, {BAR_QUERIES} queries; "
                f"this run: N = {n:,}, K = {k}, {queries} queries")
    if rounds < 2:
        return f"the recorded figures are the worst of at least 2 timing rounds; this run: {rounds}"
    return None
EXACT = "ExactTwoPass(20000)"


class Synthetic:
    """Seeded generator of clustered items and two-interest queries."""

    def __init__(self, seed: int) -> None:
        self.g = torch.Generator().manual_seed(seed)
        self.centres = F.normalize(torch.randn(CLUSTERS, D_ITEM, generator=self.g), dim=-1)

    def items(self, clusters: torch.Tensor) -> torch.Tensor:
        noise = 0.35 * torch.randn(len(clusters), D_ITEM, generator=self.g) / D_ITEM**0.5
        return self.centres[clusters] + noise

    def queries(self, b: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``(B, 128)`` query features and the ``(B,)`` cluster of a positive item."""
        interests = torch.randint(0, CLUSTERS, (b, 2), generator=self.g)
        weight = 0.5 + torch.rand(b, 2, generator=self.g)  # interests of unequal strength
        noise = 0.35 * torch.randn(b, 2, D_ITEM, generator=self.g) / D_ITEM**0.5
        q = (self.centres[interests] + noise) * weight.unsqueeze(-1)
        pick = torch.randint(0, 2, (b,), generator=self.g)
        return q.reshape(b, D_QUERY), interests[torch.arange(b), pick]


def head_config() -> MoLConfig:
    """The issue's MoL head: P_q x P_x = 4 x 4, d_P = 64 (also the CUDA checks' head)."""
    return MoLConfig(query_dim=D_QUERY, item_dim=D_ITEM, num_query_embeddings=4, num_item_embeddings=4,
                     component_dim=64, tau=0.05, gate_hidden_dim=64, softmax_dropout=0.1)


def train(sim: MoLSimilarity, data: Synthetic, steps: int, batch: int) -> float:
    opt = torch.optim.Adam(sim.parameters(), lr=3e-3)
    sim.train()
    t0 = time.perf_counter()
    for _ in range(steps):
        q, pos_cluster = data.queries(batch)
        x = data.items(pos_cluster)
        scores, aux = sim(q, x)
        loss = F.cross_entropy(scores, torch.arange(batch)) + sum(aux.values())
        opt.zero_grad()
        loss.backward()
        opt.step()
    sim.eval()
    return time.perf_counter() - t0


def best_approximate(results: dict[str, dict[str, float]]) -> str:
    """Name of the best approximate strategy in ``results`` (``{name: {"recall", "ms", ...}}``).

    Among those with relative recall@100 >= 0.99, the one with the highest worst-round speedup
    over BruteForce (the figure the bars check; then the lower best latency): picked by the best
    round's latency, a strategy slowed in one round could miss the speed bar another one met. When
    none reaches the recall, the one with the highest recall (whose recall bar is then missed).
    BruteForce and ExactTwoPass are exact.
    """
    approx = {n: r for n, r in results.items() if n not in ("BruteForce", EXACT)}
    ok = {n: r for n, r in approx.items() if r["recall"] >= 0.99}
    if ok:
        return max(ok, key=lambda n: (ok[n].get("speedup", 0.0), -ok[n]["ms"]))
    return max(approx, key=lambda n: approx[n]["recall"])


def worst_round(rounds: list[tuple[float, float, dict[str, float]]], name: str) -> tuple[float, float]:
    """(smallest BruteForce / strategy speedup, largest strategy / FAISS flat ratio) over rounds of
    ``(bruteforce_s, flat_s, {strategy: s})``: each ratio within one round, the worse round kept."""
    speedup = min(bf / times[name] for bf, _, times in rounds)
    to_flat = max(times[name] / flat for _, flat, times in rounds)
    return speedup, to_flat


def scale_bars(best: dict[str, float]) -> list[Bar]:
    """Issue 3's bars on the best approximate strategy's figures (``recall``, ``speedup``, ...)."""
    return [
        Bar("best strategy relative recall@100", best["recall"], ">=", 0.99),
        Bar("best strategy speedup vs BruteForce (worst round)", best["speedup"], ">=", 50, "x"),
        Bar("best strategy ratio to FAISS flat (worst round)", best["ratio_to_flat"], "<=", 1.5, "x"),
    ]


def exactness_bars(exact_recall: float, max_score_diff: float) -> list[Bar]:
    """The exact algorithm must equal BruteForce: every id (relative recall 1) and every score to
    float32 rounding (scores are logits / tau, up to ~1 / tau = 20 here)."""
    return [
        Bar("ExactTwoPass relative recall@100 (exact)", exact_recall, ">=", 1.0),
        Bar("ExactTwoPass max |score - BruteForce score|", max_score_diff, "<=", 1e-4),
    ]


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--queries", type=int, default=32)
    ap.add_argument("--k", type=int, default=100)
    ap.add_argument("--steps", type=int, default=150)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--nlist", type=int, default=1024)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--rounds", type=int, default=2, help="interleaved timing rounds")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    torch.manual_seed(args.seed)
    data = Synthetic(args.seed)
    sim = MoLSimilarity(head_config())
    train_s = train(sim, data, args.steps, batch=args.batch)
    print(f"trained {args.steps} steps in {train_s:.1f} s", flush=True)

    first = FirstStageConfig(kind="ivf", ivf_nlist=args.nlist, ivf_nprobe=16, seed=args.seed)
    index = MoLIndex(sim, first_stage=first, device="cpu")
    clusters = torch.randint(0, CLUSTERS, (args.n,), generator=data.g)
    t0 = time.perf_counter()
    for start in range(0, args.n, 250_000):
        sl = slice(start, start + 250_000)
        index.add([str(i) for i in range(sl.start, min(sl.stop, args.n))], data.items(clusters[sl]))
    add_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    index.build(["avg"])  # the per-component first stage is built at its first use
    build_s = time.perf_counter() - t0
    print(
        f"indexed {args.n:,} items in {add_s:.1f} s, IVF first stage over means built in {build_s:.1f} s",
        flush=True,
    )
    q, _ = data.queries(args.queries)
    k = args.k

    import faiss

    means = index.item_state.components.mean(dim=1).numpy()
    flat = faiss.IndexFlatIP(means.shape[1])
    flat.add(means)
    qmean = sim.encode_queries(q).components.mean(dim=1).detach().numpy()

    ref_scores, ref_ids = index.search(q, k, strategy=BruteForce())
    ref_sets = [set(r) for r in ref_ids]

    def recall(ids: list[list[str]]) -> float:
        return sum(len(a & set(b)) for a, b in zip(ref_sets, ids, strict=True)) / (k * len(ids))

    candidates: list[tuple[str, object, int]] = [
        ("TopKAvg(500) nprobe=32", TopKAvg(500), 32),
        ("TopKAvg(500) nprobe=64", TopKAvg(500), 64),
        ("TopKAvg(1000) nprobe=64", TopKAvg(1000), 64),
        ("TopKAvg(500) nprobe=128", TopKAvg(500), 128),
        ("TopKPerEmbd(200) nprobe=32", TopKPerEmbd(200), 32),
        ("Combined(100,500) nprobe=64", Combined(100, 500), 64),
    ]
    recalls: dict[str, float] = {}
    for name, strategy, nprobe in candidates:  # recall is deterministic; this also warms up
        index.configure_first_stage(ivf_nprobe=nprobe)
        recalls[name] = recall(index.search(q, k, strategy=strategy)[1])  # type: ignore[arg-type]
        print(f"{name}: recall {recalls[name]:.4f}", flush=True)

    # the exact algorithm: recall once (this also warms it up); timed in the rounds like the others
    exact_nprobe = 64  # its first stage only seeds the threshold; the setting the earlier runs had
    index.configure_first_stage(ivf_nprobe=exact_nprobe)
    exact_scores, exact_ids = index.search(q, k, strategy=ExactTwoPass(20_000))
    exact_rec = recall(exact_ids)
    timed = [*candidates, (EXACT, ExactTwoPass(20_000), exact_nprobe)]

    # Timing in interleaved rounds: BruteForce, FAISS flat, every strategy and ExactTwoPass are
    # timed close together in each round (BruteForce first in even rounds, last in odd ones), so
    # a change of the shared machine's load between rounds does not bias a ratio. Every row is
    # timed alike: one warm-up call, then the best of 2 (BruteForce: ~2.2 s a call at N = 1M); the
    # FAISS flat baseline the best of 3.
    # Reported: the best latency over rounds, the *smallest* per-round speedup and the *largest*
    # per-round ratio to flat.
    def bf_time() -> float:
        return best_time(lambda: index.search(q, k, strategy=BruteForce()), repeats=2)

    rounds: list[tuple[float, float, dict[str, float]]] = []
    for r in range(args.rounds):
        t_bf = bf_time() if r % 2 == 0 else 0.0
        t_flat = best_time(lambda: flat.search(qmean, k), repeats=3)
        t: dict[str, float] = {}
        for name, strategy, nprobe in timed:
            index.configure_first_stage(ivf_nprobe=nprobe)
            t[name] = best_time(lambda s=strategy: index.search(q, k, strategy=s), repeats=2)  # type: ignore[misc]
        t_bf = t_bf or bf_time()
        rounds.append((t_bf, t_flat, t))
        print(f"round {r}: BruteForce {t_bf * 1e3:.0f} ms, flat {t_flat * 1e3:.0f} ms", flush=True)
    bf_s = min(r[0] for r in rounds)
    flat_s = min(r[1] for r in rounds)
    # the reference rows per round too, the worse round kept, as every strategy's
    bf_to_flat = max(bf / flat for bf, flat, _ in rounds)
    rows: list[tuple[str, ...]] = [
        ("BruteForce", "1.0000", f"{bf_s * 1e3:.1f}", "1.0", f"{bf_to_flat:.2f}")
    ]
    results: dict[str, dict[str, float]] = {"BruteForce": {"recall": 1.0, "ms": bf_s * 1e3}}
    recalls[EXACT] = exact_rec
    for name, _, _ in timed:
        sec = min(r[2][name] for r in rounds)
        speedup, to_flat = worst_round(rounds, name)
        results[name] = {
            "recall": recalls[name],
            "ms": sec * 1e3,
            "speedup": speedup,
            "ratio_to_flat": to_flat,
        }
        rows.append(
            (name, f"{recalls[name]:.4f}", f"{sec * 1e3:.1f}", f"{speedup:.1f}", f"{to_flat:.2f}")
        )
    rows.append(
        ("FAISS flat IP (N x 64)", "-", f"{flat_s * 1e3:.1f}", f"{min(bf / flat for bf, flat, _ in rounds):.1f}", "1.00")
    )
    print_table(
        rows,
        (
            "strategy",
            "rel. recall@100",
            "best latency ms",
            "speedup vs BF (worst round)",
            "ratio to flat (worst round)",
        ),
    )

    best_name = best_approximate(results)
    best = results[best_name]
    n_items = len(index)
    cache_bytes = sum(
        t.element_size() * t.numel()
        for t in (index._features, *(index.item_state.components, index.item_state.gate))
    )
    store = index._store  # allocated rows include the spare capacity of geometric growth
    alloc_bytes = sum(
        b._buf.element_size() * b._buf.numel()
        for b in (store.features, store.components, store.gate)
    )
    per_embd = index._first_stages.get("per_embd", index.item_state.components).index  # type: ignore[attr-defined]
    avg = index._first_stages.get("avg", index.item_state.components).index  # type: ignore[attr-defined]
    ivf_bytes = sum(ix.ntotal * (ix.code_size + 8) + ix.nlist * ix.d * 4 for ix in (per_embd, avg))
    print(
        f"best approximate strategy: {best_name}: relative recall@100 {best['recall']:.4f}, "
        f"{best['speedup']:.1f}x faster than BruteForce, {best['ratio_to_flat']:.2f}x FAISS flat "
        "(worst round)"
    )
    print(
        f"memory per item: cache {cache_bytes / n_items:.0f} B (features fp32 {D_ITEM * 4} B, components "
        f"{4 * 64 * 4} B, gate {16 * 4} B; allocated {alloc_bytes / n_items:.0f} B) "
        f"+ IVF first stages {ivf_bytes / n_items:.0f} B"
    )
    exact_diff = (exact_scores - ref_scores).abs().max().item()
    print(f"exact two-pass max |score diff| vs BruteForce: {exact_diff:.2e}")
    off = off_bar_setting(args.n, k, args.queries, args.rounds)
    # exactness holds at any size; the speed and recall bars only at their own setting
    bars = (scale_bars(best) if off is None else []) + exactness_bars(exact_rec, exact_diff)
    none_reason = off or ""
    if args.no_write:
        return check_bars(bars, none_reason=none_reason)
    if off is not None:  # the top-level keys are the figures of record: never from another setting
        print(f"not written to {RESULTS / 'mol.json'}: {off} (use --no-write for such runs)")
        return 2
    path = RESULTS / "mol.json"
    merged = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    merged.update(
        {
            "best_strategy": best_name,
            "relative_recall_at_100": best["recall"],
            "speedup_vs_bruteforce": best["speedup"],
            "ratio_to_faiss_flat": best["ratio_to_flat"],
            "scale_timing_rounds": [
                {
                    "bruteforce_ms": r[0] * 1e3,
                    "faiss_flat_ms": r[1] * 1e3,
                    "strategies_ms": {n: v * 1e3 for n, v in r[2].items()},
                }
                for r in rounds
            ],
            "scale_strategies": results,
            "scale_exact_max_abs_score_diff": exact_diff,
            "scale_bruteforce_ms": bf_s * 1e3,
            "scale_faiss_flat_ms": flat_s * 1e3,
            "scale_memory_bytes_per_item": {
                "cache": cache_bytes / n_items,
                "cache_allocated": alloc_bytes / n_items,
                "ivf_first_stages": ivf_bytes / n_items,
            },
            "scale_setup": {
                "n": args.n,
                "queries": args.queries,
                "k": k,
                "p_q": 4,
                "p_x": 4,
                "d_p": 64,
                "train_steps": args.steps,
                "train_batch": args.batch,
                "train_s": train_s,
                "ivf_nlist": args.nlist,
                "torch_threads": torch.get_num_threads(),
                "timing_rounds": args.rounds,
                "machine": machine(),
                "date": today(),
            },
            "machine": machine(),
            "date": today(),
        }
    )
    RESULTS.mkdir(parents=True, exist_ok=True)
    tmp = Path(str(path) + f".tmp-{os.getpid()}")
    tmp.write_text(json.dumps(merged, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    print(f"wrote {path}")
    return check_bars(bars, none_reason=none_reason)


if __name__ == "__main__":
    raise SystemExit(main())
