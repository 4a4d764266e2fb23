"""Damaged MaxSim and G-Rerank checkpoints: a ValueError naming the file, before anything changes.

MaxSim: values of ``trainer_state.json`` the loop uses (``batch``, ``negative_rng``,
``epoch_losses``, ``best``, the scheduler state) and the optimiser state were used unchecked: a raw
``int()`` ``ValueError``, a torch ``RuntimeError``, a ``TypeError`` or a ``KeyError`` after the
checkpoint's model had loaded and the token cache, ``training.log`` and ``train_config.json``
had been written, or (a NaN ``best``) a run that never wrote ``best_model/``. G-Rerank: a truncated
generator state was torch's ``RuntimeError`` after the optimiser had been loaded.
"""

from __future__ import annotations

import contextlib
import json
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file, save_file
from test_maxsim_train import make_reranker, synthetic

from rag_relax_plugins.rerankers.maxsim import MaxSimReranker
from rag_relax_plugins.training.maxsim_train import MaxSimTrainConfig, train_maxsim

pytestmark = pytest.mark.usefixtures("one_torch_thread")

BASE: dict[str, Any] = dict(epochs=2, batch_size=2, hard_negatives=2, learning_rate=0.1, val_rows=0, train_rows=10,
                            show_progress=False)


@contextlib.contextmanager
def constant_lr() -> Iterator[None]:
    """A constant learning rate: the run stopped by max_steps (whose LR decays over its own
    length) then trains its steps as the uninterrupted run does, and a resume ends as that run."""
    from rag_relax_plugins.training import maxsim_train

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(maxsim_train, "linear_decay", lambda step, total: 1.0)
        yield


@pytest.fixture(scope="module")
def stopped(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, list[float]]]:
    """The mid-epoch checkpoint of a run stopped by max_steps (it holds ``batch``,
    ``epoch_losses`` and ``negative_rng``), and the step losses of the uninterrupted run."""
    root = tmp_path_factory.mktemp("maxsim")
    groups, queries, texts = synthetic()  # 8 groups, batch 2: 4 steps per epoch
    with constant_lr():
        full = train_maxsim(MaxSimTrainConfig(output_dir=str(root / "full"), **BASE), groups, queries.texts,
                            texts.texts, reranker=make_reranker())
        train_maxsim(MaxSimTrainConfig(output_dir=str(root / "part"), max_steps=3, **BASE), groups, queries.texts,
                     texts.texts, reranker=make_reranker())
    ck = root / "part" / "checkpoint_epoch_1"
    assert json.loads((ck / "trainer_state.json").read_text())["batch"] == 3
    return ck, full["history"]


def _state(key: str, value: Any) -> Callable[[Path], None]:
    def tamper(ck: Path) -> None:
        state = json.loads((ck / "trainer_state.json").read_text())
        where, _, sub = key.partition(".")
        if sub:
            state[where][sub] = value
        else:
            state[where] = value
        (ck / "trainer_state.json").write_text(json.dumps(state))

    return tamper


def _optimizer(change: Callable[[dict[str, Any], dict[str, torch.Tensor]], None]) -> Callable[[Path], None]:
    def tamper(ck: Path) -> None:
        meta = json.loads((ck / "optimizer.json").read_text())
        tensors = load_file(str(ck / "optimizer.safetensors"))
        change(meta, tensors)
        (ck / "optimizer.json").write_text(json.dumps(meta))
        save_file(tensors, str(ck / "optimizer.safetensors"))

    return tamper


