"""MoLIndex persistence: bit-identical round trip, atomic save, format checks, no pickle."""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from rag_relax_plugins._io import SAVE_MARKER
from rag_relax_plugins.core.mol import MoLConfig, MoLSimilarity
from rag_relax_plugins.index import Combined, FirstStageConfig, MoLIndex, TopKAvg, persistence

HAS_FAISS = importlib.util.find_spec("faiss") is not None


def _index(
    first_stage: FirstStageConfig | str = "torch", cache_dtype: str = "fp32", n: int = 300
) -> MoLIndex:
    torch.manual_seed(0)
    sim = MoLSimilarity(
        MoLConfig(
            query_dim=8,
            item_dim=6,
            num_query_embeddings=2,
            num_item_embeddings=2,
            component_dim=4,
            gate_hidden_dim=4,
        )
    )
    idx = MoLIndex(sim, first_stage=first_stage, cache_dtype=cache_dtype, device="cpu")
    idx.add(
        [f"i{k}" for k in range(n)],
        torch.randn(n, 6),
        metadata=[{"k": k, "t": [k, "x"]} for k in range(n)],
    )
    return idx


def _all_results(idx: MoLIndex, q: torch.Tensor) -> list[tuple[torch.Tensor, list[list[str]]]]:
    return [idx.search(q, 9, strategy=s) for s in (None, TopKAvg(30), Combined(20, 20))]


CASES: list[tuple[FirstStageConfig | str, str]] = [("torch", "fp32"), ("torch", "bf16")]
if HAS_FAISS:
    CASES += [
        (FirstStageConfig(kind="hnsw"), "fp32"),
        (FirstStageConfig(kind="ivf", ivf_nprobe=2), "fp16"),
    ]


@pytest.mark.parametrize(("first_stage", "dtype"), CASES)
def test_round_trip_is_bit_identical(
    tmp_path: Path, first_stage: FirstStageConfig | str, dtype: str
) -> None:
    idx = _index(first_stage, dtype)
    q = torch.randn(4, 8)
    before = _all_results(idx, q)
    idx.save(tmp_path / "ix")
    files = {p.name for p in (tmp_path / "ix").iterdir()}
    assert {
        "config.json",
        "similarity.safetensors",
        "items.safetensors",
        "ids.json",
        "metadata.json",
        SAVE_MARKER,
    } <= files
    assert not any(p.suffix in {".pkl", ".pt", ".bin"} for p in (tmp_path / "ix").iterdir())
    if isinstance(first_stage, FirstStageConfig):
        assert {"per_embd.faiss", "avg.faiss"} <= files
    loaded = MoLIndex.load(tmp_path / "ix", device="cpu")
    after = _all_results(loaded, q)
    for (s1, i1), (s2, i2) in zip(before, after, strict=True):
        assert torch.equal(s1, s2) and i1 == i2
    assert loaded.get_metadata(["i5"]) == [{"k": 5, "t": [5, "x"]}]
    assert loaded.item_state.components.dtype == idx.item_state.components.dtype
    # the loaded index stays mutable
    loaded.delete(["i0"])
    loaded.add(["z"], torch.randn(1, 6))
    assert len(loaded) == 300 and "z" in loaded


