"""MoLIndex: add / upsert / delete by id, filters, metadata, validation errors."""

from __future__ import annotations

import sys

import pytest
import torch

from rag_relax_plugins._errors import MissingExtraError
from rag_relax_plugins.core.mol import MoLConfig, MoLSimilarity
from rag_relax_plugins.index import Combined, ExactTwoPass, MoLIndex, TopKAvg, TopKPerEmbd


def _sim() -> MoLSimilarity:
    torch.manual_seed(0)
    return MoLSimilarity(
        MoLConfig(
            query_dim=8,
            item_dim=8,
            num_query_embeddings=2,
            num_item_embeddings=2,
            component_dim=4,
            gate_hidden_dim=4,
        )
    )


@pytest.fixture
def index() -> MoLIndex:
    idx = MoLIndex(_sim(), device="cpu")
    torch.manual_seed(1)
    idx.add(
        [f"d{i}" for i in range(50)],
        torch.randn(50, 8),
        metadata=[{"parity": i % 2, "name": f"n{i}"} for i in range(50)],
    )
    return idx


def test_cosine_index_returns_each_text_first() -> None:
    idx = MoLIndex(MoLSimilarity.cosine(16), device="cpu")
    x = torch.randn(30, 16)
    idx.add([str(i) for i in range(30)], x)
    scores, ids = idx.search(x, 3)
    assert [row[0] for row in ids] == [str(i) for i in range(30)]
    torch.testing.assert_close(scores[:, 0], torch.ones(30))


def test_upsert_replaces_features_and_metadata(index: MoLIndex) -> None:
    target = torch.randn(1, 8)
    index.add(["d3"], target * 5, metadata=[{"parity": 9}])
    assert len(index) == 50
    assert index.get_metadata(["d3"]) == [{"parity": 9}]
    torch.testing.assert_close(index.get_features(["d3"]), target * 5)
    index.add(["new"], torch.randn(1, 8))
    assert len(index) == 51 and "new" in index and index.get_metadata(["new"]) == [{}]


def test_delete_then_search_never_returns_deleted(index: MoLIndex) -> None:
    gone = [f"d{i}" for i in range(0, 50, 3)]
    q = torch.randn(4, 8)
    index.search(q, 5, strategy=TopKPerEmbd(10))  # build first stages before deleting
    index.delete(gone)
    assert len(index) == 50 - len(gone)
    for strategy in (None, TopKPerEmbd(100), TopKAvg(50), Combined(100, 50), ExactTwoPass(100)):
        _, ids = index.search(q, len(index), strategy=strategy)
        assert not set(gone) & {i for row in ids for i in row}
        assert all(len(row) == len(index) for row in ids)
    # the survivors keep their own vectors, metadata and scores: the same as a fresh index of them
    fresh = MoLIndex(index.similarity, device="cpu")
    fresh.add(index.ids, index.get_features(index.ids), metadata=index.get_metadata(index.ids))
    survivors = [f"d{i}" for i in range(50) if f"d{i}" not in gone]
    assert sorted(index.ids) == sorted(survivors)
    assert index.get_metadata(survivors) == [{"parity": int(i[1:]) % 2, "name": f"n{i[1:]}"} for i in survivors]
    torch.manual_seed(1)
    added = torch.randn(50, 8)  # the fixture's features, row i for "d{i}"
    torch.testing.assert_close(index.get_features(survivors), added[[int(i[1:]) for i in survivors]])
    for strategy in (None, TopKPerEmbd(100), TopKAvg(50), ExactTwoPass(100)):
        got, want = index.search(q, 7, strategy=strategy), fresh.search(q, 7, strategy=strategy)
        torch.testing.assert_close(got[0], want[0])
        assert got[1] == want[1]
    with pytest.raises(ValueError, match="unknown id"):
        index.delete(["d0"])
    index.delete(["d0", "d1"], missing_ok=True)
    assert "d1" not in index


