from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rag_relax_plugins.core.fusion import (
    comb_mnz,
    comb_sum,
    distribution_based_fusion,
    reciprocal_rank_fusion,
    weighted_rrf,
)


def test_rrf_hand_worked():
    # a: 1/61 + 1/62 ; b: 1/62 + 1/61 ; c: 1/63 ; d: 1/63
    out = reciprocal_rank_fusion([["a", "b", "c"], ["b", "a", "d"]], k=60)
    assert [d for d, _ in out] == ["a", "b", "c", "d"]  # a and b tie: a appeared first
    assert out[0][1] == pytest.approx(1 / 61 + 1 / 62)
    assert out[2][1] == pytest.approx(1 / 63)


def test_weighted_rrf_and_top_n():
    out = reciprocal_rank_fusion([["a", "b"], ["b", "a"]], k=0, weights=[1.0, 3.0], top_n=1)
    # a: 1/1 + 3/2 = 2.5 ; b: 1/2 + 3/1 = 3.5
    assert out == [("b", pytest.approx(3.5))]


def test_comb_sum_and_mnz_hand_worked():
    lists = [{"a": 10.0, "b": 5.0, "c": 0.0}, {"b": 2.0, "d": 1.0}]
    # minmax: list1 a=1, b=.5, c=0 ; list2 b=1, d=0
    s = dict(comb_sum(lists))
    assert s == {"a": 1.0, "b": 1.5, "c": 0.0, "d": 0.0}
    m = dict(comb_mnz(lists))
    assert m["b"] == pytest.approx(3.0) and m["a"] == pytest.approx(1.0)
    assert [d for d, _ in comb_sum(lists)][:2] == ["b", "a"]


def test_rrf_positional_and_weighted_alias():
    lists = [["a", "b", "c"], ["c", "b"]]
    # k=1 positional: a 1/2 ; b 1/3 + 1/3 ; c 1/4 + 1/2
    out = reciprocal_rank_fusion(lists, 1)
    assert [d for d, _ in out] == ["c", "b", "a"]
    assert dict(out) == pytest.approx({"a": 0.5, "b": 2 / 3, "c": 0.75})
    # weights [2, 1], k=60: a 2/61 ; b 2/62 + 1/62 ; c 2/63 + 1/61
    w = dict(weighted_rrf(lists, [2.0, 1.0]))
    assert w == pytest.approx({"a": 2 / 61, "b": 3 / 62, "c": 2 / 63 + 1 / 61})
    assert weighted_rrf(lists, [1.0, 1.0], k=60) == reciprocal_rank_fusion(lists, k=60)


def test_comb_sum_zscore_and_none():
    lists = [{"a": 3.0, "b": 1.0}, {"b": 5.0}]
    # zscore (population sd = 1): a 1, b -1 ; single-item list -> 0
    assert dict(comb_sum(lists, "zscore")) == pytest.approx({"a": 1.0, "b": -1.0})
    assert comb_sum(lists, "none") == [("b", 6.0), ("a", 3.0)]
    assert comb_sum(lists, "none", [1.0, 0.0]) == [("a", 3.0), ("b", 1.0)]


def test_dbsf_hand_worked():
    # scores 3, 2, 1: mean 2, sample sd 1 (as Qdrant); lo = 2 - 3 = -1 ; (s - lo) / 6
    out = dict(distribution_based_fusion([{"a": 3.0, "b": 2.0, "c": 1.0}]))
    assert out == pytest.approx({"a": 4 / 6, "b": 0.5, "c": 2 / 6})
    # two lists summed, weights applied after normalisation
    two = dict(distribution_based_fusion([{"a": 3.0, "b": 2.0, "c": 1.0}, {"c": 10.0, "a": 0.0}], [1.0, 2.0]))
    # second list: mean 5, sd sqrt(50) ; c -> (5 + 3 sd) / (6 sd), a -> (3 sd - 5) / (6 sd)
    sd = math.sqrt(50)
    assert two["c"] == pytest.approx(2 / 6 + 2 * (5 + 3 * sd) / (6 * sd))
    assert two["a"] == pytest.approx(4 / 6 + 2 * (3 * sd - 5) / (6 * sd))
    assert dict(distribution_based_fusion([{"a": 1.0, "b": 1.0}])) == {"a": 0.5, "b": 0.5}
    assert distribution_based_fusion([{"a": 7.0}]) == [("a", 0.5)]


def test_dbsf_clips_outliers():
    # ten zeros and one 100: the outlier sits (n - 1) / sqrt(n) = 3.015 sd above the mean -> clipped
    scores = {f"d{i}": 0.0 for i in range(10)} | {"top": 100.0}
    out = dict(distribution_based_fusion([scores]))
    assert out["top"] == 1.0
    assert 0.0 < out["d0"] < 0.5


