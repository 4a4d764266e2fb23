"""Edge cases found by the index review: ExactTwoPass with huge k and tiny tau, tie order across
strategies, strict metadata, read-only predicates, corrupt FAISS files, first-stage options."""

from __future__ import annotations

import importlib.util
import json
import math
import tracemalloc
from pathlib import Path

import pytest
import torch

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
from rag_relax_plugins.index._search import topk_lowest_rows

HAS_FAISS = importlib.util.find_spec("faiss") is not None

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _sim(p_q: int = 2, p_x: int = 3, tau: float = 0.05) -> MoLSimilarity:
    return MoLSimilarity(MoLConfig(query_dim=12, item_dim=10, num_query_embeddings=p_q,
                                   num_item_embeddings=p_x, component_dim=6, gate_hidden_dim=8, tau=tau))


def test_exact_two_pass_sizes_its_buffers_by_the_items_not_by_k() -> None:
    torch.manual_seed(0)
    idx = MoLIndex(_sim(), device="cpu")
    idx.add([f"d{i}" for i in range(100)], torch.randn(100, 10))
    q = torch.randn(4, 12)
    tracemalloc.start()
    scores, ids = idx.search(q, 10**7, strategy=ExactTwoPass())
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert scores.shape == (4, 100) and ids == idx.search(q, 10**7)[1]
    assert peak < 50 * 2**20  # was (B, k) buffers: 458 MB at k = 1e7 for 100 items
    assert idx.search(q, 10**12, strategy=ExactTwoPass())[0].shape == (4, 100)  # was an alloc error


@pytest.mark.parametrize("tau", [1e-4, 1e-6])
def test_exact_two_pass_stays_exact_at_tiny_tau(tau: float) -> None:
    # items almost orthogonal to the first query: its logits are ~1e-5, below the old slack's
    # floor (1e-4 * tau in logit units), so rounding between kernels dropped true top-k items
    torch.manual_seed(15)
    d = 256
    sim = MoLSimilarity(MoLConfig(query_dim=d, item_dim=d, num_query_embeddings=1, num_item_embeddings=1,
                                  component_dim=d, tau=tau, identity_init=True))
    idx = MoLIndex(sim, device="cpu")
    q = torch.randn(4, d)
    qn = q[0] / q[0].norm()
    x = torch.randn(500, d)
    x = x - (x @ qn).unsqueeze(1) * qn + 1e-5 * torch.randn(500, 1) * qn
    idx.add([f"d{i}" for i in range(500)], x)
    every = idx.search(q, 500)  # brute force: all items, best first
    got = idx.search(q, 10, strategy=ExactTwoPass())
    # the two paths score with different kernels, whose float32 rounding of these ~1e-6 logits
    # differs by a few 1e-8 (it orders near-ties differently on AMD and Intel CPUs): the result
    # must be a top 10 up to that rounding, an item clearly above the cut is never dropped
    tol = 1e-7 / tau  # 1e-7 in logit units, in score units
    for b in range(4):
        scores = dict(zip(every[1][b], every[0][b].tolist(), strict=True))
        kth = every[0][b, 9].item()
        must = {i for i, s in scores.items() if s > kth + tol}
        may = {i for i, s in scores.items() if s >= kth - tol}
        assert len(got[1][b]) == 10 and must <= set(got[1][b]) <= may, b
        assert len(must) >= 5, "the check must bind"
        for i, s in zip(got[1][b], got[0][b].tolist(), strict=True):
            assert abs(s - scores[i]) <= tol


def test_mol_config_refuses_a_tau_that_overflows_float32_scores() -> None:
    with pytest.raises(ValueError, match="tau must be >="):
        MoLConfig(query_dim=4, item_dim=4, tau=1e-39)
    MoLConfig(query_dim=4, item_dim=4, tau=1e-6)


def test_topk_lowest_rows_orders_ties_by_column() -> None:
    g = torch.Generator().manual_seed(0)
    scores = torch.randint(0, 4, (64, 30), generator=g).float()  # many ties
    scores[0, 10:] = -math.inf  # masked columns: they only pad (their rows become -1 later)
    for k in (1, 5, 10, 30):
        top_s, top_i = topk_lowest_rows(scores, k)
        for b in range(64):
            want = sorted(range(30), key=lambda c, b=b: (-float(scores[b, c]), c))[:k]
            finite = [c for c in want if math.isfinite(float(scores[b, c]))]
            assert top_i[b].tolist()[: len(finite)] == finite, (b, k)
            assert torch.equal(top_s[b], scores[b, top_i[b]])