def test_filters_are_applied_before_scoring(index: MoLIndex) -> None:
    q = torch.randn(3, 8)
    # shared id subset smaller than k: what exists is returned
    scores, ids = index.search(q, 10, filter=["d1", "d7", "d9"])
    assert scores.shape == (3, 3) and all(sorted(r) == ["d1", "d7", "d9"] for r in ids)
    # metadata dict and predicate
    _, ids = index.search(q, 5, filter={"parity": 1})
    assert all(
        index.get_metadata(r) == [m for m in index.get_metadata(r) if m["parity"] == 1] for r in ids
    )
    _, ids2 = index.search(q, 5, filter=lambda m: m["parity"] == 1)
    assert ids == ids2
    # per-query subsets of different sizes: padded with -inf, shorter id lists
    scores, ids = index.search(q, 4, filter=[["d1"], ["d2", "d3"], ["d4", "d5", "d6", "d8", "d10"]])
    assert scores.shape == (3, 4)
    assert ids[0] == ["d1"] and sorted(ids[1]) == ["d2", "d3"] and len(ids[2]) == 4
    assert torch.isinf(scores[0, 1:]).all() and torch.isfinite(scores[2]).all()
    # the large-subset path: the filter is a mask inside an approximate strategy's first stage.
    # TopKAvg(5) retrieves only 5 candidates: all 5 must pass the filter (a post-filter of the
    # 5 best unfiltered candidates would leave about half), and covering the subset gives the
    # exact filtered result of the small-subset (brute force) path
    ref = index.search(q, 5, filter={"parity": 0})  # 25 rows <= threshold: brute force
    index.exact_filter_threshold = 1
    s, ids = index.search(q, 5, strategy=TopKAvg(5), filter={"parity": 0})
    assert s.shape == (3, 5) and all(int(i[1:]) % 2 == 0 for row in ids for i in row)
    unfiltered = index.search(q, 5, strategy=TopKAvg(5))[1]
    assert any(int(i[1:]) % 2 for row in unfiltered for i in row)  # the mask mattered
    got = index.search(q, 5, strategy=TopKAvg(25), filter={"parity": 0})
    assert got[1] == ref[1]
    torch.testing.assert_close(got[0], ref[0])  # two kernels (subset scoring, candidate rerank)
    index.exact_filter_threshold = 10_000
    # an empty subset gives empty results
    scores, ids = index.search(q, 5, filter=[])
    assert scores.shape == (3, 0) and ids == [[], [], []]


def test_search_is_deterministic_and_sorted(index: MoLIndex) -> None:
    q = torch.randn(5, 8)
    a, b = index.search(q, 10), index.search(q, 10)
    assert torch.equal(a[0], b[0]) and a[1] == b[1]
    assert bool((a[0][:, :-1] >= a[0][:, 1:]).all())
    empty_scores, empty_ids = index.search(torch.randn(0, 8), 3)
    assert empty_scores.shape == (0, 0) and empty_ids == []


def test_first_stage_knobs_and_rebuild(index: MoLIndex) -> None:
    q = torch.randn(2, 8)
    before = index.search(q, 5, strategy=TopKAvg(50))
    index.build()  # forced rebuild from the cache gives the same (exact torch) results
    after = index.search(q, 5, strategy=TopKAvg(50))
    assert torch.equal(before[0], after[0]) and before[1] == after[1]
    index.configure_first_stage(ivf_nprobe=4)
    assert index.first_stage.ivf_nprobe == 4
    with pytest.raises(ValueError, match="can change after construction"):
        index.configure_first_stage(kind="hnsw")
    with pytest.raises(AttributeError):
        index.first_stage = index.first_stage  # type: ignore[misc]  # read-only: configure_first_stage
    comps = index.item_state.components
    kept, avg = (index._first_stages.current(name, comps) for name in ("per_embd", "avg"))
    assert kept is not None and avg is not None
    index.build(["avg"])  # one stage only: the other, built, stays (it was dropped, to be rebuilt later)
    assert index._first_stages.current("avg", comps) not in (None, avg)
    assert index._first_stages.current("per_embd", comps) is kept
    for bad in ("avg", ["mean"]):
        with pytest.raises(ValueError, match="stages must be"):
            index.build(bad)