def test_ties_follow_first_appearance():
    out = comb_sum([{"x": 1.0, "y": 0.0}, {"y": 1.0, "x": 0.0}])
    assert out == [("x", 1.0), ("y", 1.0)]
    out = reciprocal_rank_fusion([["p", "q"], ["q", "p"]])
    assert [d for d, _ in out] == ["p", "q"]


_ids = st.lists(st.integers(0, 30), unique=True, min_size=1, max_size=12)


@settings(max_examples=60, deadline=None)
@given(st.lists(_ids, min_size=1, max_size=4))
def test_rrf_properties(rankings):
    out = reciprocal_rank_fusion(rankings)
    docs = [d for d, _ in out]
    assert sorted(docs) == sorted({d for r in rankings for d in r})
    scores = [s for _, s in out]
    assert scores == sorted(scores, reverse=True)
    assert all(0 < s <= len(rankings) / 61 + 1e-12 for s in scores)
    assert out == reciprocal_rank_fusion(rankings)  # deterministic


@settings(max_examples=60, deadline=None)
@given(st.lists(st.dictionaries(st.integers(0, 20), st.floats(-1e3, 1e3), min_size=1, max_size=10), min_size=1, max_size=4))
def test_score_fusion_ranges(score_lists):
    n = len(score_lists)
    for fused in (comb_sum(score_lists), distribution_based_fusion(score_lists)):
        assert all(-1e-9 <= s <= n + 1e-9 for _, s in fused)
    mnz = dict(comb_mnz(score_lists))
    total = dict(comb_sum(score_lists))
    for d, s in total.items():
        hits = sum(1 for sl in score_lists if d in sl)
        assert mnz[d] == pytest.approx(s * hits)


def test_fusion_bad_input():
    with pytest.raises(ValueError, match="at least one"):
        reciprocal_rank_fusion([])
    with pytest.raises(ValueError, match="weights must have one entry"):
        reciprocal_rank_fusion([["a"]], weights=[1.0, 2.0])
    with pytest.raises(ValueError, match="at most once"):
        reciprocal_rank_fusion([["a", "a"]])
    with pytest.raises(ValueError, match="finite number"):
        comb_sum([{"a": float("nan")}])
    with pytest.raises(ValueError, match="normalization"):
        comb_sum([{"a": 1.0}], normalization="rank")
    with pytest.raises(ValueError, match="top_n"):
        reciprocal_rank_fusion([["a"]], top_n=0)
    with pytest.raises(ValueError, match="k must be"):
        reciprocal_rank_fusion([["a"]], k=-1)
    with pytest.raises(ValueError, match="weights must be finite"):
        comb_sum([{"a": 1.0}], weights=[float("inf")])
    with pytest.raises(ValueError, match="weights must have one entry"):
        distribution_based_fusion([{"a": 1.0}], weights=[])
    with pytest.raises(ValueError, match="at least one"):
        distribution_based_fusion([])
    with pytest.raises(ValueError, match="finite number"):
        distribution_based_fusion([{"a": float("inf")}])
    with pytest.raises(TypeError, match="not a string"):
        reciprocal_rank_fusion(["abc"])
    with pytest.raises(TypeError, match="must be a mapping"):
        comb_mnz([["a", "b"]])  # type: ignore[list-item]


def test_tensor_rankings_are_read_as_their_ids():
    import torch

    # each element of a tensor was a new document (0-d tensors hash by identity) (review 2026-12-02)
    lists = [torch.tensor([0, 2, 1]), torch.tensor([2, 0])]
    assert reciprocal_rank_fusion(lists) == reciprocal_rank_fusion([[0, 2, 1], [2, 0]])
    assert dict(reciprocal_rank_fusion(lists)) == pytest.approx({0: 1 / 61 + 1 / 62, 2: 1 / 62 + 1 / 61, 1: 1 / 63})
    assert weighted_rrf(lists, [2.0, 1.0]) == weighted_rrf([[0, 2, 1], [2, 0]], [2.0, 1.0])
    with pytest.raises(ValueError, match=r"rankings\[1\] must list each document id at most once"):
        reciprocal_rank_fusion([torch.tensor([0]), torch.tensor([3, 3])])
    with pytest.raises(TypeError, match=r"rankings\[0\].*1-D integer tensor"):
        reciprocal_rank_fusion([torch.tensor([0.5, 1.5])])
    with pytest.raises(TypeError, match=r"rankings\[0\].*1-D integer tensor"):
        reciprocal_rank_fusion([torch.tensor([[0, 1]])])


