"""What the index accepts it can save, and what it loads is what it saved: text that UTF-8 cannot
encode is refused by ``add`` (it was accepted, and every later save failed); a FAISS file of
another kind than ``config.json`` says is refused on load (an HNSW graph loaded as a "flat" stage
was searched as exact)."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from rag_relax_plugins.core.mol import MoLConfig, MoLSimilarity
from rag_relax_plugins.index import FirstStageConfig, MoLIndex, TopKAvg

HAS_FAISS = importlib.util.find_spec("faiss") is not None

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _index(kind: str = "torch") -> MoLIndex:
    torch.manual_seed(0)
    sim = MoLSimilarity(MoLConfig(query_dim=8, item_dim=8, num_query_embeddings=2, num_item_embeddings=2,
                                  component_dim=4, gate_hidden_dim=8))
    idx = MoLIndex(sim, first_stage=FirstStageConfig(kind=kind), device="cpu")
    idx.add([f"d{i}" for i in range(60)], torch.randn(60, 8), metadata=[{"n": i} for i in range(60)])
    return idx


@pytest.mark.parametrize("case", ["id", "metadata value", "metadata key", "nested"])
def test_add_refuses_text_utf8_cannot_encode_and_adds_nothing(tmp_path: Path, case: str) -> None:
    idx = _index()
    ids, metadata = ["x1", "x2"], [{"k": "fine"}, {"k": "fine"}]
    if case == "id":
        ids[1] = "x\ud800"
    elif case == "metadata value":
        metadata[1] = {"k": "bad \udc80 byte"}  # as bytes decoded with errors="surrogateescape"
    elif case == "metadata key":
        metadata[1] = {"k\ud800": 1}
    else:
        metadata[1] = {"k": [{"deep": "\udfff"}]}
    with pytest.raises(ValueError, match="not valid Unicode text"):
        idx.add(ids, torch.randn(2, 8), metadata=metadata)
    assert len(idx) == 60 and "x1" not in idx.ids
    idx.save(tmp_path / "i")  # still saveable
    assert MoLIndex.load(tmp_path / "i", device="cpu").ids == idx.ids


def test_unicode_text_beyond_ascii_round_trips(tmp_path: Path) -> None:
    idx = _index()
    idx.add(["é✓", "日本"], torch.randn(2, 8), metadata=[{"città": "Zürich 😀"}, {}])
    idx.save(tmp_path / "i")
    loaded = MoLIndex.load(tmp_path / "i", device="cpu")
    assert loaded.get_metadata(["é✓"]) == [{"città": "Zürich 😀"}] and "日本" in loaded.ids


def test_a_save_holding_nan_metadata_still_loads(tmp_path: Path) -> None:
    """Versions before 2026-12-02 accepted NaN metadata and saved it as a bare NaN token: such
    saves keep loading (a guard: refusing them was tried and reverted)."""
    _index().save(tmp_path / "i")
    path = tmp_path / "i" / "metadata.json"
    rows = json.loads(path.read_text(encoding="utf-8"))
    rows[3] = {"n": float("nan")}
    path.write_text(json.dumps(rows), encoding="utf-8")
    loaded = MoLIndex.load(tmp_path / "i")
    assert math.isnan(loaded.get_metadata(["d3"])[0]["n"]) and len(loaded) == 60


def test_a_numpy_exact_filter_threshold_is_stored_as_an_int_and_saves(tmp_path: Path) -> None:
    """It was accepted and stored as numpy.int64, and every save then failed (not JSON)."""
    idx = MoLIndex(_index().similarity, exact_filter_threshold=np.int64(7), device="cpu")
    assert type(idx.exact_filter_threshold) is int
    idx.add(["a"], torch.randn(1, 8))
    idx.save(tmp_path / "i")
    assert MoLIndex.load(tmp_path / "i").exact_filter_threshold == 7


@pytest.mark.skipif(not HAS_FAISS, reason="faiss not installed")
@pytest.mark.parametrize(("saved", "declared"), [("hnsw", "flat"), ("flat", "hnsw"), ("ivf", "flat"), ("hnsw", "torch")])
def test_load_refuses_a_faiss_file_of_another_kind(tmp_path: Path, saved: str, declared: str) -> None:
    idx = _index(saved)
    idx.search(torch.randn(2, 8), 5, strategy=TopKAvg(20))  # builds the first stage, which save writes
    idx.save(tmp_path / "i")
    config_path = tmp_path / "i" / "config.json"
    config = json.loads(config_path.read_text(encoding="utf-8"))
    assert config["faiss_files"], "the case must save a FAISS file"
    config["first_stage"]["kind"] = declared
    config_path.write_text(json.dumps(config), encoding="utf-8")
    with pytest.raises(ValueError, match=f"but the first stage kind is '{declared}'"):
        MoLIndex.load(tmp_path / "i")