def _drop_exp_avg_sq(meta: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None:
    for k in [k for k in tensors if k.endswith(".exp_avg_sq")]:
        del tensors[k]


SIZE = torch.Generator().get_state().numel()
MAXSIM_DAMAGE: dict[str, tuple[Callable[[Path], None], str]] = {
    "batch a string": (_state("batch", "x"), r"trainer_state\.json: 'batch' must be an integer >= 0"),
    "batch negative": (_state("batch", -1), r"trainer_state\.json: 'batch' must be an integer >= 0"),
    "negative_rng short": (_state("negative_rng", [0] * 10), rf"'negative_rng' must be null or a generator state "
                                                            rf"of {SIZE} integers"),
    "negative_rng over 255": (_state("negative_rng", [300] * SIZE), r"'negative_rng' must be null or"),
    "epoch_losses a string": (_state("epoch_losses", "abc"), r"'epoch_losses' must be a list of numbers"),
    "best NaN": (_state("best", float("nan")), r"'best' must be a finite number, or -Infinity"),
    "best +inf": (_state("best", float("inf")), r"'best' must be a finite number"),
    "scheduler empty": (_state("scheduler", {}), r"trainer_state\.json: 'scheduler' has no 'base_lrs'"),
    "base_lrs of 2": (_state("scheduler.base_lrs", [0.1, 0.1]), r"'scheduler' 'base_lrs' must be a list of 1"),
    "last_epoch a string": (_state("scheduler.last_epoch", "3"), r"'scheduler' 'last_epoch' must be a number"),
    "no exp_avg_sq": (_optimizer(_drop_exp_avg_sq), r"optimizer\.safetensors: .* no tensor 'exp_avg_sq'"),
    "params shifted": (_optimizer(lambda m, t: m["param_groups"][0].__setitem__("params", [1])),  # the head: 1
                       r"optimizer\.json: param_groups\[0\] 'params' must be the indices \[0\]"),
    "eps a string": (_optimizer(lambda m, t: m["param_groups"][0].__setitem__("eps", "x")),
                     r"optimizer\.json: param_groups\[0\] 'eps' must be a number"),
    # one scheduler step per optimiser step: 10**6 trained at learning rate 0 (diff review)
    "last_epoch past the step": (_state("scheduler.last_epoch", 10**6), r"'scheduler' 'last_epoch' is 1000000, but "
                                                                         r"'step' is \d+"),
    # step 10**6 resumed past the schedule and wrote an untrained final_model (diff review)
    "step past the history": (_state("step", 10**6), r"'step' is 1000000, but 'history' holds \d+ 'step_loss' entries"),
}


@pytest.mark.parametrize("damage", list(MAXSIM_DAMAGE))
def test_a_damaged_maxsim_checkpoint_is_refused_before_anything_is_loaded_or_written(
    stopped: tuple[Path, dict[str, list[float]]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, damage: str
) -> None:
    ck = tmp_path / "ck"
    shutil.copytree(stopped[0], ck)
    tamper, match = MAXSIM_DAMAGE[damage]
    tamper(ck)
    loads: list[Path] = []
    real_load = MaxSimReranker.load.__func__  # type: ignore[attr-defined]

    def load(cls: type[MaxSimReranker], folder: Path, **kw: Any) -> MaxSimReranker:
        loads.append(folder)
        return real_load(cls, folder, **kw)  # type: ignore[no-any-return]

    monkeypatch.setattr(MaxSimReranker, "load", classmethod(load))
    groups, queries, texts = synthetic()
    passed = make_reranker()
    before = {k: v.clone() for k, v in passed.head.state_dict().items()}
    with pytest.raises(ValueError, match=match) as err:
        train_maxsim(MaxSimTrainConfig(output_dir=str(tmp_path / "out"), resume_from=str(ck), **BASE), groups,
                     queries.texts, texts.texts, reranker=passed)
    assert str(ck) in str(err.value) and "nothing was changed" in str(err.value)
    assert loads == [] and not (tmp_path / "out").exists()  # no model load, no log, cache or config
    assert all(torch.equal(v, before[k]) for k, v in passed.head.state_dict().items())


def test_a_repaired_maxsim_checkpoint_resumes_as_the_uninterrupted_run(
    stopped: tuple[Path, dict[str, list[float]]], tmp_path: Path
) -> None:
    """The checks pass what a run writes (``best`` -Infinity before a complete epoch included):
    refused while damaged, the checkpoint put back resumes and ends as the uninterrupted run."""
    ck, full = stopped
    groups, queries, texts = synthetic()
    state_file = ck / "trainer_state.json"
    good = state_file.read_text()
    assert json.loads(good)["best"] == float("-inf")
    cfg = MaxSimTrainConfig(output_dir=str(tmp_path / "out"), resume_from=str(ck), **BASE)
    try:
        _state("negative_rng", [1] * (SIZE - 1))(ck)  # a torch RuntimeError mid-run before
        with pytest.raises(ValueError, match=r"trainer_state\.json: 'negative_rng' must be"):
            train_maxsim(cfg, groups, queries.texts, texts.texts, reranker=make_reranker())
    finally:
        state_file.write_text(good)
    with constant_lr():
        res = train_maxsim(cfg, groups, queries.texts, texts.texts, reranker=make_reranker())
    assert res["steps"] == 8
    # the restored negative sampler and epoch losses: the epoch finishes as it would have
    assert res["history"]["step_loss"] == pytest.approx(full["step_loss"], rel=1e-5)
    assert res["history"]["train_loss"] == pytest.approx(full["train_loss"], rel=1e-5)


def test_a_scheduler_state_of_another_group_count_is_refused(
    stopped: tuple[Path, dict[str, list[float]]], tmp_path: Path
) -> None:
    """check_scheduler_state against a built scheduler: base_lrs of another length is refused,
    the saved state as written is accepted. (The trainer's own run refuses it earlier, against
    the optimiser file's group count, before anything is written.)"""
    from rag_relax_plugins.training._scheduler_state import check_scheduler_state

    ck = tmp_path / "ck"
    shutil.copytree(stopped[0], ck)
    opt = torch.optim.AdamW(make_reranker().head.parameters())
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    state = json.loads((ck / "trainer_state.json").read_text())
    state["scheduler"]["base_lrs"] = [0.1, 0.1]
    with pytest.raises(ValueError, match=r"trainer_state\.json: 'scheduler' 'base_lrs' must be a list of 1"):
        check_scheduler_state(sched, state["scheduler"], ck / "trainer_state.json")
    check_scheduler_state(sched, json.loads((ck / "trainer_state.json").read_text())["scheduler"],
                          ck / "trainer_state.json")
    del state["scheduler"]["base_lrs"]
    with pytest.raises(ValueError, match=r"'scheduler' has no 'base_lrs'"):
        check_scheduler_state(sched, state["scheduler"], ck / "trainer_state.json")
    # a public key another torch version writes or not ('verbose' in 2.2-2.6) is not required
    sched.verbose = False  # type: ignore[attr-defined]
    check_scheduler_state(sched, json.loads((ck / "trainer_state.json").read_text())["scheduler"],
                          ck / "trainer_state.json")


# ---- G-Rerank: the generator states ------------------------------------------------------------


@pytest.fixture
def grerank_checkpoint(minilm_path: str, tmp_path: Path) -> tuple[Path, Any]:
    """A checkpoint of a tiny G-Rerank reranker after one optimiser step, and a builder of the
    optimiser a resume makes (a fresh one, over a fresh reranker's scorer)."""
    from _gumbel_helpers import FakeReader, example, tiny_scorer

    from rag_relax_plugins.rerankers.gumbel import GumbelReranker
    from rag_relax_plugins.training.grerank import example_loss
    from rag_relax_plugins.training.grerank_checkpoint import save_checkpoint

    def fresh() -> tuple[GumbelReranker, torch.optim.Optimizer]:
        reranker = GumbelReranker(tiny_scorer(minilm_path), k=1, device="cpu", tau=0.5)
        return reranker, torch.optim.AdamW(reranker.scorer.parameters())

    reranker, opt = fresh()
    gen = torch.Generator().manual_seed(5)
    loss = example_loss(reranker, example(0), reader=FakeReader(), generator=gen)
    assert loss is not None
    loss.backward()
    opt.step()
    state = {"epoch": 0, "pos": 1, "step": 1, "history": {"loss": [1.0], "seconds": [0.1]}}
    ck = save_checkpoint(tmp_path / "ck", reranker=reranker, optimizer=opt, generator=gen, state=state)
    return ck, fresh


@pytest.mark.parametrize("key", ["gumbel", "torch"])
def test_a_truncated_generator_state_is_refused_before_the_optimiser_loads(
    grerank_checkpoint: tuple[Path, Any], key: str
) -> None:
    """Refused with the optimiser and the generators as they were; the file put back, the same
    optimiser and generator take the checkpoint's states."""
    from rag_relax_plugins.training.grerank_checkpoint import load_checkpoint

    ck, fresh = grerank_checkpoint
    rng = load_file(str(ck / "rng.safetensors"))
    save_file({**rng, key: rng[key][:-8].contiguous()}, str(ck / "rng.safetensors"))
    _, opt = fresh()
    gen = torch.Generator().manual_seed(1)
    gen_before, torch_before = gen.get_state(), torch.get_rng_state()
    with pytest.raises(ValueError, match=rf"rng\.safetensors: generator state '{key}' holds {SIZE - 8} bytes, "
                                         rf"the run's generator {SIZE}"):
        load_checkpoint(ck, optimizer=opt, generator=gen)
    assert opt.state_dict()["state"] == {}  # not loaded (it was, before the generator check)
    assert torch.equal(gen.get_state(), gen_before) and torch.equal(torch.get_rng_state(), torch_before)
    save_file(rng, str(ck / "rng.safetensors"))
    state = load_checkpoint(ck, optimizer=opt, generator=gen)
    assert state["step"] == 1 and len(opt.state_dict()["state"]) > 0
    assert torch.equal(gen.get_state(), rng["gumbel"]) and torch.equal(torch.get_rng_state(), rng["torch"])


def test_a_grerank_step_past_its_history_is_refused(grerank_checkpoint: tuple[Path, Any]) -> None:
    # step 10**6 resumed past the schedule and returned an untrained reranker (diff review)
    from rag_relax_plugins.training.grerank_checkpoint import load_checkpoint

    ck, fresh = grerank_checkpoint
    state = json.loads((ck / "trainer_state.json").read_text())
    state["step"] = 10**6
    (ck / "trainer_state.json").write_text(json.dumps(state))
    _, opt = fresh()
    with pytest.raises(ValueError, match=r"'step' is 1000000, but 'history' holds 1 'loss' entries, one per step"):
        load_checkpoint(ck, optimizer=opt, generator=torch.Generator())
    assert opt.state_dict()["state"] == {}