def test_numpy_and_other_real_scores_are_accepted_as_floats():
    np = pytest.importorskip("numpy")
    # np.float32 scores (e.g. dict(zip(ids, array))) were rejected as "not a finite number"
    arr = np.array([0.5, 0.25, 1.0], dtype=np.float32)
    lists = [dict(zip(["a", "b", "c"], arr)), {"b": np.float64(2.0), "d": np.int64(1)}]
    plain = [{"a": 0.5, "b": 0.25, "c": 1.0}, {"b": 2.0, "d": 1.0}]
    for fuse in (comb_sum, comb_mnz):
        for norm in ("minmax", "zscore", "none"):
            out = fuse(lists, norm)
            assert out == fuse(plain, norm)
            assert all(type(s) is float for _, s in out)
    assert distribution_based_fusion(lists) == distribution_based_fusion(plain)
    assert comb_sum(lists, "none") == [("b", 2.25), ("c", 1.0), ("d", 1.0), ("a", 0.5)]
    for bad in (np.float32("nan"), np.float64("inf"), np.bool_(True), "1.0"):
        with pytest.raises(ValueError, match="must be a finite number"):
            comb_sum([{"a": bad}])


def test_comb_mnz_counts_only_lists_with_positive_weight():
    # a weight-0 list still raised its documents' multiplier: weights [1, 0] ranked differently
    # from the first list alone, and a weight of 1e-9 flipped the top result (review 2026-12-02)
    a = {"a": 3.0, "b": 2.0, "c": 1.0}
    b = {"b": 5.0, "d": 4.0}
    alone = comb_mnz([a])
    assert alone == [("a", 1.0), ("b", 0.5), ("c", 0.0)]
    zero = comb_mnz([a, b], weights=[1.0, 0.0])
    assert zero[:3] == alone and zero[3] == ("d", 0.0)  # d only in the weight-0 list: score 0
    assert comb_mnz([b, a], weights=[0.0, 1.0]) == [("a", 1.0), ("b", 0.5), ("d", 0.0), ("c", 0.0)]
    tiny = dict(comb_mnz([a, b], weights=[1.0, 1e-9]))  # b in both weighted lists: (0.5 + 1e-9) * 2
    assert tiny == pytest.approx({"a": 1.0, "b": 1.0 + 2e-9, "c": 0.0, "d": 0.0}, rel=1e-12, abs=1e-15)
    assert comb_mnz([a, b], weights=[1.0, 2.0]) == [("b", 5.0), ("a", 1.0), ("c", 0.0), ("d", 0.0)]


def test_numpy_weights_are_accepted_like_floats() -> None:
    """Weights, like scores, may be numpy scalars (e.g. from an array of list weights)."""
    np = pytest.importorskip("numpy")
    a, b = {"x": 1.0, "y": 0.5}, {"y": 1.0, "z": 0.2}
    for fuse in (comb_sum, comb_mnz):
        assert fuse([a, b], weights=list(np.array([0.7, 0.3], dtype=np.float32))) == fuse(
            [a, b], weights=[float(np.float32(0.7)), float(np.float32(0.3))]
        )
    assert reciprocal_rank_fusion([["x", "y"], ["y"]], weights=[np.float64(2.0), np.int64(1)]) == (
        reciprocal_rank_fusion([["x", "y"], ["y"]], weights=[2.0, 1.0])
    )
    with pytest.raises(TypeError, match="real numbers"):
        comb_sum([a], weights=["1"])


@pytest.mark.parametrize("value", [0.1, 0.7, 1 / 3, -2.9, 123.456])
def test_a_list_of_equal_scores_is_normalised_as_documented(value):
    """The mean of equal scores rounded off them (0.1 x 3 -> spread 1e-17): zscore gave -1 or +1
    instead of 0, dbsf 0.408 instead of 0.5, and a constant list pushed its own documents below a
    document it never returned (review)."""
    same = {"a": value, "b": value, "c": value}
    assert comb_sum([same, {"d": 0.0}], normalization="zscore") == [("a", 0.0), ("b", 0.0), ("c", 0.0), ("d", 0.0)]
    assert distribution_based_fusion([same]) == [("a", 0.5), ("b", 0.5), ("c", 0.5)]
    assert comb_sum([same]) == [("a", 1.0), ("b", 1.0), ("c", 1.0)]  # minmax: all at the top


