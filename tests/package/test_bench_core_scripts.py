"""The core-op benchmark scripts as commands: a standalone run exits 1 on a missed bar, ``--help``
prints usage and writes nothing, and relaxed_topk times both sides of its ratio alike. Measurements
are stubbed (or timings faked); no benchmark is run."""

from __future__ import annotations

import hashlib
import runpy
import shutil
import sys
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "benchmarks"
sys.path.insert(0, str(BENCH))

import _common  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SCRIPTS = ["bench_maxsim", "bench_soft_rank", "bench_relaxed_topk"]
MET = {  # every bar of the three scripts met (values of core_ops.json, 2026-12-03)
    "bench_maxsim": {"maxsim_ratio_to_matmul": 1.19, "maxsim_speedup_vs_loop": 1.71, "maxsim_max_abs_err_vs_loop": 0.0},
    "bench_soft_rank": {"soft_rank_speedup_vs_pairwise_n1000": 115.0, "soft_rank_max_abs_err_vs_reference": 1.3e-11,
                        "soft_rank_ms_n100000": 686.0},
    "bench_relaxed_topk": {"relaxed_topk_speedup_vs_loop": 10514.0, "relaxed_topk_max_abs_err_vs_loop": 2.6e-6},
}
MISSED = {  # one bar of each missed
    "bench_maxsim": {"maxsim_speedup_vs_loop": 1.2},
    "bench_soft_rank": {"soft_rank_speedup_vs_pairwise_n1000": 53.0},
    "bench_relaxed_topk": {"relaxed_topk_max_abs_err_vs_loop": 3e-3},
}


def _module(name: str) -> types.ModuleType:
    return __import__(name)


class _AnyFloat(dict):  # type: ignore[type-arg]
    """A results dict that answers 1.0 for keys main() prints but the test does not set."""

    def __missing__(self, key: str) -> float:
        return 1.0

    def get(self, key: str, default: Any = None) -> Any:
        return self[key]