def _strategies() -> list[object]:
    return [BruteForce(), ExactTwoPass(), TopKAvg(200), TopKPerEmbd(200), Combined(200, 200)]


def test_exact_duplicates_come_back_in_the_same_order_from_every_strategy() -> None:
    torch.manual_seed(0)
    idx = MoLIndex(_sim(p_q=1, p_x=2), device="cpu")
    x = torch.randn(200, 10)
    x[100:] = x[:100].clone()  # d{i} and d{i+100} are the same item
    idx.add([f"d{i}" for i in range(200)], x)
    q = torch.randn(8, 12)
    ref = idx.search(q, 6)[1]
    for row in ref:
        for a, b in zip(row[::2], row[1::2], strict=True):  # each pair: the lower row first
            assert int(b[1:]) == int(a[1:]) + 100
    for strategy in _strategies():
        assert idx.search(q, 6, strategy=strategy)[1] == ref, strategy  # type: ignore[arg-type]


def test_metadata_must_be_strict_json_and_a_refusal_adds_nothing() -> None:
    idx = MoLIndex(_sim(), device="cpu")
    idx.add(["a"], torch.randn(1, 10), metadata=[{"k": 1}])
    bad = [{1: "int key", "1": "str key"}, {"outer": [{None: 1}]}, {"x": float("nan")}, {"x": [math.inf]}]
    for meta in bad:
        with pytest.raises(ValueError, match="metadata\\[0\\]"):
            idx.add(["b"], torch.randn(1, 10), metadata=[meta])
    assert idx.ids == ["a"] and idx.get_metadata(["a"]) == [{"k": 1}]


def test_a_predicate_gets_a_read_only_view_of_the_metadata() -> None:
    idx = MoLIndex(_sim(), device="cpu")
    idx.add(["a", "b"], torch.randn(2, 10), metadata=[{"lang": "en"}, {"lang": "fr"}])
    assert idx.search(torch.randn(1, 12), 2, filter=lambda m: m.get("lang") == "fr")[1] == [["b"]]
    with pytest.raises(AttributeError):  # a mappingproxy has no pop
        idx.ids_where(lambda m: m.pop("lang") == "en")  # type: ignore[attr-defined]
    assert idx.get_metadata(["a", "b"]) == [{"lang": "en"}, {"lang": "fr"}]


@pytest.mark.parametrize("bad", [{"seed": "abc"}, {"seed": 2**40}, {"seed": 1.5}, {"seed": -1},
                                 {"seed": True}, {"ivf_nlist": True}])
def test_first_stage_config_checks_seed_and_nlist(bad: dict) -> None:
    with pytest.raises(ValueError, match=r"seed|ivf_nlist"):
        FirstStageConfig(kind="ivf", **bad)


@pytest.mark.parametrize("name", ["hnsw_m", "hnsw_ef_construction", "hnsw_ef_search", "ivf_nprobe", "ivf_nlist"])
def test_first_stage_knobs_fit_a_faiss_int(name: str) -> None:
    # 2**40 was accepted (and saved in config.json) and failed inside FAISS at the first build or
    # search (a SWIG TypeError / OverflowError) (corrupt-file review)
    with pytest.raises(ValueError, match=rf"{name} .*a FAISS int"):
        FirstStageConfig(kind="hnsw", **{name: 2**40})
    assert getattr(FirstStageConfig(kind="hnsw", **{name: 2**31 - 1}), name) == 2**31 - 1


def _saved(tmp_path: Path, kind: str = "flat") -> Path:
    torch.manual_seed(1)
    idx = MoLIndex(_sim(), first_stage=kind, device="cpu")
    idx.add([f"d{i}" for i in range(60)], torch.randn(60, 10))
    idx.build()
    idx.save(tmp_path / "ix")
    return tmp_path / "ix"


def _without_digests(folder: Path) -> None:
    """Make ``folder`` a save from before the evening of 2026-12-04, which recorded no FAISS file digests."""
    config = json.loads((folder / "config.json").read_text())
    del config["faiss_sha256"]
    (folder / "config.json").write_text(json.dumps(config))


