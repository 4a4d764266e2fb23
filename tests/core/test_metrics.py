from __future__ import annotations

import random

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from rag_relax_plugins.core import metrics as M


def _random_case(seed: int, n_queries: int = 50, n_docs: int = 40):
    rng = random.Random(seed)
    rankings, qrels = [], []
    for _ in range(n_queries):
        docs = [f"d{i}" for i in range(n_docs)]
        rng.shuffle(docs)
        rankings.append(docs[: rng.randint(1, 30)])
        judged = rng.sample([f"d{i}" for i in range(n_docs)], rng.randint(1, 12))
        qrels.append({d: rng.choice([0, 1, 1, 2, 3]) for d in judged})
    return rankings, qrels


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_parity_with_ir_measures(seed):
    ir = pytest.importorskip("ir_measures")
    from ir_measures import AP, RR, P, R, Success, nDCG

    rankings, qrels = _random_case(seed)
    # queries with no relevant doc: ir_measures/trec_eval still averages them if present in qrels
    run = {f"q{i}": {d: float(len(r) - j) for j, d in enumerate(r)} for i, r in enumerate(rankings)}
    qrel = {f"q{i}": {d: int(g) for d, g in q.items()} for i, q in enumerate(qrels)}
    pairs = {
        "recall@5": R @ 5, "recall@20": R @ 20, "precision@5": P @ 5, "precision@10": P @ 10,
        "hit_rate@3": Success @ 3, "mrr": RR, "mrr@10": RR @ 10, "ndcg_linear@10": nDCG @ 10,
        "ndcg_linear@3": nDCG @ 3, "map@10": AP @ 10, "map@100": AP @ 100,
    }
    per_ref = {m: {} for m in pairs}
    inv = {v: k for k, v in pairs.items()}
    for res in ir.iter_calc(list(pairs.values()), qrel, run):
        per_ref[inv[res.measure]][res.query_id] = res.value
    ours = M.evaluate_per_query(rankings, qrels, list(pairs))
    for name in pairs:
        for i, value in enumerate(ours[name]):
            assert value == pytest.approx(per_ref[name][f"q{i}"], abs=1e-6), (name, i)


@pytest.mark.parametrize("seed", [3, 4])
def test_exponential_ndcg_matches_ir_measures_on_remapped_grades(seed):
    # exponential gain 2**g - 1 on grade g == trec_eval's linear gain on grade 2**g - 1
    ir = pytest.importorskip("ir_measures")
    from ir_measures import nDCG

    rankings, qrels = _random_case(seed)
    run = {f"q{i}": {d: float(len(r) - j) for j, d in enumerate(r)} for i, r in enumerate(rankings)}
    remapped = {f"q{i}": {d: 2 ** int(g) - 1 for d, g in q.items()} for i, q in enumerate(qrels)}
    ref = {m.query_id: m.value for m in ir.iter_calc([nDCG @ 10], remapped, run)}
    ours = M.evaluate_per_query(rankings, qrels, ["ndcg@10"])["ndcg@10"]
    assert [pytest.approx(ref[f"q{i}"], abs=1e-6) for i in range(len(ours))] == ours
    assert any(a != b for a, b in zip(ours, M.evaluate_per_query(rankings, qrels, ["ndcg_linear@10"])["ndcg_linear@10"]))


def test_evaluate_mean_matches_ir_measures_aggregate():
    # queries judged but without a relevant document count as 0 in trec_eval's mean, as in ours
    ir = pytest.importorskip("ir_measures")
    from ir_measures import AP, RR, R, nDCG

    rankings, qrels = _random_case(7)
    qrels[0] = {d: 0 for d in qrels[0]}  # a judged query with no relevant document
    run = {f"q{i}": {d: float(len(r) - j) for j, d in enumerate(r)} for i, r in enumerate(rankings)}
    qrel = {f"q{i}": {d: int(g) for d, g in q.items()} for i, q in enumerate(qrels)}
    ref = ir.calc_aggregate([R @ 10, RR @ 10, nDCG @ 5, AP @ 20], qrel, run)
    ours = M.evaluate(rankings, qrels, ["recall@10", "mrr@10", "ndcg_linear@5", "map@20"])
    assert ours["recall@10"] == pytest.approx(ref[R @ 10], abs=1e-6)
    assert ours["mrr@10"] == pytest.approx(ref[RR @ 10], abs=1e-6)
    assert ours["ndcg_linear@5"] == pytest.approx(ref[nDCG @ 5], abs=1e-6)
    assert ours["map@20"] == pytest.approx(ref[AP @ 20], abs=1e-6)
    skipped = M.evaluate(rankings, qrels, ["recall@10"], skip_empty=True)["recall@10"]
    n_kept = sum(1 for q in qrels if any(g > 0 for g in q.values()))
    assert n_kept < 50
    assert skipped == pytest.approx(ours["recall@10"] * 50 / n_kept)