@pytest.mark.parametrize(
    ("dtype", "torch_dtype", "atol"),
    [("bf16", torch.bfloat16, 0.06), ("fp16", torch.float16, 0.008)],
)
def test_half_caches_are_close_to_fp32(dtype: str, torch_dtype: torch.dtype, atol: float) -> None:
    torch.manual_seed(5)
    x, q = torch.randn(40, 8), torch.randn(3, 8)
    ref = MoLIndex(_sim(), device="cpu")
    half = MoLIndex(_sim(), device="cpu", cache_dtype=dtype)
    for idx in (ref, half):
        idx.add([str(i) for i in range(40)], x)
    assert half.item_state.components.dtype == torch_dtype
    s_ref, i_ref = ref.search(q, 40)
    s_half, i_half = half.search(q, 40)
    # every item's score, matched by id, is within the rounding of the cache dtype (scores up to
    # ~13 here; measured max errors 0.023 (bf16) and 0.0028 (fp16), bounds ~2.5x that)
    for b in range(3):
        by_id = dict(zip(i_ref[b], s_ref[b].tolist(), strict=True))
        want = torch.tensor([by_id[i] for i in i_half[b]])
        torch.testing.assert_close(s_half[b], want, rtol=0, atol=atol)
    assert not torch.equal(s_half, s_ref)  # the cache really is rounded


def test_bad_input_raises_clear_errors(index: MoLIndex) -> None:
    empty = MoLIndex(_sim(), device="cpu")
    with pytest.raises(ValueError, match="empty index"):
        empty.search(torch.randn(1, 8), 1)
    with pytest.raises(ValueError, match="k must be >= 1"):
        index.search(torch.randn(1, 8), 0)
    with pytest.raises(ValueError, match=r"query_features must have shape \(B, 8\)"):
        index.search(torch.randn(1, 7), 1)
    with pytest.raises(ValueError, match="query_features contains NaN"):
        index.search(torch.full((1, 8), float("nan")), 1)
    with pytest.raises(ValueError, match="item_features must have shape"):
        index.add(["x"], torch.randn(1, 9))
    with pytest.raises(ValueError, match="item_features must have shape"):
        index.add(["x", "y"], torch.randn(1, 8))
    with pytest.raises(ValueError, match="ids must be unique"):
        index.add(["x", "x"], torch.randn(2, 8))
    with pytest.raises(TypeError, match="only str ids"):
        index.add([1], torch.randn(1, 8))  # type: ignore[list-item]
    with pytest.raises(ValueError, match="metadata must have one dict per id"):
        index.add(["x"], torch.randn(1, 8), metadata=[{}, {}])
    with pytest.raises(ValueError, match="JSON-serialisable"):
        index.add(["x"], torch.randn(1, 8), metadata=[{"a": object()}])
    with pytest.raises(ValueError, match="unknown id"):
        index.get_metadata(["nope"])
    with pytest.raises(ValueError, match="filter contains 1 unknown id"):
        index.search(torch.randn(1, 8), 1, filter=["d1", "nope"])
    with pytest.raises(ValueError, match="one id list per query"):
        index.search(torch.randn(2, 8), 1, filter=[["d1"]])
    with pytest.raises(TypeError, match=r"filter must contain only str ids, got int \(3\)"):
        index.search(torch.randn(2, 8), 1, filter=["d1", 3])  # type: ignore[list-item]
    with pytest.raises(TypeError, match=r"filter\[0\] must contain only str ids, got int \(3\)"):
        index.search(torch.randn(1, 8), 1, filter=[["d1", 3]])  # type: ignore[list-item]
    with pytest.raises(TypeError, match=r"filter\[1\] must be a sequence of ids"):
        index.search(torch.randn(2, 8), 1, filter=[["d1"], 3])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="cache_dtype"):
        MoLIndex(_sim(), cache_dtype="int8", device="cpu")
    assert len(index) == 50  # failed calls changed nothing


def test_torch_first_stage_needs_no_faiss(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "faiss", None)  # import faiss now fails
    idx = MoLIndex(_sim(), device="cpu")
    idx.add([str(i) for i in range(20)], torch.randn(20, 8))
    assert idx.search(torch.randn(2, 8), 3, strategy=Combined(5, 5))[0].shape == (2, 3)
    flat = MoLIndex(_sim(), first_stage="flat", device="cpu")
    flat.add([str(i) for i in range(20)], torch.randn(20, 8))
    with pytest.raises(MissingExtraError, match=r"rag-relax-plugins\[faiss\]"):
        flat.search(torch.randn(1, 8), 3, strategy=TopKAvg(5))


