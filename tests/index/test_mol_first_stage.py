"""First stages against a brute-force top-n reference (torch chunking, masks, FAISS flat)."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from rag_relax_plugins.index import first_stage as fs
from rag_relax_plugins.index.first_stage import FirstStageConfig, TorchSearcher, build_searcher
from rag_relax_plugins.index.stages import FirstStages

HAS_FAISS = importlib.util.find_spec("faiss") is not None


def _reference(
    q: torch.Tensor, x: torch.Tensor, n: int, allowed: torch.Tensor | None
) -> torch.Tensor:
    scores = q @ x.T
    if allowed is not None:
        scores = scores.masked_fill(~allowed, float("-inf"))
    top_s, top_i = scores.topk(min(n, x.shape[0]), dim=1)
    return top_i.masked_fill(torch.isinf(top_s), -1)


def test_torch_searcher_chunks_match_reference(monkeypatch: pytest.MonkeyPatch) -> None:
    torch.manual_seed(0)
    x, q = torch.randn(1000, 8), torch.randn(5, 8)
    monkeypatch.setattr(fs, "_CHUNK_ELEMENTS", 5 * 70)  # 70-row chunks, n spans several chunks
    allowed = torch.rand(1000) < 0.3
    searcher = TorchSearcher(x)
    for n, mask in ((10, None), (150, None), (40, allowed)):
        assert torch.equal(searcher.search(q, n, mask), _reference(q, x, n, mask))


def test_fewer_allowed_than_n_pads_with_minus_one() -> None:
    x, q = torch.randn(50, 4), torch.randn(2, 4)
    allowed = torch.zeros(50, dtype=torch.bool)
    allowed[[3, 7, 9]] = True
    got = TorchSearcher(x).search(q, 6, allowed)
    assert got.shape == (2, 6)
    assert all(sorted(row[:3].tolist()) == [3, 7, 9] for row in got)
    assert bool((got[:, 3:] == -1).all())


@pytest.mark.skipif(not HAS_FAISS, reason="faiss not installed")
def test_faiss_flat_matches_torch_and_honours_the_mask() -> None:
    torch.manual_seed(1)
    x, q = torch.randn(400, 6), torch.randn(4, 6)
    allowed = torch.rand(400) < 0.5
    flat = build_searcher(FirstStageConfig(kind="flat"), x)
    assert flat.exact and len(flat) == 400
    assert torch.equal(flat.search(q, 12), _reference(q, x, 12, None))
    got = flat.search(q, 12, allowed)
    assert torch.equal(got, _reference(q, x, 12, allowed))
    flat.add(torch.randn(10, 6))
    assert len(flat) == 410


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="kind"):
        FirstStageConfig(kind="annoy")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="ivf_nprobe"):
        FirstStageConfig(ivf_nprobe=0)
    with pytest.raises(ValueError, match="unknown FirstStageConfig keys"):
        FirstStageConfig.from_dict({"kind": "torch", "nprobe": 3})
    cfg = FirstStageConfig(kind="hnsw", hnsw_m=16)
    assert FirstStageConfig.from_dict(cfg.to_dict()) == cfg


def test_first_stages_build_lazily_extend_and_rebuild_when_stale() -> None:
    torch.manual_seed(2)
    comps = torch.randn(30, 3, 4)  # (N, P_x, d_P)
    stages = FirstStages(FirstStageConfig(kind="torch"))
    assert stages.current("avg", comps) is None  # nothing built yet
    avg = stages.get("avg", comps)
    assert len(avg) == 30 and stages.get("avg", comps) is avg  # built once, reused
    assert torch.equal(fs.stage_vectors("avg", comps), comps.mean(dim=1))
    per = stages.get("per_embd", comps)
    assert len(per) == 90 and torch.equal(per.vectors[4], comps[1, 1])  # vector v -> row v // P_x
    more = torch.cat([comps, torch.randn(5, 3, 4)])
    stages.append(more[30:], 30)
    assert stages.current("avg", more) is None  # a torch stage is dropped (a view), rebuilt free
    assert len(stages.get("avg", more)) == 35
    assert stages.current("per_embd", comps) is None  # length no longer matches: never searched
    with pytest.raises(ValueError, match="first stage"):
        fs.stage_vectors("mean", comps)


@pytest.mark.skipif(not HAS_FAISS, reason="faiss not installed")
def test_first_stages_extend_faiss_on_append_and_share_search_knobs() -> None:
    torch.manual_seed(3)
    comps = torch.randn(40, 2, 4)
    stages = FirstStages(FirstStageConfig(kind="hnsw"))
    per = stages.get("per_embd", comps)
    more = torch.cat([comps, torch.randn(6, 2, 4)])
    stages.append(more[40:], 40)
    assert stages.current("per_embd", more) is per and len(per) == 92  # extended in place
    assert set(stages.faiss_files(more)) == {"per_embd"}  # "avg" never built: nothing to save
    assert stages.faiss_files(comps) == {}  # a stage that does not match the cache is not saved
    stages.configure(hnsw_ef_search=7)
    assert isinstance(per, fs.FaissSearcher) and per.config.hnsw_ef_search == 7
    with pytest.raises(ValueError, match="only"):
        stages.configure(hnsw_m=8)
    stages.invalidate()
    assert stages.current("per_embd", more) is None


def test_an_outgrown_ivf_stage_is_warned_about_once_and_a_build_resets_it(caplog: pytest.LogCaptureFixture) -> None:
    """Adds go to the cells an IVF stage was trained with; at 4x its build size a warning says so
    (once) and names build(), after which the count starts again."""
    pytest.importorskip("faiss")
    import logging

    from rag_relax_plugins.core.mol import MoLSimilarity
    from rag_relax_plugins.index import MoLIndex, TopKPerEmbd

    torch.manual_seed(0)
    idx = MoLIndex(MoLSimilarity.cosine(16), first_stage="ivf")
    idx.add([f"a{i}" for i in range(500)], torch.randn(500, 16))
    idx.search(torch.randn(1, 16), 5, strategy=TopKPerEmbd(20))  # builds the per-component stage
    with caplog.at_level(logging.WARNING, logger="rag_relax_plugins.index.stages"):
        for b in range(5):
            idx.add([f"b{b}_{i}" for i in range(500)], torch.randn(500, 16))
            assert ("trained with" in caplog.text) == (len(idx) >= 2000), len(idx)
        assert caplog.text.count("MoLIndex.build() retrains it") == 1
        idx.build()
        caplog.clear()
        idx.add([f"c{i}" for i in range(500)], torch.randn(500, 16))
        assert "trained with" not in caplog.text


@pytest.mark.skipif(not HAS_FAISS, reason="faiss not installed")
def test_a_small_ivf_stage_trains_without_faiss_printing_a_warning(capfd: pytest.CaptureFixture[str]) -> None:
    # fewer than 39 vectors get one cell; FAISS still printed "please provide at least 39 training
    # points" to stderr at every build, past logging (review 2026-12-05)
    torch.manual_seed(0)
    x = torch.nn.functional.normalize(torch.randn(10, 8), dim=1)
    searcher = build_searcher(FirstStageConfig(kind="ivf"), x)
    got = searcher.search(x[:2], 3)
    assert torch.equal(got, _reference(x[:2], x, 3, None))  # one cell: every vector visited
    assert "training points" not in capfd.readouterr().err
    build_searcher(FirstStageConfig(kind="ivf", ivf_nlist=4), torch.randn(200, 8))  # 50 per cell: default rule
    assert "training points" not in capfd.readouterr().err
