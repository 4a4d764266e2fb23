"""Atomic writes (rag_relax_plugins._io): a crash at any point leaves a complete save readable."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from rag_relax_plugins._io import (
    atomic_folder,
    atomic_write_json,
    atomic_write_text,
    find_saved_folder,
)


def _write(text: str):  # type: ignore[no-untyped-def]
    def fill(tmp: Path) -> None:
        (tmp / "data.txt").write_text(text, encoding="utf-8")
        (tmp / "config.json").write_text("{}", encoding="utf-8")

    return fill


def test_folder_created_then_replaced_without_leftovers(tmp_path: Path) -> None:
    target = tmp_path / "model"
    atomic_folder(target, _write("v1"))
    atomic_folder(target, _write("v2"))
    assert (target / "data.txt").read_text(encoding="utf-8") == "v2"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_crash_during_write_keeps_the_previous_folder(tmp_path: Path) -> None:
    target = tmp_path / "model"
    atomic_folder(target, _write("v1"))

    def crash(tmp: Path) -> None:
        (tmp / "data.txt").write_text("half", encoding="utf-8")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        atomic_folder(target, crash)
    assert (target / "data.txt").read_text(encoding="utf-8") == "v1"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_crash_between_the_two_renames_is_recovered(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "model"
    atomic_folder(target, _write("v1"))
    real_replace = os.replace
    calls = []

    def replace_then_die(src, dst):  # type: ignore[no-untyped-def]
        calls.append((src, dst))
        if len(calls) == 2:  # the new folder would move into place now
            raise KeyboardInterrupt
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace_then_die)
    with pytest.raises(KeyboardInterrupt):
        atomic_folder(target, _write("v2"))
    monkeypatch.setattr(os, "replace", real_replace)
    assert not target.exists()
    recovered = find_saved_folder(target)
    assert (recovered / "data.txt").read_text(encoding="utf-8") == "v1"


def test_find_saved_folder_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"config\.json"):
        find_saved_folder(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="empty"):
        find_saved_folder(tmp_path / "empty")
    (tmp_path / "file").write_text("x", encoding="utf-8")
    with pytest.raises(ValueError, match="file"):
        atomic_folder(tmp_path / "file", _write("v"))


def test_atomic_text_and_json(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "a.json"
    atomic_write_json(path, {"b": [1, 2]})
    assert json.loads(path.read_text(encoding="utf-8")) == {"b": [1, 2]}
    with pytest.raises(ValueError):
        atomic_write_json(path, {"x": float("nan")})
    with pytest.raises(TypeError):
        atomic_write_json(path, {"x": object()})
    assert json.loads(path.read_text(encoding="utf-8")) == {"b": [1, 2]}  # untouched by the failures
    atomic_write_text(path, "plain")
    assert path.read_text(encoding="utf-8") == "plain"
    assert sorted(p.name for p in path.parent.iterdir()) == ["a.json"]