def test_many_small_adds_match_one_bulk_add() -> None:
    torch.manual_seed(3)
    x, q = torch.randn(60, 8), torch.randn(3, 8)
    ids = [f"x{i}" for i in range(60)]
    bulk, small = MoLIndex(_sim(), device="cpu"), MoLIndex(_sim(), device="cpu")
    bulk.add(ids, x)
    for i in range(60):  # interleave searches so first stages are extended, not rebuilt
        small.add([ids[i]], x[i : i + 1])
        if i % 17 == 0:
            small.search(q, 1, strategy=TopKAvg(5))
    assert small._store.features._buf.shape[0] >= 60  # geometric capacity growth
    for strategy in (None, TopKAvg(60), Combined(120, 60)):
        a, b = bulk.search(q, 10, strategy=strategy), small.search(q, 10, strategy=strategy)
        torch.testing.assert_close(a[0], b[0])
        assert a[1] == b[1]
    small.delete(ids[::2])
    small.add(["late"], x[:1])
    assert len(small) == 31 and small.get_features(["late"]).shape == (1, 8)
    kept = MoLIndex(_sim(), device="cpu")  # the rows left after the delete, bulk-added
    kept.add([*ids[1::2], "late"], torch.cat([x[1::2], x[:1]]))
    torch.testing.assert_close(small.get_features(ids[1::2]), x[1::2])
    for strategy in (None, TopKAvg(31)):
        a, b = small.search(q, 10, strategy=strategy), kept.search(q, 10, strategy=strategy)
        torch.testing.assert_close(a[0], b[0])
        assert a[1] == b[1]


def test_features_beyond_float32_range_are_rejected(index: MoLIndex) -> None:
    big = torch.full((1, 8), 1e300, dtype=torch.float64)  # finite in float64, inf in float32
    with pytest.raises(ValueError, match="item_features has values outside the float32 range"):
        index.add(["big"], big)
    with pytest.raises(ValueError, match="query_features has values outside the float32 range"):
        index.search(big, 3)
    assert "big" not in index and len(index) == 50
    # finite float32 features whose encoded states overflow are rejected as well
    with torch.no_grad():
        index.similarity.item_gate.outer.weight.mul_(1e37)
    with pytest.raises(ValueError, match="NaN or inf states"):
        index.add(["huge"], torch.full((1, 8), 1e3))
    assert "huge" not in index and bool(torch.isfinite(index.item_state.gate).all())


def _dropout_index(n: int = 200) -> tuple[MoLSimilarity, MoLIndex]:
    """A MoL index of ``n`` random items whose head has softmax dropout 0.5 (random in train mode)."""
    torch.manual_seed(0)
    cfg = MoLConfig(
        query_dim=8, item_dim=8, num_query_embeddings=2, num_item_embeddings=2,
        component_dim=4, gate_hidden_dim=4, softmax_dropout=0.5,
    )
    sim = MoLSimilarity(cfg)
    idx = MoLIndex(sim, device="cpu")
    idx.add([str(i) for i in range(n)], torch.randn(n, 8))
    return sim, idx


def test_search_runs_in_eval_mode_whatever_the_module_mode() -> None:
    sim, idx = _dropout_index(60)
    q = torch.randn(3, 8)
    strategies = (None, ExactTwoPass(20), TopKAvg(10))
    ref = [idx.search(q, 7, strategy=s) for s in strategies]
    sim.train()  # e.g. a training loop sharing the module
    sim.dot_gate.eval()  # mixed submodule modes are restored exactly
    for _ in range(3):
        for strategy, (s_ref, i_ref) in zip(strategies, ref, strict=True):
            s, ids = idx.search(q, 7, strategy=strategy)
            assert torch.equal(s, s_ref) and ids == i_ref
    idx.add(["new"], torch.randn(1, 8))
    idx.reencode()
    assert sim.training and sim.query_gate.training and not sim.dot_gate.training


def test_search_and_add_switch_the_module_under_its_lock() -> None:
    # two threads switching one module's flags left it in eval mode (a training loop then lost its
    # dropout and MI loss) or searched with dropout on (review 2026-12-05)
    import threading

    from rag_relax_plugins.core.modes import module_lock

    sim, idx = _dropout_index()
    for call in (lambda: idx.search(torch.randn(1, 8), 3), lambda: idx.add(["late"], torch.randn(1, 8))):
        done = threading.Event()
        with module_lock(sim):
            t = threading.Thread(target=lambda c=call: (c(), done.set()))
            t.start()
            assert not done.wait(0.3)  # blocked on the module's lock
        t.join(10)
        assert done.is_set()