@pytest.mark.parametrize("name", SCRIPTS)
@pytest.mark.parametrize("missed", [False, True])
def test_standalone_main_returns_the_bar_status(
    name: str, missed: bool, results: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    module = _module(name)
    measured = _AnyFloat({**MET[name], **(MISSED[name] if missed else {})})
    monkeypatch.setattr(module, "measure", lambda *a, **k: measured)
    monkeypatch.setattr(sys, "argv", [f"{name}.py"])
    assert module.main() == (1 if missed else 0)
    out = capsys.readouterr().out
    assert out.count("\nbar ") == len(MET[name]) and ("MISSED" in out) == missed
    assert (results / f"{name.removeprefix('bench_')}.json").is_file()  # written before the check


def _fast_timings(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every timing 1 s without running the timed function: ratios of 1 (32 for relaxed_topk's
    loop, scaled from one row), so every speed bar (>= 1.5x, >= 50x, >= 100x) is missed."""
    monkeypatch.setattr(_common, "best_time", lambda fn, **kwargs: 1.0)


@pytest.mark.parametrize("name", SCRIPTS)
def test_standalone_script_exits_1_on_a_missed_bar(
    name: str, results: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    """Run as a command (``__main__``), the script's exit status is main()'s (it was always 0)."""
    _fast_timings(monkeypatch)
    monkeypatch.setattr(sys, "argv", [f"{name}.py"])
    with pytest.raises(SystemExit) as exc:
        runpy.run_path(str(BENCH / f"{name}.py"), run_name="__main__")
    assert exc.value.code == 1
    assert "MISSED" in capsys.readouterr().out


def _tree_digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and "__pycache__" not in p.parts}


def _refuse(*args: Any, **kwargs: Any) -> Any:
    raise AssertionError("--help ran the benchmark")


HELP = {  # script -> (what must not run, what its usage text must name)
    "bench_core_ops": (["bench_soft_rank.measure", "bench_relaxed_topk.measure", "bench_maxsim.measure"],
                       "core_ops.json"),
    "bench_maxsim": (["bench_maxsim.measure"], "maxsim.json"),
    "bench_soft_rank": (["bench_soft_rank.measure"], "soft_rank.json"),
    "bench_relaxed_topk": (["bench_relaxed_topk.measure"], "relaxed_topk.json"),
}


@pytest.mark.parametrize("name", sorted(HELP))
def test_help_prints_usage_and_runs_nothing(
    name: str, results: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    refused, writes = HELP[name]
    for target in refused:
        mod, attr = target.split(".")
        monkeypatch.setattr(_module(mod), attr, _refuse)
    monkeypatch.setattr(_common, "write_results", _refuse)
    monkeypatch.setattr(sys, "argv", [f"{name}.py", "--help"])
    with pytest.raises(SystemExit) as exc:
        _module(name).main()
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage:") and writes in " ".join(out.split())
    assert list(results.iterdir()) == []


def _copy_for_render(tmp_path: Path) -> Path:
    """A repository copy holding what render_core_table reads and writes, its table replaced by a sentinel."""
    import render_core_table as rct

    (tmp_path / "docs").mkdir()
    (tmp_path / "benchmarks/results").mkdir(parents=True)
    shutil.copy(BENCH / "results/core_ops.json", tmp_path / "benchmarks/results/core_ops.json")
    (tmp_path / "docs/benchmarks.md").write_text(f"# Benchmarks\n\n{rct.START}\nSENTINEL\n{rct.END}\n", encoding="utf-8")
    return tmp_path


def test_render_core_table_help_leaves_the_page_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    import render_core_table as rct

    root = _copy_for_render(tmp_path)
    before = _tree_digest(root)
    monkeypatch.setattr(rct, "ROOT", root)
    monkeypatch.setattr(sys, "argv", ["render_core_table.py", "--help"])
    with pytest.raises(SystemExit) as exc:
        rct.main()
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage:") and "docs/benchmarks.md" in " ".join(out.split())
    assert _tree_digest(root) == before
    # without --help it does render the table (the test above is not vacuous)
    monkeypatch.setattr(sys, "argv", ["render_core_table.py"])
    rct.main()
    page = (root / "docs/benchmarks.md").read_text(encoding="utf-8")
    assert "SENTINEL" not in page and "| soft_rank B=32 n=1000" in page


def test_each_core_bar_is_checked_by_exactly_one_standalone_script() -> None:
    import bench_core_ops
    from render_core_table import ROWS, row_bars

    keys = [k for name in SCRIPTS for k in _module(name).BAR_KEYS]
    assert len(keys) == len(set(keys))
    bar_keys = {r.key for r in ROWS if r.bar is not None}
    assert set(keys) == bar_keys - {"import_time_ms"}  # the import time is bench_core_ops' own
    assert [b.name for b in bench_core_ops.core_bars({})] == [b.name for b in row_bars({})]
    with pytest.raises(ValueError, match="torchsort_ratio_n1000"):
        row_bars({}, ["torchsort_ratio_n1000"])  # a goal, not a bar


def _counting(monkeypatch: pytest.MonkeyPatch, module: types.ModuleType, attr: str, calls: dict[str, int]) -> None:
    original: Callable[..., Any] = getattr(module, attr)

    def counted(*args: Any, **kwargs: Any) -> Any:
        calls[attr] += 1
        return original(*args, **kwargs)

    monkeypatch.setattr(module, attr, counted)


def test_relaxed_topk_times_the_loop_like_the_op(monkeypatch: pytest.MonkeyPatch) -> None:
    """docs/benchmarks.md: both sides of a ratio get the same warm-up and repeat count. The loop was
    timed once, without a warm-up, while the op got the best of 5 after 1."""
    import bench_relaxed_topk as brt

    monkeypatch.setattr(brt, "N", 40)  # a small problem: the loop costs ~0.1 s a row
    calls = {"relaxed_topk": 0, "loop_l2x_row": 0}
    _counting(monkeypatch, brt, "relaxed_topk", calls)
    _counting(monkeypatch, brt, "loop_l2x_row", calls)
    r = brt.measure(loop_rows=1, repeats=3)
    # op: l2x and subset, each 1 warm-up + 3 timed, then 1 call for the error check
    assert calls["relaxed_topk"] == 2 * (1 + 3) + 1
    assert calls["loop_l2x_row"] == (1 + 3) + 1  # loop: 1 warm-up + 3 timed, then the error check
    assert r["relaxed_topk_max_abs_err_vs_loop"] < 1e-4
    assert r["relaxed_topk_repeats"] == 3
