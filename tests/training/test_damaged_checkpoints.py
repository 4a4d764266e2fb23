"""Damaged optimiser and scheduler states in a checkpoint: refused before anything loads.

The optimiser state (shared by every trainer) was loaded unchecked for completeness and order: a
``KeyError 'exp_avg_sq'``, a size-mismatch or broadcast ``RuntimeError`` or a ``TypeError`` at the
first step, after the model had taken the checkpoint's weights; a damaged scheduler state was a
``KeyError 'lr_lambdas'`` or a ``zip`` ``ValueError`` (review of the resume paths).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file, save_file

from rag_relax_plugins.training import gaussian_checkpoint, mol_checkpoint
from rag_relax_plugins.training._optimizer_state import read_optimizer_files

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _mol_history(steps: int) -> dict[str, list]:
    """A MoL history of ``steps`` steps: the lists its loop reads, one step loss per step."""
    return {"step_loss": [1.0] * steps, "step_parts": [{}] * steps, "epoch_loss": [], "eval": []}

def _model() -> torch.nn.Sequential:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 2))


def _optimizer(model: torch.nn.Sequential, *, amsgrad: bool = False) -> torch.optim.Optimizer:
    """Two groups, as the trainers build them (head and backbone)."""
    groups: list[dict[str, Any]] = [{"params": list(model[0].parameters())},
                                    {"params": list(model[1].parameters()), "lr": 0.1}]
    return torch.optim.AdamW(groups, amsgrad=amsgrad)


def _stepped(amsgrad: bool = False) -> tuple[torch.nn.Sequential, torch.optim.Optimizer]:
    model = _model()
    opt = _optimizer(model, amsgrad=amsgrad)
    for _ in range(2):
        opt.zero_grad()
        model(torch.ones(2, 3)).pow(2).sum().backward()
        opt.step()
    return model, opt


def _snapshot(model: torch.nn.Module, opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], str]:
    sd = opt.state_dict()
    moments = {f"{i}.{k}": v.clone() for i, st in sd["state"].items() for k, v in st.items()}
    return {k: v.clone() for k, v in model.state_dict().items()} | moments, json.dumps(sd["param_groups"])


def _tamper_tensors(ck: Path, keep: Callable[[str], bool]) -> None:
    tensors = load_file(str(ck / "optimizer.safetensors"))
    save_file({k: v for k, v in tensors.items() if keep(k)}, str(ck / "optimizer.safetensors"))


def _tamper_groups(ck: Path, change: Callable[[list[dict[str, Any]]], None]) -> None:
    meta = json.loads((ck / "optimizer.json").read_text())
    change(meta["param_groups"])
    (ck / "optimizer.json").write_text(json.dumps(meta))


def _set(key: str, value: Any, group: int = 0) -> Callable[[list[dict[str, Any]]], None]:
    return lambda groups: groups[group].__setitem__(key, value)


DAMAGE: dict[str, tuple[Callable[[Path], None], str]] = {
    # every parameter's exp_avg_sq gone: a KeyError 'exp_avg_sq' at the first step
    "no exp_avg_sq": (lambda ck: _tamper_tensors(ck, lambda k: not k.endswith(".exp_avg_sq")),
                      r"optimizer\.safetensors: the state of parameter 0 has no tensor 'exp_avg_sq'"),
    # one parameter's only: the states of a group differ
    "one exp_avg_sq": (lambda ck: _tamper_tensors(ck, lambda k: k != "1.exp_avg_sq"),
                       r"optimizer\.safetensors: the state of parameter 1 has no 'exp_avg_sq'"),
    # a torch size-mismatch RuntimeError at the first step
    "params reversed": (lambda ck: _tamper_groups(ck, lambda g: g[0]["params"].reverse()),
                        r"optimizer\.json: param_groups\[0\] 'params' must be the indices \[0, 1\]"),
    # a broadcast RuntimeError
    "params all 0": (lambda ck: _tamper_groups(ck, lambda g: g[1].__setitem__("params", [0, 0])),
                     r"optimizer\.json: param_groups\[1\] 'params' must be the indices \[2, 3\]"),
    "params as floats": (lambda ck: _tamper_groups(ck, lambda g: g[0].__setitem__("params", [0.0, 1.0])),
                         r"optimizer\.json: param_groups\[0\] 'params' must be the indices"),
    # a TypeError at the first step
    "lr a string": (lambda ck: _tamper_groups(ck, _set("lr", "x")),
                    r"optimizer\.json: param_groups\[0\] 'lr' must be a number"),
    "eps missing": (lambda ck: _tamper_groups(ck, lambda g: g[1].pop("eps")),
                    r"optimizer\.json: param_groups\[1\] 'eps' must be a number"),
    "weight_decay a bool": (lambda ck: _tamper_groups(ck, _set("weight_decay", True, 1)),
                            r"optimizer\.json: param_groups\[1\] 'weight_decay' must be a number"),
    "betas of 1": (lambda ck: _tamper_groups(ck, _set("betas", [0.9])),
                   r"optimizer\.json: param_groups\[0\] 'betas' must be a list of 2 numbers"),
    "amsgrad a string": (lambda ck: _tamper_groups(ck, _set("amsgrad", "no")),
                         r"optimizer\.json: param_groups\[0\] 'amsgrad' must be a boolean"),
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_a_damaged_optimiser_state_is_refused_before_the_model_or_optimiser_changes(
    tmp_path: Path, damage: str
) -> None:
    """Through a trainer's resume (MoL's load_checkpoint, which reads every file first)."""
    model, opt = _stepped()
    ck = mol_checkpoint.save_checkpoint(tmp_path / "ck", model, opt, {"step": 2, "history": _mol_history(2), "config": {}})
    tamper, match = DAMAGE[damage]
    tamper(ck)
    fresh_model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 2))
    fresh_opt = _optimizer(fresh_model)
    before = _snapshot(fresh_model, fresh_opt)
    with pytest.raises(ValueError, match=match) as err:
        mol_checkpoint.load_checkpoint(ck, fresh_model, fresh_opt)
    assert "nothing was changed" in str(err.value)
    after = _snapshot(fresh_model, fresh_opt)
    assert after[1] == before[1] and after[0].keys() == before[0].keys()
    assert all(torch.equal(after[0][k], v) for k, v in before[0].items())
    # the trainers that check the files before they build the optimiser (MaxSim: AdamW) refuse it too
    with pytest.raises(ValueError, match=match):
        read_optimizer_files(ck, optimizer=torch.optim.AdamW)


def test_an_intact_optimiser_state_resumes_as_before(tmp_path: Path) -> None:
    """The checks pass what a save writes: the resumed model and optimiser take the next step as
    the uninterrupted ones do (amsgrad's extra moment and a group never stepped included)."""
    for amsgrad in (False, True):
        model, opt = _stepped(amsgrad)
        ck = mol_checkpoint.save_checkpoint(tmp_path / f"ck{amsgrad}", model, opt,
                                            {"step": 2, "history": _mol_history(2), "config": {}})
        read_optimizer_files(ck, optimizer=torch.optim.AdamW)
        resumed = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 2))
        resumed_opt = _optimizer(resumed, amsgrad=amsgrad)
        mol_checkpoint.load_checkpoint(ck, resumed, resumed_opt)
        for m, o in ((model, opt), (resumed, resumed_opt)):
            o.zero_grad()
            m(torch.ones(2, 3)).pow(2).sum().backward()
            o.step()
        assert all(torch.equal(a, b) for a, b in zip(model.parameters(), resumed.parameters(), strict=True))
    # a parameter without a state (never given a gradient) is what a save writes too
    model = _model()
    opt = _optimizer(model)
    model[0](torch.ones(2, 3)).sum().backward()  # group 1 gets no gradient
    opt.step()
    ck = mol_checkpoint.save_checkpoint(tmp_path / "half", model, opt, {"step": 1, "history": _mol_history(1), "config": {}})
    mol_checkpoint.load_checkpoint(ck, _model(), _optimizer(_model()))