def test_a_callable_filter_runs_outside_the_module_lock() -> None:
    """A predicate is user code: run under the module's lock, one taking an application lock held
    by a thread waiting to search deadlocked both (review of 2026-12-05's lock)."""
    import threading

    _, idx = _dropout_index()
    other_done: list[bool] = []

    def predicate(meta: dict) -> bool:
        if not other_done:  # another thread's search, started from inside the filter
            t = threading.Thread(target=lambda: idx.search(torch.randn(1, 8), 3))
            t.start()
            t.join(5)
            other_done.append(not t.is_alive())
        return True

    _, ids = idx.search(torch.randn(1, 8), 3, filter=predicate)
    assert len(ids[0]) == 3 and other_done == [True]


def test_parallel_searches_keep_the_train_mode_of_a_shared_module() -> None:
    from concurrent.futures import ThreadPoolExecutor

    sim, idx = _dropout_index()
    queries = torch.randn(64, 8)
    want = idx.search(queries, 5)[1]
    sim.train()
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(lambda q: idx.search(q[None], 5)[1][0], queries))
    assert sim.training and all(m.training for m in sim.modules())
    assert got == want


def test_search_returns_ordinary_tensors(index: MoLIndex) -> None:
    scores, _ = index.search(torch.randn(2, 8), 3)
    assert not scores.is_inference()
    scores.clamp_(min=0)  # in-place ops work
    assert bool((scores >= 0).all())


def test_similarity_must_be_float32() -> None:
    with pytest.raises(ValueError, match=r"float32 parameters .* torch\.float64 .* similarity\.float\(\)"):
        MoLIndex(_sim().double(), device="cpu")
    with pytest.raises(ValueError, match=r"torch\.bfloat16"):
        MoLIndex(_sim().bfloat16(), device="cpu")
    idx = MoLIndex(_sim(), device="cpu")
    idx.similarity.double()  # cast after construction: caught before any matmul
    with pytest.raises(ValueError, match="float32 parameters"):
        idx.add(["a"], torch.randn(1, 8))
    assert len(idx) == 0


def test_dict_filters_match_booleans_only_to_booleans() -> None:
    idx = MoLIndex(_sim(), device="cpu")
    meta = [{"flag": True}, {"flag": 1}, {"flag": 1.0}, {"flag": False}, {"flag": [True]}, {}]
    idx.add(list("abcdef"), torch.randn(6, 8), metadata=meta)
    assert idx.ids_where({"flag": True}) == ["a"]
    assert idx.ids_where({"flag": 1}) == ["b", "c"]  # JSON numbers: 1 == 1.0
    assert idx.ids_where({"flag": False}) == ["d"]
    assert idx.ids_where({"flag": [1]}) == []
    assert idx.ids_where({"flag": [True]}) == ["e"]
    assert idx.search(torch.randn(1, 8), 5, filter={"flag": True})[1] == [["a"]]


def test_empty_like_keeps_the_settings_and_takes_a_new_similarity() -> None:
    src = MoLIndex(MoLSimilarity.cosine(8), first_stage="torch", cache_dtype="bf16", device="cpu",
                   exact_filter_threshold=7)
    src.add(["a"], torch.randn(1, 8))
    twin = src.empty_like(MoLSimilarity.cosine(16))
    assert len(twin) == 0 and len(src) == 1
    assert (twin.first_stage, twin.cache_dtype, twin.device, twin.exact_filter_threshold) == (
        src.first_stage, "bf16", src.device, 7)
    assert twin.similarity.config.item_dim == 16
    twin.add(["b"], torch.randn(1, 16))
    assert twin.search(torch.randn(1, 16), k=1)[1] == [["b"]]


def test_dict_filters_compare_json_scalars_exactly_in_the_fast_path() -> None:
    """One-key filters skip the generic comparison for str / int / float / None values."""
    idx = MoLIndex(_sim(), device="cpu")
    meta = [{"k": "1"}, {"k": 1}, {"k": None}, {"k": 1.5, "j": "x"}, {"k": 1.5, "j": "y"}, {"j": "x"}]
    idx.add(list("abcdef"), torch.randn(6, 8), metadata=meta)
    assert idx.ids_where({"k": "1"}) == ["a"]
    assert idx.ids_where({"k": 1}) == ["b"]
    assert idx.ids_where({"k": None}) == ["c"]  # a missing key is not None
    assert idx.ids_where({"k": 1.5, "j": "x"}) == ["d"]
    assert idx.ids_where({"j": "x"}) == ["d", "f"]


