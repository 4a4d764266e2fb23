"""read_while_steady / _save_state (review 2026-12-05, mutants that survived): what is repeated,
what is kept, and when it gives up."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from rag_relax_plugins._whole_save import _save_state, read_while_steady


def _changing() -> Callable[[], int]:
    n = iter(range(1000))
    return lambda: next(n)  # a state that differs at every look


def test_a_read_failing_while_the_save_changed_is_repeated() -> None:
    states = iter(["a", "b", "b", "b"])  # changed during the first read, steady during the second
    calls: list[int] = []

    def read() -> str:
        calls.append(1)
        if len(calls) == 1:
            raise FileNotFoundError("a file went missing mid-read")
        return "whole"

    assert read_while_steady(lambda: next(states), read, what="x") == "whole" and len(calls) == 2


def test_a_save_changing_during_every_read_gives_up_with_oserror() -> None:
    with pytest.raises(OSError, match="x during each of 3 reads"):
        read_while_steady(_changing(), lambda: "mixed", what="x", attempts=3)  # type: ignore[arg-type]


def test_whole_reads_are_kept_though_the_state_changed() -> None:
    assert read_while_steady(_changing(), lambda: "whole", what="x", attempts=2, whole=True) == "whole"  # type: ignore[arg-type]


def test_a_folder_missing_mid_replacement_is_a_change_not_an_unknown(tmp_path: Path) -> None:
    assert _save_state(tmp_path / "gone") == ""  # None would mean "cannot tell", and a failed read raised at once
