"""atomic_write_bytes flushes the file before its rename and the folder after it (the module's
durability promise), and read_trainer_state refuses a bool where a count is read and a history
missing a list the loop indexes (review 2026-12-05, mutants that survived)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from rag_relax_plugins._io import atomic_write_bytes
from rag_relax_plugins.training._resume_check import read_trainer_state


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="names file descriptors through /proc")
def test_an_atomic_file_write_is_flushed_before_and_after_its_rename(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    events: list[tuple[str, str]] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        real_fsync(fd)

    def replace(src: Any, dst: Any) -> None:
        events.append(("replace", str(dst)))
        real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    atomic_write_bytes(tmp_path / "f.json", b"{}")
    assert [k for k, _ in events] == ["fsync", "replace", "fsync"]
    assert Path(events[0][1]).name.startswith(".f.json.")  # the temporary file's data
    assert events[2][1] == str(tmp_path)  # the folder's new entry


def _state(tmp_path: Path, **fields: object) -> Path:
    state = {"format_version": 1, "scheduler": {}, "epoch": 1, "step": 4, "best": 0.5,
             "history": {"step_loss": [], "train_loss": [], "val_mrr": []}, **fields}
    (tmp_path / "trainer_state.json").write_text(json.dumps(state), encoding="utf-8")
    return tmp_path


FIELDS = ("scheduler", "epoch", "step", "best", "history")


def test_a_flag_is_not_a_step_count(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"'step' is missing or not int"):
        read_trainer_state(_state(tmp_path, step=True), version=1, fields=FIELDS)


def test_a_history_missing_a_list_the_loop_reads_is_refused(tmp_path: Path) -> None:
    folder = _state(tmp_path, history={"step_loss": [], "train_loss": []})
    with pytest.raises(ValueError, match=r"'history' must hold the lists 'step_loss', 'train_loss' and 'val_mrr'"):
        read_trainer_state(folder, version=1, fields=FIELDS, history_lists=("step_loss", "train_loss", "val_mrr"))


@pytest.mark.parametrize("name", ["epoch", "step", "pos"])
def test_a_negative_count_of_work_done_is_refused(tmp_path: Path, name: str) -> None:
    # a negative pos trained on order[-3:], a negative step wrote checkpoint_step_-1 (corrupt-file review)
    fields = (*FIELDS, "pos")
    with pytest.raises(ValueError, match=rf"'{name}' must be >= 0, got -2"):
        read_trainer_state(_state(tmp_path, **{"pos": 0, name: -2}), version=1, fields=fields)
    assert read_trainer_state(_state(tmp_path, **{"pos": 0, name: 0}), version=1, fields=fields)[name] == 0


def test_a_damaged_config_is_not_taken_for_an_older_checkpoint(tmp_path: Path) -> None:
    # stored_options returned None for any non-dict "config": the resume went on unchecked with
    # the "older format" warning (corrupt-file review)
    from rag_relax_plugins.training._resume_check import stored_options

    with pytest.raises(ValueError, match=r"'config' is not a JSON object, got 'x'"):
        stored_options(_state(tmp_path, config="x"))
    assert stored_options(_state(tmp_path, config={"lr": 1.0})) == {"lr": 1.0}
    folder = _state(tmp_path)
    state = json.loads((folder / "trainer_state.json").read_text())
    state.pop("config", None)
    (folder / "trainer_state.json").write_text(json.dumps(state))
    assert stored_options(folder) is None  # an older checkpoint: no key at all