def test_crash_during_save_keeps_previous_index(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    idx = _index()
    q = torch.randn(3, 8)
    idx.save(tmp_path / "ix")
    expected = MoLIndex.load(tmp_path / "ix", device="cpu").search(q, 5)
    idx.add(["extra"], torch.randn(1, 6) * 100)

    real = persistence._write_json

    def failing(path: Path, data: object) -> None:
        if path.name == "metadata.json":
            raise OSError("disk full (simulated)")
        real(path, data)

    monkeypatch.setattr(persistence, "_write_json", failing)
    with pytest.raises(OSError, match="simulated"):
        idx.save(tmp_path / "ix")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ix"]  # temp folder cleaned up
    again = MoLIndex.load(tmp_path / "ix", device="cpu")
    got = again.search(q, 5)
    assert torch.equal(got[0], expected[0]) and got[1] == expected[1]
    assert "extra" not in again


def test_crash_between_renames_loads_previous_version(tmp_path: Path) -> None:
    idx = _index(n=20)
    idx.save(tmp_path / "ix")
    (tmp_path / "ix").rename(tmp_path / ".ix.old-deadbeef")  # as if the process died mid-swap
    loaded = MoLIndex.load(tmp_path / "ix", device="cpu")
    assert len(loaded) == 20


def test_load_checks_format(tmp_path: Path) -> None:
    idx = _index(n=10)
    idx.save(tmp_path / "ix")
    cfg_path = tmp_path / "ix" / "config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg_path.write_text(json.dumps({**cfg, "format_version": 99}))
    with pytest.raises(ValueError, match="format version 99"):
        MoLIndex.load(tmp_path / "ix")
    cfg_path.write_text(json.dumps({**cfg, "format": "something-else"}))
    with pytest.raises(ValueError, match="not a MoL index"):
        MoLIndex.load(tmp_path / "ix")
    wrong = {**cfg, "similarity": {**cfg["similarity"], "component_dim": 5}}
    cfg_path.write_text(json.dumps(wrong))
    with pytest.raises(ValueError, match=r"does not match config\.json"):
        MoLIndex.load(tmp_path / "ix")
    cfg_path.write_text(json.dumps({**cfg, "num_items": 11}))
    with pytest.raises(ValueError, match="inconsistent"):
        MoLIndex.load(tmp_path / "ix")
    with pytest.raises(ValueError, match="no MoL index found"):
        MoLIndex.load(tmp_path / "missing")
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="directory"):
        idx.save(tmp_path / "file")


def test_overwrite_replaces_contents(tmp_path: Path) -> None:
    a, b = _index(n=10), _index(n=25)
    a.save(tmp_path / "ix")
    b.save(tmp_path / "ix")
    assert len(MoLIndex.load(tmp_path / "ix", device="cpu")) == 25
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ix"]


def test_save_refuses_a_folder_with_unrelated_files(tmp_path: Path) -> None:
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "my_thesis.txt").write_text("irreplaceable")
    (folder / "config.json").write_text('{"mine": true}')
    with pytest.raises(ValueError, match=r"refusing to replace .*nothing was changed"):
        _index(n=10).save(folder)
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "my_thesis.txt"]
    assert (folder / "my_thesis.txt").read_text() == "irreplaceable"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]  # no temp folder left


def test_save_over_an_index_saved_before_the_marker(tmp_path: Path) -> None:
    _index(n=10).save(tmp_path / "ix")
    (tmp_path / "ix" / SAVE_MARKER).unlink()  # as written by an older version
    (tmp_path / "ix" / "per_embd.faiss").write_bytes(b"stale")  # a file the new save omits
    _index(n=25).save(tmp_path / "ix")
    assert len(MoLIndex.load(tmp_path / "ix", device="cpu")) == 25
    assert not (tmp_path / "ix" / "per_embd.faiss").exists()
    assert (tmp_path / "ix" / SAVE_MARKER).is_file()


def _rewrite_items(folder: Path, **changes: torch.Tensor) -> None:
    tensors = load_file(str(folder / "items.safetensors"))
    save_file({**tensors, **changes}, str(folder / "items.safetensors"))