def test_scores_near_the_float_range_are_normalised_without_overflow():
    """A span past the float range gave NaN (sorted first), squares an OverflowError (review)."""
    huge = {"a": 1.7e308, "b": -1.7e308, "c": 0.0}
    assert comb_sum([huge]) == [("a", 1.0), ("c", 0.5), ("b", 0.0)]
    z = dict(comb_sum([{"a": 1e160, "b": -1e160, "c": 0.0}], normalization="zscore"))
    assert z == pytest.approx({"a": 1.5**0.5, "b": -(1.5**0.5), "c": 0.0})
    fused = distribution_based_fusion([{"a": 1e160, "b": -1e160, "c": 0.0}])
    assert [d for d, _ in fused] == ["a", "c", "b"]
    assert [s for _, s in fused] == pytest.approx([2 / 3, 0.5, 1 / 3])


def test_tiny_scores_are_normalised_without_underflow():
    """Hypothesis found 0 and 1.8e-226: the squares underflowed to 0 and zscore divided by it."""
    tiny = {0: 0.0, 1: 1.795052854881018e-226}
    assert comb_sum([tiny], normalization="zscore") == [(1, 1.0), (0, -1.0)]
    assert comb_sum([tiny]) == [(1, 1.0), (0, 0.0)]
    assert [d for d, _ in distribution_based_fusion([tiny])] == [1, 0]


def test_ordinary_lists_are_normalised_as_before_and_edge_spreads_are_recovered():
    """Large integers (2**53 + 1: nanosecond timestamps) divided by zero once turned into floats,
    and a spread of 1e-162 at a magnitude of 1e-150 underflowed to all-0 zscores (review)."""
    assert comb_sum([{"a": 2**53, "b": 2**53 + 1}]) == [("b", 1.0), ("a", 0.0)]
    assert comb_sum([{"a": 10**17, "b": 10**17 + 1, "c": 10**17 + 2}]) == [("c", 1.0), ("b", 0.5), ("a", 0.0)]
    assert comb_sum([{"a": -(10**308), "b": 10**308}]) == [("b", 1.0), ("a", 0.0)]  # a span no float holds
    assert comb_sum([{"a": 0.0, "b": 1e-160}], normalization="zscore") == [("b", 1.0), ("a", -1.0)]  # subnormal squares
    tiny = {"a": 1e-150, "b": 1e-150 * (1 + 1e-12), "c": 1e-150 * (1 + 2e-12)}
    z = dict(comb_sum([tiny], normalization="zscore"))
    assert z["c"] == pytest.approx(1.5**0.5, rel=1e-3) and z["a"] == pytest.approx(-(1.5**0.5), rel=1e-3)
    # an ordinary list: the plain formulas, bit for bit
    sl = {"a": 0.3, "b": 0.71, "c": 0.12, "d": 0.5}
    mu = sum(sl.values()) / 4
    sd = math.sqrt(sum((v - mu) ** 2 for v in sl.values()) / 4)
    assert dict(comb_sum([sl], normalization="zscore")) == {d: (v - mu) / sd for d, v in sl.items()}


def test_exact_ties_from_three_lists_follow_first_appearance():
    # the same terms summed in another order differed by one ulp, which decided the order instead
    # of first appearance (review 2026-12-05)
    out = comb_sum([{"b": 0.2, "a": 0.1}, {"a": 0.2, "b": 0.3}, {"a": 0.3, "b": 0.1}], "none")
    assert [d for d, _ in out] == ["b", "a"] and out[0][1] == out[1][1]
    latin = [["d0", "d1", "d2", "d3"], ["d2", "d3", "d0", "d1"], ["d1", "d2", "d3", "d0"], ["d3", "d0", "d1", "d2"]]
    for k in (0, 60):
        out = reciprocal_rank_fusion(latin, k=k)
        assert [d for d, _ in out] == ["d0", "d1", "d2", "d3"] and len({s for _, s in out}) == 1
    out = comb_mnz([{"b": 0.2, "a": 0.1}, {"a": 0.2, "b": 0.3}, {"a": 0.3, "b": 0.1}], "none")
    assert [d for d, _ in out] == ["b", "a"]
    # a sum past the float range still gives inf, as a running sum did
    assert comb_sum([{"x": 1e308}, {"x": 1e308}], "none") == [("x", math.inf)]


def test_a_2d_tensor_or_array_of_rankings_is_read_row_by_row():
    import numpy as np
    import torch

    rows = [[0, 1, 2], [2, 1, 0]]
    expected = reciprocal_rank_fusion(rows)
    assert reciprocal_rank_fusion(torch.tensor(rows)) == expected
    assert reciprocal_rank_fusion(np.array(rows)) == expected
    assert reciprocal_rank_fusion(torch.tensor([[0]])) == [(0, 1 / 61)]
    with pytest.raises(ValueError, match="at least one ranking"):
        reciprocal_rank_fusion([])
