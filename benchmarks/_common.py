"""Helpers shared by the benchmark scripts: machine description, timing, result files, bars.

A benchmark checks its bars (the issue's pass/fail criteria) after writing its figures and exits
with :func:`check_bars`'s status, so that a missed bar fails the run (``make bench``) without
losing the figures::

    def main() -> int:
        ...  # measure, print the table, write benchmarks/results/<name>.json
        return check_bars([Bar("speedup vs loop", speedup, ">=", 3.0, "x")])

    if __name__ == "__main__":
        raise SystemExit(main())
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import operator
import os
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


def machine() -> str:
    """A one-line description of the machine the figures were measured on."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = ""
    try:
        pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        mem = f", {pages / 2**30:.0f} GiB"
    except (ValueError, OSError, AttributeError):
        pass
    gpu = ""
    try:
        import torch

        if torch.cuda.is_available():
            gpu = f", GPU {torch.cuda.get_device_name(0)}"
        torch_v = f", torch {torch.__version__}"
    except ImportError:
        torch_v = ""
    return f"{platform.machine()} {cpu}, {os.cpu_count()} cores{mem}{gpu}{torch_v}, Python {platform.python_version()}"


def today() -> str:
    return _dt.date.today().isoformat()


def best_time(fn: Callable[[], Any], *, repeats: int = 5, warmup: int = 1, sync: Callable[[], None] | None = None) -> float:
    """Best wall time of ``fn`` over ``repeats`` runs, in seconds (after ``warmup`` runs)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        if sync:
            sync()
        t0 = time.perf_counter()
        fn()
        if sync:
            sync()
        times.append(time.perf_counter() - t0)
    return min(times)


def median_time(fn: Callable[[], Any], *, repeats: int = 5, warmup: int = 1) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def write_results(name: str, data: dict[str, Any]) -> Path:
    """Write ``data`` (plus machine and date when absent) to ``benchmarks/results/<name>.json``."""
    data = {**data}
    data.setdefault("machine", machine())
    data.setdefault("date", today())
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path


def print_table(rows: Sequence[Sequence[str]], header: Sequence[str]) -> None:
    """Print a fixed-width table (benchmarks print; the library never does)."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    line = "  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))
    print(line)
    print("  ".join("-" * w for w in widths))
    for r in rows:
        print("  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)))


_OPS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge,
    "<=": operator.le,
    ">": operator.gt,
    "<": operator.lt,
    "==": operator.eq,
}


@dataclass(frozen=True)
class Bar:
    """One pass/fail criterion: ``value op threshold`` (e.g. a speedup ``>= 50``).

    ``value`` ``None`` or NaN means the figure was not measured: the bar is missed.
    ``unit`` is printed after both numbers (``"x"``, ``" ms"``).
    """

    name: str
    value: float | None
    op: str
    threshold: float
    unit: str = ""

    def __post_init__(self) -> None:
        if self.op not in _OPS:
            raise ValueError(f"op must be one of {sorted(_OPS)}, got {self.op!r}")

    @property
    def met(self) -> bool:
        if self.value is None or math.isnan(self.value):
            return False
        return _OPS[self.op](self.value, self.threshold)

    def line(self) -> str:
        """``bar <name>: <value> <op> <threshold>: met`` (or ``MISSED``)."""
        value = "n/a" if self.value is None else f"{self.value:.4g}{self.unit}"
        return (
            f"bar {self.name}: {value} {self.op} {self.threshold:.4g}{self.unit}: "
            + ("met" if self.met else "MISSED")
        )


def check_bars(bars: Sequence[Bar], *, none_reason: str = "") -> int:
    """Print one line per bar; return the exit status: 0 when every bar is met, else 1.

    A run with no bar (a side run, a smaller size than the bar is defined on) prints
    ``none_reason`` and returns 0.
    """
    if not bars:
        print("no bar checked" + (f": {none_reason}" if none_reason else ""))
        return 0
    for bar in bars:
        print(bar.line())
    missed = [b.name for b in bars if not b.met]
    if missed:
        print(f"{len(missed)} of {len(bars)} bars MISSED: {', '.join(missed)}")
        return 1
    return 0