def test_load_reports_corrupt_files_as_value_errors(tmp_path: Path) -> None:
    idx = _index(n=10, cache_dtype="bf16")
    good = tmp_path / "good"
    idx.save(good)

    def broken(name: str) -> Path:
        folder = tmp_path / name
        shutil.copytree(good, folder)
        return folder

    f = broken("dtype")
    comps = load_file(str(f / "items.safetensors"))["components"]
    _rewrite_items(f, components=comps.float())
    with pytest.raises(ValueError, match=r"components has dtype torch\.float32, expected torch\.bfloat16"):
        MoLIndex.load(f)
    f = broken("nan")
    feats = load_file(str(f / "items.safetensors"))["features"]
    _rewrite_items(f, features=torch.full_like(feats, float("nan")))
    with pytest.raises(ValueError, match="features contains NaN or inf"):
        MoLIndex.load(f)
    f = broken("key")
    cfg = json.loads((f / "config.json").read_text())
    del cfg["cache_dtype"]
    (f / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match=r"missing the key\(s\) \['cache_dtype'\]"):
        MoLIndex.load(f)
    f = broken("items")
    (f / "items.safetensors").unlink()
    with pytest.raises(ValueError, match=r"not a complete MoL index: items\.safetensors is missing"):
        MoLIndex.load(f)
    f = broken("meta")
    (f / "metadata.json").write_text(json.dumps([{}] * 9 + [[1, 2]]))
    with pytest.raises(ValueError, match="row 9 is list"):
        MoLIndex.load(f)
    f = broken("json")
    (f / "ids.json").write_text("[not json")
    with pytest.raises(ValueError, match=r"ids\.json: not a readable JSON file"):
        MoLIndex.load(f)
    f = broken("faiss")
    (f / "config.json").write_text(json.dumps({**cfg, "cache_dtype": "bf16", "faiss_files": ["../x"]}))
    with pytest.raises(ValueError, match="faiss_files"):
        MoLIndex.load(f)
    f = broken("threshold")
    (f / "config.json").write_text(json.dumps({**cfg, "cache_dtype": "bf16", "exact_filter_threshold": 0}))
    with pytest.raises(ValueError, match="exact_filter_threshold"):
        MoLIndex.load(f)
    f = broken("intweights")  # load_state_dict cast integer weights silently
    weights = load_file(str(f / "similarity.safetensors"))
    name = next(iter(weights))
    save_file({**weights, name: weights[name].round().long()}, str(f / "similarity.safetensors"))
    with pytest.raises(ValueError, match=rf"similarity\.safetensors: {re.escape(name)} is torch\.int64, not a float"):
        MoLIndex.load(f)
    assert len(MoLIndex.load(good, device="cpu")) == 10  # the untouched copy still loads


def test_a_load_overlapping_a_save_returns_one_whole_save(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A save from another thread or process between two of a load's file reads gave the ids of
    one save with the vectors of the other (every check passed) or a missing file."""
    folder = tmp_path / "ix"
    a = MoLIndex(MoLSimilarity.cosine(4), device="cpu")
    a.add(["a0", "a1"], torch.eye(4)[:2])
    a.save(folder)
    b = MoLIndex(MoLSimilarity.cosine(4), device="cpu")
    b.add(["b0", "b1"], torch.eye(4)[2:])
    real = persistence._read_tensors
    calls: list[str] = []

    def read_then_b_is_saved(where: Path, name: str) -> dict[str, torch.Tensor]:
        out = real(where, name)
        if name == "items.safetensors" and "items.safetensors" not in calls:
            b.save(folder)  # lands between this read and ids.json
        calls.append(name)
        return out

    monkeypatch.setattr(persistence, "_read_tensors", read_then_b_is_saved)
    loaded = MoLIndex.load(folder, device="cpu")
    assert loaded.ids == ["b0", "b1"] and torch.equal(loaded.get_features(["b0", "b1"]), b.get_features(["b0", "b1"]))
    assert calls.count("items.safetensors") == 2  # read again, once


def test_a_save_without_a_save_id_is_read_once(tmp_path: Path) -> None:
    """Saves from before the save id (and folders whose marker is unreadable) load as before."""
    from rag_relax_plugins._whole_save import read_whole_save

    folder = tmp_path / "ix"
    a = MoLIndex(MoLSimilarity.cosine(4), device="cpu")
    a.add(["a0"], torch.eye(4)[:1])
    a.save(folder)
    marker = json.loads((folder / SAVE_MARKER).read_text(encoding="utf-8"))
    del marker["save_id"]
    (folder / SAVE_MARKER).write_text(json.dumps(marker), encoding="utf-8")
    assert MoLIndex.load(folder, device="cpu").ids == ["a0"]
    calls: list[int] = []

    def failing() -> None:
        calls.append(1)
        raise ValueError("corrupt")

    with pytest.raises(ValueError, match="corrupt"):
        read_whole_save(folder, failing)
    assert calls == [1]