@pytest.mark.skipif(not HAS_FAISS, reason="faiss not installed")
@pytest.mark.parametrize("content", [b"garbage", b"", None])
def test_a_corrupt_faiss_file_of_an_old_save_is_a_value_error_naming_it(tmp_path: Path, content: bytes | None) -> None:
    folder = _saved(tmp_path)
    _without_digests(folder)
    path = folder / "avg.faiss"
    path.write_bytes(path.read_bytes()[:40] if content is None else content)
    with pytest.raises(ValueError, match=r"avg\.faiss"):
        MoLIndex.load(folder)


@pytest.mark.skipif(not HAS_FAISS, reason="faiss not installed")
@pytest.mark.parametrize("content", [b"garbage", b"", None])
def test_a_damaged_faiss_file_is_left_out_and_its_stage_rebuilt(
    tmp_path: Path, content: bytes | None, caplog: pytest.LogCaptureFixture
) -> None:
    """The save recorded the file's SHA-256: a changed file is not read, and the stage (derived
    from the cached components) is rebuilt at its first use, as if it had not been saved."""
    folder = _saved(tmp_path)
    expected = MoLIndex.load(folder, device="cpu")
    path = folder / "avg.faiss"
    path.write_bytes(path.read_bytes()[:40] if content is None else content)
    with caplog.at_level("WARNING", logger="rag_relax_plugins.index.persistence"):
        loaded = MoLIndex.load(folder, device="cpu")
    assert "avg.faiss is not the file saved with this index" in caplog.text
    q = torch.randn(4, 12)  # flat stages: the rebuilt one finds what the saved one finds
    assert loaded.search(q, 5, strategy=TopKAvg(10))[1] == expected.search(q, 5, strategy=TopKAvg(10))[1]


@pytest.mark.skipif(not HAS_FAISS, reason="faiss not installed")
def test_a_faiss_file_of_another_width_is_refused(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    import faiss

    folder = _saved(tmp_path)
    faiss.write_index(faiss.IndexFlatIP(5), str(folder / "avg.faiss"))
    with caplog.at_level("WARNING", logger="rag_relax_plugins.index.persistence"):
        assert len(MoLIndex.load(folder, device="cpu")) == 60  # not the saved file: left out
    assert "not the file saved" in caplog.text
    _without_digests(folder)
    with pytest.raises(ValueError, match="5-d vectors"):
        MoLIndex.load(folder)


@pytest.mark.skipif(not HAS_FAISS, reason="faiss not installed")
@pytest.mark.parametrize(("key", "value"), [
    ("faiss_files", [["avg"]]), ("faiss_files", ["mean"]), ("faiss_files", "avg"),
    ("faiss_sha256", ["avg"]), ("faiss_sha256", {"avg": "00"}), ("faiss_sha256", {"mean": "0" * 64}),
    ("faiss_sha256", {"avg": 1}),
])
def test_malformed_faiss_file_lists_and_digests_are_value_errors(tmp_path: Path, key: str, value: object) -> None:
    folder = _saved(tmp_path)
    config = json.loads((folder / "config.json").read_text())
    config[key] = value
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match=key):
        MoLIndex.load(folder)


def test_operator_dict_filters_are_refused_by_the_index_too() -> None:
    idx = MoLIndex(_sim(), device="cpu")
    idx.add(["a"], torch.randn(1, 10), metadata=[{"n": 1}])
    with pytest.raises(TypeError, match="operator filters"):
        idx.search(torch.randn(1, 12), 1, filter={"n": {"$in": [1]}})  # matched nothing silently


def test_a_duplicate_id_is_named_in_linear_time() -> None:
    """The duplicate check counted every id in the whole list (quadratic): 20,000 ids with one
    duplicate took seconds before the error; a million would take hours."""
    import time

    ids = [f"d{i}" for i in range(30_000)] + ["d7"]
    idx = MoLIndex(MoLSimilarity.cosine(4), device="cpu")
    start = time.perf_counter()
    with pytest.raises(ValueError, match=r"ids must be unique, got duplicates \['d7'\]"):
        idx.add(ids, torch.zeros(len(ids), 4))
    assert time.perf_counter() - start < 3.0  # linear: milliseconds (quadratic: about 25 s)
    assert len(idx) == 0