def test_delete_keeps_room_for_the_next_add_and_equals_a_fresh_index() -> None:
    """A delete gathered an exact-size cache, so the next single add copied the whole cache again
    (115 ms at 100k items, against 1 ms); rows before the first deleted one keep their place."""
    torch.manual_seed(0)
    feats = torch.randn(40, 8)
    idx = MoLIndex(_sim(), device="cpu")
    idx.add([f"i{r}" for r in range(40)], feats, metadata=[{"r": r} for r in range(40)])
    idx.delete(["i5", "i17", "i39", "i6"])
    buffer = idx._store.features
    assert buffer._buf.shape[0] > len(buffer) == 36  # room left
    before = buffer._buf.data_ptr()
    idx.add(["new"], torch.randn(1, 8))
    assert buffer._buf.data_ptr() == before  # appended in place, no regrow
    kept = [r for r in range(40) if r not in (5, 6, 17, 39)]
    assert idx.ids == [f"i{r}" for r in kept] + ["new"]
    assert all(idx.get_metadata([f"i{r}"]) == [{"r": r}] for r in kept)
    fresh = MoLIndex(_sim(), device="cpu")
    fresh.add([f"i{r}" for r in kept], feats[kept])
    torch.testing.assert_close(idx.item_state.components[:36], fresh.item_state.components, rtol=0, atol=0)
    torch.testing.assert_close(idx.get_features([f"i{r}" for r in kept]), feats[kept], rtol=0, atol=0)
    q = torch.randn(3, 8)
    assert idx.search(q, 5, filter=[f"i{r}" for r in kept])[1] == fresh.search(q, 5)[1]
    idx.delete([f"i{r}" for r in kept])  # most rows gone: the buffer gives memory back
    assert idx.ids == ["new"] and buffer._buf.shape[0] <= 16


def test_a_delete_that_fails_to_allocate_leaves_the_index_as_it_was(monkeypatch: pytest.MonkeyPatch) -> None:
    """The ids were renumbered and the feature cache replaced before the component cache was
    gathered: an out-of-memory error there left 39 ids beside 40 component rows."""
    from rag_relax_plugins.index import _storage

    torch.manual_seed(0)
    idx = MoLIndex(_sim(), device="cpu")
    idx.add([f"i{r}" for r in range(40)], torch.randn(40, 8))
    q = torch.randn(2, 8)
    before = idx.search(q, 5)
    real, calls = _storage.RowBuffer.kept, []

    def kept(self: _storage.RowBuffer, rows: torch.Tensor, first: int = 0) -> torch.Tensor:
        calls.append(1)
        if len(calls) == 2:
            raise torch.OutOfMemoryError("simulated")
        return real(self, rows, first)

    monkeypatch.setattr(_storage.RowBuffer, "kept", kept)
    with pytest.raises(torch.OutOfMemoryError):
        idx.delete(["i3"])
    assert len(idx) == 40 and idx.ids == [f"i{r}" for r in range(40)] and "i3" in idx
    assert idx.item_state.components.shape[0] == 40 and idx._store.features.data.shape[0] == 40
    after = idx.search(q, 5)
    assert after[1] == before[1] and torch.equal(after[0], before[0])


def test_dict_filter_values_from_numpy_match_as_the_json_values_they_hold() -> None:
    """A value read from a DataFrame is a numpy scalar: np.bool_(True) never matched a stored True,
    and one compared with a stored list raised numpy's 'truth value ... is ambiguous'."""
    import numpy as np

    idx = MoLIndex(_sim(), device="cpu")
    meta = [{"flag": True, "year": 2020}, {"flag": [1, 2], "year": [2020]}, {"flag": False, "year": 2021.0}]
    idx.add(list("abc"), torch.randn(3, 8), metadata=meta)
    assert idx.ids_where({"flag": np.bool_(True)}) == ["a"]
    assert idx.ids_where({"flag": np.array([1, 2])}) == ["b"]
    assert idx.ids_where({"year": np.int64(2020)}) == ["a"]
    assert idx.ids_where({"year": np.float32(2021.0)}) == ["c"]
    assert idx.ids_where({"year": [np.int64(2020)]}) == ["b"]
    assert idx.ids_where({"flag": np.int64(1)}) == []  # a number never matches a boolean