def test_hand_worked_values():
    ranking = ["a", "x", "c", "y"]
    qrels = {"a": 2, "c": 1, "z": 1}
    assert M.recall_at_k(ranking, qrels, 2) == pytest.approx(1 / 3)
    assert M.precision_at_k(ranking, qrels, 4) == pytest.approx(0.5)
    assert M.hit_rate_at_k(["x", "y"], qrels, 2) == 0.0
    assert M.reciprocal_rank(["x", "c"], qrels) == 0.5
    assert M.reciprocal_rank(["x", "c"], qrels, k=1) == 0.0
    # exponential: DCG = 3/1 + 1/log2(4) = 3.5; IDCG = 3 + 1/log2(3) + 1/log2(4)
    import math

    idcg = 3 + 1 / math.log2(3) + 0.5
    assert M.ndcg_at_k(ranking, qrels, 4) == pytest.approx(3.5 / idcg)
    assert M.average_precision_at_k(ranking, qrels, 4) == pytest.approx((1 + 2 / 3) / 3)


def test_evaluate_means_and_skip_empty():
    out = M.evaluate([["a"], ["b"]], [{"a": 1}, {}], ["recall@1", "mrr"])
    assert out == {"recall@1": 0.5, "mrr": 0.5}
    out = M.evaluate([["a"], ["b"]], [{"a": 1}, {}], ["recall@1"], skip_empty=True)
    assert out == {"recall@1": 1.0}


def test_rankings_from_scores_ties_and_ids():
    s = torch.tensor([[0.1, 0.5, 0.5, 0.2], [0.0, 0.0, 0.0, 1.0]])
    assert M.rankings_from_scores(s, None, 3) == [[1, 2, 3], [3, 0, 1]]
    assert M.rankings_from_scores(s, ["a", "b", "c", "d"], k=10) == [["b", "c", "d", "a"], ["d", "a", "b", "c"]]
    assert M.rankings_from_scores(s, ids=["a", "b", "c", "d"], k=1) == [["b"], ["d"]]
    assert M.rankings_from_scores(s) == [[1, 2, 3, 0], [3, 0, 1, 2]]
    # legacy argument order (scores, k, ids)
    assert M.rankings_from_scores(s, 2, ["a", "b", "c", "d"]) == [["b", "c"], ["d", "a"]]


def test_rankings_from_scores_bad_input():
    s = torch.zeros(2, 3)
    with pytest.raises(ValueError, match="scores must be 2-D"):
        M.rankings_from_scores(torch.zeros(3), None, 1)
    with pytest.raises(ValueError, match="scores contains NaN"):
        M.rankings_from_scores(torch.tensor([[0.0, float("nan")]]), None, 1)
    with pytest.raises(TypeError, match="scores must be a floating-point"):
        M.rankings_from_scores(torch.zeros(2, 3, dtype=torch.long), None, 1)
    with pytest.raises(ValueError, match="ids must have one entry per column"):
        M.rankings_from_scores(s, ["a", "b"], 1)
    with pytest.raises(ValueError, match="k must be >= 1"):
        M.rankings_from_scores(s, None, 0)


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 10_000), st.integers(1, 20))
def test_metric_properties(seed, k):
    rankings, qrels = _random_case(seed, n_queries=3)
    for r, q in zip(rankings, qrels):
        vals = [M.recall_at_k(r, q, k), M.precision_at_k(r, q, k), M.ndcg_at_k(r, q, k),
                M.average_precision_at_k(r, q, k), M.reciprocal_rank(r, q), M.hit_rate_at_k(r, q, k)]
        assert all(0.0 <= v <= 1.0 + 1e-12 for v in vals)
        assert M.recall_at_k(r, q, k) <= M.recall_at_k(r, q, k + 1) + 1e-12
        ideal = sorted(q, key=lambda d: -q[d])
        if any(g > 0 for g in q.values()):
            assert M.ndcg_at_k(ideal, q, k) == pytest.approx(1.0)


