"""FAISS first stages kept in step with upserts and deletes (index.stages): label maps against a
plain-Python reference, searches against a freshly built index, tombstones, rebuilds, saves."""

from __future__ import annotations

import importlib.util
import json
import logging
import random
from pathlib import Path
from typing import Any

import pytest
import torch

from rag_relax_plugins.core.mol import MoLConfig, MoLSimilarity
from rag_relax_plugins.index import Combined, MoLIndex, TopKAvg, TopKPerEmbd
from rag_relax_plugins.index.stages import MAX_DEAD_FRACTION, StageLabels

needs_faiss = pytest.mark.skipif(importlib.util.find_spec("faiss") is None, reason="faiss not installed")


class _ReferenceLabels:
    """The label -> row map kept the slow, obvious way: a list, -1 for a dead label."""

    def __init__(self, per_item: int, n_items: int) -> None:
        self.per_item = per_item
        self.rows = [r for r in range(n_items) for _ in range(per_item)]

    def append(self, start: int, m: int) -> None:
        self.rows += [r for r in range(start, start + m) for _ in range(self.per_item)]

    def replace(self, rows: list[int]) -> None:
        self.rows = [-1 if r in rows else r for r in self.rows]
        self.rows += [r for r in rows for _ in range(self.per_item)]

    def delete(self, gone: set[int]) -> None:
        def new(r: int) -> int:
            return -1 if r < 0 or r in gone else r - sum(1 for g in gone if g < r)

        self.rows = [new(r) for r in self.rows]