def test_amsgrad_needs_its_extra_moment(tmp_path: Path) -> None:
    model, opt = _stepped(amsgrad=True)
    ck = mol_checkpoint.save_checkpoint(tmp_path / "ck", model, opt, {"step": 2, "history": _mol_history(2), "config": {}})
    _tamper_tensors(ck, lambda k: not k.endswith(".max_exp_avg_sq"))
    fresh = _model()
    with pytest.raises(ValueError, match=r"optimizer\.safetensors: .* no tensor 'max_exp_avg_sq', which AdamW needs"):
        mol_checkpoint.load_checkpoint(ck, fresh, _optimizer(fresh, amsgrad=True))


# ---- the Gaussian trainer's scheduler state ----------------------------------------------------


def _gaussian_checkpoint(tmp_path: Path) -> tuple[Path, Any, torch.optim.Optimizer, Any]:
    from rag_relax_plugins.embedders.gaussian import GaussianConfig, GaussianEmbedder

    model = GaussianEmbedder(GaussianConfig(backbone="hashing:64", output_dim=16, freeze="all"), device="cpu")
    opt = torch.optim.AdamW(model.head.parameters())
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0 / (s + 1))
    for _ in range(3):
        opt.zero_grad()
        model.head(torch.randn(2, 64)).sum().backward()
        opt.step()
        sched.step()
    ck = tmp_path / "ck"
    gaussian_checkpoint.save_checkpoint(ck, model=model, optimizer=opt, scheduler=sched, predictor=None,
                                        state={"epoch": 1, "step": 3, "best": 1.0, "best_epoch": 1,
                                               "history": {"step_loss": [1.0] * 3, "train_loss": [], "val_loss": []}})
    return ck, model, opt, sched