def test_bad_input():
    with pytest.raises(ValueError, match="k must be >= 1"):
        M.recall_at_k(["a"], {"a": 1}, 0)
    with pytest.raises(TypeError, match="k must be an int"):
        M.ndcg_at_k(["a"], {"a": 1}, 2.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="more than once"):
        M.recall_at_k(["a", "a"], {"a": 1}, 2)
    with pytest.raises(ValueError, match="same length"):
        M.evaluate([["a"]], [], ["mrr"])
    with pytest.raises(ValueError, match="unknown metric"):
        M.evaluate([["a"]], [{"a": 1}], ["f1@3"])
    with pytest.raises(ValueError, match="needs a cut-off"):
        M.evaluate([["a"]], [{"a": 1}], ["ndcg"])
    for name in ("recall@0", "precision@0", "mrr@0", "ndcg@0", "map@0", "hit_rate@0"):
        with pytest.raises(ValueError, match="cut-off k must be >= 1"):  # was 0.0, or ZeroDivisionError
            M.evaluate([["a"]], [{"a": 1}], [name])
    with pytest.raises(ValueError, match="at least one query"):
        M.evaluate([], [], ["mrr"])
    with pytest.raises(TypeError, match="not a string"):
        M.recall_at_k("abc", {"a": 1}, 1)
    with pytest.raises(ValueError, match=r"rankings\[1\].*more than once"):
        M.evaluate([["a"], ["b", "b"]], [{"a": 1}, {"b": 1}], ["mrr"])
    with pytest.raises(TypeError, match="metrics must be a sequence"):
        M.evaluate([["a"]], [{"a": 1}], "mrr")
    with pytest.raises(ValueError, match="gain"):
        M.ndcg_at_k(["a"], {"a": 1}, 1, gain="log")