def test_exact_filter_threshold_is_checked_when_set(tmp_path: Path) -> None:
    """Set after construction, a numpy integer made every save fail (not JSON) and None made
    every filtered search fail."""
    import numpy as np

    idx = MoLIndex(MoLSimilarity.cosine(4), device="cpu")
    idx.add(["a", "b"], torch.randn(2, 4))
    idx.exact_filter_threshold = np.int64(5)  # type: ignore[assignment]
    assert type(idx.exact_filter_threshold) is int
    idx.save(tmp_path / "ix")
    assert MoLIndex.load(tmp_path / "ix", device="cpu").exact_filter_threshold == 5
    for bad in (None, 0, 2.5, True):
        with pytest.raises((TypeError, ValueError), match="exact_filter_threshold"):
            idx.exact_filter_threshold = bad  # type: ignore[assignment]
    assert idx.exact_filter_threshold == 5 and idx.search(torch.randn(1, 4), 1, filter=["a"])[1] == [["a"]]


@pytest.mark.skipif(importlib.util.find_spec("faiss") is None, reason="faiss not installed")
def test_an_explicit_ivf_nlist_that_is_capped_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    """``ivf_nlist=256`` over 1,000 items silently built 25 cells."""
    idx = MoLIndex(MoLSimilarity.cosine(8), device="cpu", first_stage=FirstStageConfig(kind="ivf", ivf_nlist=256))
    idx.add([f"d{i}" for i in range(1000)], torch.randn(1000, 8))
    with caplog.at_level("WARNING", logger="rag_relax_plugins.index.first_stage"):
        idx.search(torch.randn(1, 8), 3, strategy=TopKAvg(10))
    assert "ivf_nlist=256 is capped at 25 cells for 1000 vectors" in caplog.text


def test_float_rows_reads_numbers_as_torch_tensor_does() -> None:
    # the fast numpy path for embedding rows must give torch.tensor's float32 values, and leave
    # anything that is not numbers to torch.tensor's own errors
    import numpy as np

    from rag_relax_plugins.index._guards import float_rows

    rng = np.random.default_rng(0)
    rows = (rng.standard_normal((50, 7)) * 10.0 ** rng.integers(-40, 38, (50, 7))).tolist()
    assert torch.equal(float_rows(rows), torch.tensor(rows, dtype=torch.float32))
    assert torch.equal(float_rows([[1, True, 2.5]]), torch.tensor([[1.0, 1.0, 2.5]]))
    assert float_rows([[1e39]]).isinf().all()  # beyond float32: inf, for the caller's finiteness check
    for bad in ([["a", "b"]], [[1.0, None]], [[1.0], [2.0, 3.0]]):
        with pytest.raises((TypeError, ValueError)):
            float_rows(bad)


def test_an_exact_two_pass_budget_past_int64_is_the_whole_corpus() -> None:
    # ExactTwoPass(budget=10**30) raised OverflowError comparing it with a torch tensor (review)
    torch.manual_seed(0)
    idx = MoLIndex(_sim(), device="cpu")
    idx.add([f"d{i}" for i in range(40)], torch.randn(40, 10))
    q = torch.randn(3, 12)
    s, ids = idx.search(q, 5, strategy=ExactTwoPass(budget=10**30))
    want_s, want_ids = idx.search(q, 5, strategy=BruteForce())
    assert ids == want_ids and torch.allclose(s, want_s)


@pytest.mark.parametrize("key", ["component_dim", "num_item_embeddings", "gate_hidden_dim"])
def test_a_huge_size_in_config_json_is_refused_before_the_similarity_is_built(tmp_path: Path, key: str) -> None:
    # the similarity was built at the config's size before its weights were compared: 10**8
    # allocated gigabytes or raised the allocator's RuntimeError (resource review)
    folder = _saved(tmp_path, "torch")
    cfg = json.loads((folder / "config.json").read_text())
    cfg["similarity"][key] = 10**12  # the old path's allocation fails at once at this size
    (folder / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match=r"similarity\.safetensors does not match config\.json: .* by the config|"
                                         r"config\.json describes a similarity that cannot be built"):
        MoLIndex.load(folder)