@pytest.mark.parametrize("per_item", [1, 3])
def test_stage_labels_follow_a_random_edit_sequence(per_item: int) -> None:
    rng = random.Random(per_item)
    n = 12
    labels, ref = StageLabels(per_item, n * per_item), _ReferenceLabels(per_item, n)
    for _ in range(60):
        op = rng.choice(["append", "replace", "delete"])
        if op == "append":
            m = rng.randint(1, 4)
            labels.append(n, m)
            ref.append(n, m)
            n += m
        elif op == "replace" and n:
            rows = rng.sample(range(n), rng.randint(1, min(4, n)))
            labels.replace(torch.tensor(rows))
            ref.replace(rows)
        elif op == "delete" and n > 1:
            gone = set(rng.sample(range(n), rng.randint(1, min(3, n - 1))))
            labels.delete(torch.tensor([r not in gone for r in range(n)]))
            ref.delete(gone)
            n -= len(gone)
        got = [v // per_item for v in range(labels.total)] if labels.rows is None else labels.rows.tolist()
        assert got == ref.rows  # the implicit identity too (appends only so far)
        assert labels.total == len(ref.rows) and labels.live == n * per_item == sum(r >= 0 for r in ref.rows)
        assert StageLabels.check_rows(torch.tensor(ref.rows), len(ref.rows), n, per_item) is None
        # searches see live labels only, mapped back to rows; a filter keeps the allowed rows' labels
        allowed = torch.tensor([rng.random() < 0.5 for _ in range(n)])
        mask = labels.allowed(allowed)
        assert mask is not None and mask.tolist() == [r >= 0 and bool(allowed[r]) for r in ref.rows]
        probe = torch.tensor([[rng.randrange(labels.total) for _ in range(5)] + [-1]])
        assert labels.to_rows(probe).tolist() == [[ref.rows[v] for v in probe[0, :5].tolist()] + [-1]]


def test_check_rows_names_what_is_wrong() -> None:
    good = torch.tensor([0, -1, 1, 2])
    assert StageLabels.check_rows(good, 4, 3, 1) is None
    assert "int64" in StageLabels.check_rows(good.int(), 4, 3, 1)  # type: ignore[operator]
    assert "(5,)" in StageLabels.check_rows(good, 5, 3, 1)  # type: ignore[operator]
    assert "[-1, 3)" in StageLabels.check_rows(torch.tensor([0, 3, 1, 2]), 4, 3, 1)  # type: ignore[operator]
    assert "live label" in StageLabels.check_rows(torch.tensor([0, 0, 1, 2]), 4, 3, 1)  # type: ignore[operator]
    assert "live label" in StageLabels.check_rows(torch.tensor([0, -1, 1, -1]), 4, 3, 1)  # type: ignore[operator]
    assert StageLabels.check_rows(torch.tensor([0, 0, -1, 1, 1]), 5, 2, 2) is None
    assert "consecutive" in StageLabels.check_rows(torch.tensor([0, 1, 0, 1, -1]), 5, 2, 2)  # type: ignore[operator]


def _similarity() -> MoLSimilarity:
    torch.manual_seed(0)
    return MoLSimilarity(MoLConfig(query_dim=16, item_dim=16, num_query_embeddings=2, num_item_embeddings=3,
                                   component_dim=8))


def _fresh_like(index: MoLIndex) -> MoLIndex:
    """An index built from scratch with the same items in the same rows (first stages identity)."""
    fresh = index.empty_like(index.similarity)
    fresh.add(index.ids, index.get_features(index.ids), index.get_metadata(index.ids))
    return fresh


STRATEGIES = [TopKPerEmbd(8), TopKAvg(8), Combined(6, 6)]


@needs_faiss
@pytest.mark.parametrize("kind", ["flat", "hnsw", "ivf"])
def test_edits_keep_the_built_faiss_stages_and_search_like_a_fresh_build(kind: str) -> None:
    """Upserts and deletes no longer drop the FAISS stages (an IVF or HNSW rebuild takes seconds
    at 100k items); through them, an exact (flat) stage returns what a freshly built index does,
    and the approximate ones find the brute-force top 5 when their budget covers the corpus."""
    rng = random.Random(1)
    index = MoLIndex(_similarity(), first_stage=kind, device="cpu")
    index.add([f"d{i}" for i in range(400)], torch.randn(400, 16))
    index.configure_first_stage(ivf_nprobe=10_000, hnsw_ef_search=10_000)  # the "covering" searches below
    q = torch.randn(6, 16)
    for s in STRATEGIES:
        index.search(q, 5, strategy=s)  # builds both stages
    comps = index.item_state.components
    built = {name: index._first_stages.current(name, comps) for name in ("per_embd", "avg")}
    fresh_id = 400
    for step in range(8):
        ids = index.ids
        index.add(rng.sample(ids, 5), torch.randn(5, 16))  # upsert 5
        index.delete(rng.sample(ids, 4))
        index.add([f"d{fresh_id + j}" for j in range(3)], torch.randn(3, 16))  # add 3 new
        fresh_id += 3
        comps = index.item_state.components
        for name, searcher in built.items():  # 5 + 4 of ~400 per step: far below the rebuild point
            assert index._first_stages.current(name, comps) is searcher, (step, name)
        exact = index.search(q, 5)
        fresh = _fresh_like(index)
        for s in STRATEGIES:
            got = index.search(q, 5, strategy=s)
            if kind == "flat":
                want = fresh.search(q, 5, strategy=s)
                assert got[1] == want[1], (step, s)
                torch.testing.assert_close(got[0], want[0])
            covering = index.search(q, 5, strategy=type(s)(*([len(index) * 3] * (2 if isinstance(s, Combined) else 1))))
            assert covering[1] == exact[1], (step, s)


@needs_faiss
@pytest.mark.parametrize("kind", ["flat", "hnsw", "ivf"])
def test_a_replaced_vector_is_never_a_candidate_again(kind: str) -> None:
    """Item "a" first sits exactly on the query, then is moved to the opposite side: its old
    vector is still in the FAISS index, dead; a one-candidate search must not return "a" from it."""
    index = MoLIndex(MoLSimilarity.cosine(8), first_stage=kind, device="cpu")
    torch.manual_seed(4)
    q = torch.nn.functional.normalize(torch.randn(1, 8), dim=1)
    index.add(["a", *[f"x{i}" for i in range(99)]], torch.cat([q, torch.randn(99, 8)]))
    assert index.search(q, 1, strategy=TopKAvg(1))[1] == [["a"]]
    index.add(["a"], -q)
    best_other = index.search(q, 1)[1]
    assert best_other != [["a"]]
    assert index.search(q, 1, strategy=TopKAvg(1))[1] == best_other
    assert index.search(q, 1, strategy=TopKPerEmbd(1))[1] == best_other
    index.delete([best_other[0][0]])
    assert best_other[0][0] not in index.search(q, 10, strategy=TopKAvg(10))[1][0]


def _with_avg_stage(kind: str, n: int, queries: int) -> tuple[MoLIndex, torch.Tensor, Any]:
    """A cosine index of ``n`` random 8-d items whose mean stage is built, queries, that stage."""
    index = MoLIndex(MoLSimilarity.cosine(8), first_stage=kind, device="cpu")
    index.add([f"d{i}" for i in range(n)], torch.randn(n, 8))
    q = torch.randn(queries, 8)
    index.search(q, 3, strategy=TopKAvg(10))
    stage = index._first_stages.current("avg", index.item_state.components)
    assert stage is not None
    return index, q, stage


@needs_faiss
def test_a_stage_with_too_many_dead_vectors_is_rebuilt(caplog: pytest.LogCaptureFixture) -> None:
    index, q, first = _with_avg_stage("hnsw", 200, 2)
    limit = int(MAX_DEAD_FRACTION * 150)  # dead labels allowed once 50 items are gone
    index.delete([f"d{i}" for i in range(limit)])
    assert index._first_stages.current("avg", index.item_state.components) is first
    index.add([f"d{i}" for i in range(limit, 60)], torch.randn(60 - limit, 8))  # upserts: more dead
    assert index._first_stages.current("avg", index.item_state.components) is None  # stale
    with caplog.at_level(logging.INFO, logger="rag_relax_plugins.index.stages"):
        got = index.search(q, 3, strategy=TopKAvg(200))
    assert "rebuilding the avg first stage" in caplog.text
    rebuilt = index._first_stages.current("avg", index.item_state.components)
    assert rebuilt is not None and rebuilt is not first and len(rebuilt) == len(index)
    assert got[1] == index.search(q, 3)[1]


@needs_faiss
def test_a_failed_faiss_edit_drops_the_stage_and_keeps_the_index(monkeypatch: pytest.MonkeyPatch) -> None:
    index, q, stage = _with_avg_stage("flat", 50, 1)

    def fail(vectors: torch.Tensor) -> None:
        raise MemoryError("simulated")

    monkeypatch.setattr(stage, "add", fail)
    index.add(["d3"], torch.randn(1, 8))  # the upsert itself succeeds
    assert index._first_stages.current("avg", index.item_state.components) is None
    assert index.search(q, 3, strategy=TopKAvg(50))[1] == index.search(q, 3)[1]


@needs_faiss
@pytest.mark.parametrize("kind", ["hnsw", "ivf"])
def test_an_edited_stage_is_saved_with_its_label_map_and_loads_unrebuilt(kind: str, tmp_path: Path) -> None:
    index = MoLIndex(_similarity(), first_stage=kind, device="cpu")
    index.add([f"d{i}" for i in range(300)], torch.randn(300, 16))
    q = torch.randn(4, 16)
    index.build()
    index.add(["d5", "d9"], torch.randn(2, 16))
    index.delete(["d0", "d100"])
    before = [index.search(q, 5, strategy=s) for s in STRATEGIES]
    index.save(tmp_path / "ix")
    config = json.loads((tmp_path / "ix" / "config.json").read_text())
    assert config["faiss_rows"] == ["avg", "per_embd"] and (tmp_path / "ix" / "stage_rows.safetensors").is_file()
    loaded = MoLIndex.load(tmp_path / "ix", device="cpu")
    comps = loaded.item_state.components
    searchers = [loaded._first_stages.current(name, comps) for name in ("per_embd", "avg")]
    assert all(s is not None for s in searchers)  # read, not rebuilt
    for s, (scores, ids) in zip(STRATEGIES, before, strict=True):
        got = loaded.search(q, 5, strategy=s)
        assert got[1] == ids and torch.equal(got[0], scores)
    assert [loaded._first_stages.current(name, comps) for name in ("per_embd", "avg")] == searchers
    # an unedited stage writes no map
    fresh = _fresh_like(loaded)
    fresh.build()
    fresh.save(tmp_path / "fresh")
    assert json.loads((tmp_path / "fresh" / "config.json").read_text())["faiss_rows"] == []
    assert not (tmp_path / "fresh" / "stage_rows.safetensors").exists()


@needs_faiss
def test_a_damaged_label_map_is_refused_by_name(tmp_path: Path) -> None:
    from safetensors.torch import load_file, save_file

    index = MoLIndex(MoLSimilarity.cosine(8), first_stage="flat", device="cpu")
    index.add([f"d{i}" for i in range(60)], torch.randn(60, 8))
    index.build(["avg"])
    index.delete(["d1"])
    index.save(tmp_path / "ix")
    path = tmp_path / "ix" / "stage_rows.safetensors"
    good = load_file(str(path))
    bad = good["avg"].clone()
    bad[bad.argmax()] = 0  # one row twice, the last row never
    save_file({"avg": bad}, str(path))
    with pytest.raises(ValueError, match=r"stage_rows.safetensors: avg does not match avg.faiss.*live label"):
        MoLIndex.load(tmp_path / "ix")
    save_file({"per_embd": good["avg"]}, str(path))
    with pytest.raises(ValueError, match="has no 'avg' tensor"):
        MoLIndex.load(tmp_path / "ix")
    config_path = tmp_path / "ix" / "config.json"
    config = json.loads(config_path.read_text())
    config_path.write_text(json.dumps({**config, "faiss_rows": ["per_embd"]}))
    with pytest.raises(ValueError, match="faiss_rows must be a list of names in faiss_files"):
        MoLIndex.load(tmp_path / "ix")
    # a save from before label maps (no "faiss_rows", no map file) still loads
    config.pop("faiss_rows")
    config_path.write_text(json.dumps(config))
    path.unlink()
    old = MoLIndex.load(tmp_path / "ix", device="cpu")
    q = torch.randn(2, 8)
    assert old.search(q, 4, strategy=TopKAvg(59))[1] == old.search(q, 4)[1]  # mismatched stage: rebuilt


def _check_stage_vectors(index: MoLIndex) -> None:
    """Every live label of both (flat) stages holds exactly its row's current cached vector(s)."""
    comps = index.item_state.components.float()
    for name in ("per_embd", "avg"):
        searcher = index._first_stages.current(name, index.item_state.components)
        assert searcher is not None, name
        stage = index._first_stages._stages[name]
        assert stage is not None
        labels = stage[1]
        stored = torch.from_numpy(searcher.index.reconstruct_n(0, len(searcher)))  # type: ignore[attr-defined]
        rows = labels.to_rows(torch.arange(len(searcher)).unsqueeze(0))[0]
        live = rows >= 0
        assert int(live.sum()) == len(index) * labels.per_item
        want = comps if name == "per_embd" else comps.mean(dim=1, keepdim=True)
        # the j-th live label of row r holds component j (the avg stage: the mean)
        order = torch.argsort(rows[live] * len(searcher) + torch.arange(len(searcher))[live])
        assert torch.equal(stored[live][order], want.reshape(-1, want.shape[-1]))


@needs_faiss
def test_mixed_adds_filters_and_the_stored_vectors_after_random_edits() -> None:
    """One add mixing existing and new ids; filters large enough to reach the first stage
    (exact_filter_threshold=1); after every step the FAISS vectors are read back and compared
    with the cache, and a flat index matches a fresh build with and without filters."""
    rng = random.Random(7)
    index = MoLIndex(_similarity(), first_stage="flat", device="cpu", exact_filter_threshold=1)
    index.add([f"d{i}" for i in range(200)], torch.randn(200, 16), [{"p": i % 3} for i in range(200)])
    q = torch.randn(3, 16)
    index.build()
    fresh_id = 200
    for step in range(6):
        ids = index.ids
        mixed = [*rng.sample(ids, 3), f"d{fresh_id}", f"d{fresh_id + 1}"]  # 3 upserts, 2 new ids
        fresh_id += 2
        index.add(mixed, torch.randn(5, 16), [{"p": rng.randrange(3)} for _ in mixed])
        index.delete(rng.sample(index.ids, 3))
        _check_stage_vectors(index)
        fresh = _fresh_like(index)
        id_filter = rng.sample(index.ids, 60)
        for flt in (None, {"p": 1}, id_filter, [id_filter, index.ids[:50], index.ids[-70:]]):
            for s in STRATEGIES:
                got, want = index.search(q, 4, strategy=s, filter=flt), fresh.search(q, 4, strategy=s, filter=flt)
                assert got[1] == want[1], (step, s, flt)
                torch.testing.assert_close(got[0], want[0])


@needs_faiss
@pytest.mark.parametrize("stage", ["per_embd", "avg"])  # the first and the second stage edited
def test_an_interrupt_inside_an_upsert_leaves_no_half_edited_stage(monkeypatch: pytest.MonkeyPatch, stage: str) -> None:
    """A KeyboardInterrupt inside one stage's FAISS add: no stage may serve a vector the cache
    does not hold (the avg stage once served the replaced one, edited or not, as its live count
    still matched the cache). Since the add is undone on an interrupt, the cache holds the old
    vector again; a later upsert must then be served everywhere."""
    index = MoLIndex(MoLSimilarity.cosine(8), first_stage="flat", device="cpu")
    torch.manual_seed(4)
    q = torch.nn.functional.normalize(torch.randn(1, 8), dim=1)
    index.add(["a", *[f"x{i}" for i in range(99)]], torch.cat([q, torch.randn(99, 8)]))
    index.build()
    avg = index._first_stages.current(stage, index.item_state.components)
    assert avg is not None

    def interrupted(vectors: torch.Tensor) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(avg, "add", interrupted)
    with pytest.raises(KeyboardInterrupt):
        index.add(["a"], -q)
    monkeypatch.undo()
    assert torch.equal(index.get_features(["a"]), q)  # the interrupted upsert was undone
    for strategy in (TopKAvg(1), TopKPerEmbd(1)):
        assert index.search(q, 1, strategy=strategy)[1] == index.search(q, 1)[1] == [["a"]]
    index.add(["a"], -q)
    for strategy in (TopKAvg(1), TopKPerEmbd(1)):
        assert index.search(q, 1, strategy=strategy)[1] == index.search(q, 1)[1] != [["a"]]


@needs_faiss
def test_a_faiss_file_of_other_items_is_not_used(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """An avg.faiss copied from a 100-item save into a 101-item one: loading warns and leaves
    the stage out, so that an upsert cannot make it look current (it then gave wrong results).
    Its SHA-256 tells (saves since 2026-12-04 evening); in an older save, its vector count."""
    import shutil

    small = MoLIndex(MoLSimilarity.cosine(8), first_stage="flat", device="cpu")
    x = torch.randn(101, 8)
    small.add([f"d{i}" for i in range(100)], x[:100])
    small.build(["avg"])
    small.save(tmp_path / "small")
    big = MoLIndex(MoLSimilarity.cosine(8), first_stage="flat", device="cpu")
    big.add([f"d{i}" for i in range(101)], x)
    big.build(["avg"])
    big.save(tmp_path / "big")
    shutil.copy(tmp_path / "small" / "avg.faiss", tmp_path / "big" / "avg.faiss")
    config_path = tmp_path / "big" / "config.json"
    config = json.loads(config_path.read_text())
    for digests in (config["faiss_sha256"], None):
        if digests is None:  # a save from before the digests
            del config["faiss_sha256"]
            config_path.write_text(json.dumps(config))
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="rag_relax_plugins.index.persistence"):
            loaded = MoLIndex.load(tmp_path / "big", device="cpu")
        assert ("holds 100 vectors, not the 101" if digests is None else "SHA-256 differs") in caplog.text
        loaded.add(["d100"], torch.randn(1, 8))
        q = torch.randn(3, 8)
        assert loaded.search(q, 3, strategy=TopKAvg(101))[1] == loaded.search(q, 3)[1]


@needs_faiss
def test_a_faiss_file_of_another_save_of_as_many_items_is_not_used(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Two saves of 100 items each, different vectors: the vector count cannot tell their avg.faiss
    files apart; the SHA-256 recorded at save does. Loaded with the other save's file, approximate
    search returned the neighbours of the other items' vectors."""
    import shutil

    for name, seed in (("a", 0), ("b", 1)):
        index = MoLIndex(MoLSimilarity.cosine(8), first_stage="flat", device="cpu")
        index.add([f"d{i}" for i in range(100)], torch.randn(100, 8, generator=torch.Generator().manual_seed(seed)))
        index.build(["avg"])
        index.save(tmp_path / name)
    shutil.copy(tmp_path / "a" / "avg.faiss", tmp_path / "b" / "avg.faiss")
    with caplog.at_level(logging.WARNING, logger="rag_relax_plugins.index.persistence"):
        loaded = MoLIndex.load(tmp_path / "b", device="cpu")
    assert "avg.faiss is not the file saved with this index" in caplog.text
    q = torch.randn(20, 8, generator=torch.Generator().manual_seed(2))
    # a flat stage over one vector per item: its 10 candidates hold the exact top 5
    assert loaded.search(q, 5, strategy=TopKAvg(10))[1] == loaded.search(q, 5)[1]


@needs_faiss
def test_the_packed_bitmap_of_a_search_is_its_own_even_if_another_search_replaces_the_cache() -> None:
    """FaissSearcher caches the bitmap of the last mask; a concurrent search replacing that cache
    between the write and the read once handed FAISS the other search's filter (items outside
    the filter came back). Simulated deterministically: every write of mask B's bitmap is at
    once replaced by mask A's, as another thread's search would."""
    import numpy as np

    from rag_relax_plugins.index import first_stage as fs

    mask_a, mask_b = torch.arange(64) < 32, torch.arange(64) >= 32
    other = (mask_a, np.packbits(mask_a.numpy(), bitorder="little"))

    class Racing(fs.FaissSearcher):
        def __setattr__(self, name: str, value: object) -> None:
            raced = name == "_bits" and isinstance(value, tuple) and value[0] is mask_b
            super().__setattr__(name, other if raced else value)

    built = fs.build_searcher(fs.FirstStageConfig(kind="flat"), torch.randn(64, 4))
    assert isinstance(built, fs.FaissSearcher)
    searcher = Racing(built.config, built.index)
    got = searcher.search(torch.randn(3, 4), 10, mask_b)
    assert bool((got >= 32).all()), got  # only mask B's vectors
    assert searcher._bits is other  # the race did happen


@needs_faiss
def test_an_interrupt_in_one_stage_leaves_the_other_stage_out_too(monkeypatch: pytest.MonkeyPatch) -> None:
    """FirstStages alone (no MoLIndex around it to invalidate): a KeyboardInterrupt inside the
    per-component stage's add during an upsert must not leave the mean stage in use, unedited,
    with its live count still matching the cache."""
    from rag_relax_plugins.index.first_stage import FirstStageConfig
    from rag_relax_plugins.index.stages import FirstStages

    comps = torch.randn(20, 2, 4)
    stages = FirstStages(FirstStageConfig(kind="flat"))
    per_embd, avg = stages.get("per_embd", comps), stages.get("avg", comps)

    def interrupted(vectors: torch.Tensor) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(per_embd, "add", interrupted)
    with pytest.raises(KeyboardInterrupt):
        stages.replace(torch.tensor([3]), torch.randn(1, 2, 4), 20)
    assert stages.current("per_embd", comps) is None and stages.current("avg", comps) is None
    assert avg is not stages.get("avg", comps)  # rebuilt


def test_a_delete_leaves_the_label_map_room_to_grow() -> None:
    """After a delete the next append writes into the same buffers (no copy of the whole map)."""
    labels = StageLabels(2, 2 * 100)
    labels.delete(torch.arange(100) % 10 != 0)  # 90 rows left
    rows = labels.rows
    assert rows is not None and rows.shape[0] == 200
    before = rows.data_ptr()
    labels.append(90, 5)
    after = labels.rows
    assert after is not None and after.data_ptr() == before and after.shape[0] == 210
    assert after[200:].tolist() == [r for r in range(90, 95) for _ in range(2)]