def test_paired_difference_mean_and_standard_error():
    a, b = [1.0, 0.5, 0.5, 0.0], [1.0, 0.0, 0.0, 1.0]
    d = torch.tensor(a, dtype=torch.float64) - torch.tensor(b, dtype=torch.float64)
    got = M.paired_difference(a, b)
    assert got["mean"] == pytest.approx(float(d.mean()))
    assert got["se"] == pytest.approx(float(d.std(unbiased=True) / 2))
    assert got["n"] == 4
    assert M.paired_difference([2.0, 3.0], [1.0, 2.0]) == {"mean": 1.0, "se": 0.0, "n": 2.0}
    with pytest.raises(ValueError, match="same queries"):
        M.paired_difference([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="at least 2"):
        M.paired_difference([1.0], [0.0])
    with pytest.raises(ValueError, match="finite"):
        M.paired_difference([1.0, float("nan")], [0.0, 0.0])


def test_a_one_dimensional_integer_tensor_ranking_is_read_as_its_ids():
    # a tensor's elements are 0-d tensors that hash by identity: qrels lookups missed, duplicates
    # went unseen and every metric was 0 (review 2026-12-02); e.g. torch.topk(...).indices
    qrels = {0: 1, 2: 2, 5: 1}
    scores = torch.tensor([[0.9, 0.1, 0.8, 0.3, 0.2, 0.05]])
    top = torch.topk(scores, 3).indices[0]  # tensor([0, 2, 3])
    as_list = [0, 2, 3]
    assert M.recall_at_k(top, qrels, 2) == M.recall_at_k(as_list, qrels, 2) == pytest.approx(2 / 3)
    assert M.ndcg_at_k(top, qrels, 3) == M.ndcg_at_k(as_list, qrels, 3) > 0
    assert M.reciprocal_rank(top.to(torch.int32), qrels) == 1.0
    for fn in (M.precision_at_k, M.hit_rate_at_k, M.average_precision_at_k):
        assert fn(top, qrels, 3) == fn(as_list, qrels, 3) > 0
    metrics = ["recall@2", "ndcg@3", "mrr", "map@3"]
    assert M.evaluate([top], [qrels], metrics) == M.evaluate([as_list], [qrels], metrics)
    assert M.evaluate([top], [qrels], ["recall@2"]) == {"recall@2": pytest.approx(2 / 3)}
    with pytest.raises(ValueError, match="document id 2 more than once"):
        M.recall_at_k(torch.tensor([2, 0, 2]), qrels, 2)
    with pytest.raises(ValueError, match=r"rankings\[0\].*more than once"):
        M.evaluate([torch.tensor([1, 1])], [qrels], ["mrr"])
    with pytest.raises(TypeError, match="1-D integer tensor"):
        M.recall_at_k(torch.tensor([0.0, 2.0]), qrels, 2)
    with pytest.raises(TypeError, match="1-D integer tensor"):
        M.recall_at_k(torch.topk(scores, 3).indices, qrels, 2)  # (1, 3): one row per query
    with pytest.raises(TypeError, match=r"rankings\[0\].*1-D integer tensor"):
        M.evaluate([torch.tensor([True, False])], [qrels], ["mrr"])


def test_a_list_of_zero_d_tensors_is_refused():
    # list(tensor) gives 0-d tensors, which hash by identity: every metric was silently 0
    from rag_relax_plugins.core.fusion import reciprocal_rank_fusion

    qrels = {0: 1, 2: 1}
    top = torch.tensor([0, 2, 3])
    assert M.recall_at_k(top.tolist(), qrels, 2) == 1.0
    with pytest.raises(TypeError, match=r"holds torch tensors.*tolist"):
        M.recall_at_k(list(top), qrels, 2)
    with pytest.raises(TypeError, match=r"rankings\[0\]: ranking holds torch tensors"):
        M.evaluate([list(top)], [qrels], ["mrr"])
    with pytest.raises(TypeError, match=r"rankings\[1\] holds torch tensors"):
        reciprocal_rank_fusion([[0, 2], list(top)])


def test_a_metric_named_twice_is_refused():
    """It doubled that metric's per-query list: paired_difference then counted every query twice."""
    rankings, qrels = [["a", "b"], ["b", "a"]], [{"a": 1}, {"a": 1}]
    for entry in (M.evaluate_per_query, M.evaluate):
        with pytest.raises(ValueError, match="'mrr' more than once"):
            entry(rankings, qrels, ["mrr", "recall@1", "mrr"])
        with pytest.raises(ValueError, match="'ndcg@10' more than once"):
            entry(rankings, qrels, ("ndcg@10", "ndcg@10"))
        with pytest.raises(TypeError, match="metric names"):
            entry(rankings, qrels, ["mrr", 10])  # type: ignore[list-item]
    per = M.evaluate_per_query(rankings, qrels, ["mrr", "mrr@1", "recall@1"])  # distinct names
    assert per == {"mrr": [1.0, 0.5], "mrr@1": [1.0, 0.0], "recall@1": [1.0, 0.0]}


def test_check_metrics_is_the_check_evaluate_makes() -> None:
    assert M.check_metrics(("mrr", "ndcg@10")) == ["mrr", "ndcg@10"]
    for bad, error in (("mrr", TypeError), (["ndcg"], ValueError), (["recall@0"], ValueError),
                       (["mrr", "mrr"], ValueError), ([3], TypeError)):
        with pytest.raises(error):
            M.check_metrics(bad)
        with pytest.raises(error):
            M.evaluate([["a"]], [{"a": 1}], bad)


def test_metrics_given_as_a_generator_are_read_once() -> None:
    """A generator of names was read twice (the check, then the scoring): the result was {}."""
    rankings, qrels = [["a", "b"]], [{"b": 1}]
    assert M.evaluate(rankings, qrels, (m for m in ["mrr", "recall@1"])) == {"mrr": 0.5, "recall@1": 0.0}
    assert M.evaluate_per_query(rankings, qrels, iter(["mrr"])) == {"mrr": [0.5]}
    assert M.check_metrics(m for m in ["mrr"]) == ["mrr"]


@pytest.mark.parametrize("seed", range(6))
def test_rankings_from_scores_top_k_equals_the_stable_sort(seed: int) -> None:
    # a cut well below the row length takes torch.topk with ties put in column order and a tie at
    # the cut repaired from the row: it must equal the first k of the stable descending sort
    g = torch.Generator().manual_seed(seed)
    n, k = 400, [1, 7, 20, 60][seed % 4]
    scores = torch.randint(0, 12, (9, n), generator=g).float()  # many ties, at the cut too
    scores[0] = 0.0
    scores[1, ::2] = -0.0
    want = torch.sort(scores, dim=1, descending=True, stable=True).indices[:, :k].tolist()
    assert M.rankings_from_scores(scores, k=k) == want
    real = torch.randn(9, n, generator=g)
    want = torch.sort(real, dim=1, descending=True, stable=True).indices[:, :k].tolist()
    assert M.rankings_from_scores(real, k=k) == want