SCHEDULER_DAMAGE: dict[str, tuple[Any, str]] = {
    "empty": ({}, r"'scheduler' has no 'base_lrs'"),  # KeyError 'lr_lambdas' before
    "no lr_lambdas": ("drop:lr_lambdas", r"'scheduler' has no 'lr_lambdas'"),
    "base_lrs of another length": ("base_lrs:[0.001, 0.001]", r"'base_lrs' must be a list of 1"),
    "base_lrs a string": ('base_lrs:"x"', r"'base_lrs' must be a list, got 'x'"),
    "base_lrs holding a string": ('base_lrs:["x"]', r"'base_lrs' must be a list whose element 0 is a number"),
    "last_epoch a float": ("last_epoch:2.5", r"'last_epoch' must be an integer >= -1"),
    "last_epoch below -1": ("last_epoch:-2", r"'last_epoch' must be an integer >= -1"),
    # one scheduler step per optimiser step: 10**6 trained every later step at learning rate 0 (review)
    "last_epoch past the step": ("last_epoch:1000000", r"'last_epoch' is 1000000, but 'step' is 3"),
    # (not the scheduler) a step past the history's step losses: resumed past the schedule (review)
    "step past the history": ("step:7", r"'step' is 7, but 'history' holds 3 'step_loss' entries"),
}


@pytest.mark.parametrize("damage", list(SCHEDULER_DAMAGE))
def test_a_damaged_scheduler_state_is_refused_before_the_optimiser_changes(tmp_path: Path, damage: str) -> None:
    ck, model, _, saved_sched = _gaussian_checkpoint(tmp_path)
    file = ck / "trainer_state.json"
    good = file.read_text()
    state = json.loads(good)
    value, match = SCHEDULER_DAMAGE[damage]
    if isinstance(value, dict):
        state["scheduler"] = value
    elif value.startswith("drop:"):
        state["scheduler"].pop(value[5:])
    elif value.startswith("step:"):
        state["step"] = json.loads(value[5:])
    else:
        key, _, raw = value.partition(":")
        state["scheduler"][key] = json.loads(raw)
    file.write_text(json.dumps(state))
    opt = torch.optim.AdamW(model.head.parameters())
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0 / (s + 1))
    before = (json.dumps(opt.state_dict()["param_groups"]), sched.last_epoch, list(sched.base_lrs))
    with pytest.raises(ValueError, match=r"trainer_state\.json: .*" + match):
        gaussian_checkpoint.load_checkpoint_state(ck, optimizer=opt, scheduler=sched, predictor=None)
    assert (json.dumps(opt.state_dict()["param_groups"]), sched.last_epoch, list(sched.base_lrs)) == before
    assert opt.state_dict()["state"] == {}  # no moment loaded
    file.write_text(good)  # put back: the same optimiser and scheduler resume as the saved ones
    gaussian_checkpoint.load_checkpoint_state(ck, optimizer=opt, scheduler=sched, predictor=None)
    assert sched.last_epoch == saved_sched.last_epoch == 3
    sched.step()
    saved_sched.step()
    assert sched.get_last_lr() == saved_sched.get_last_lr()
