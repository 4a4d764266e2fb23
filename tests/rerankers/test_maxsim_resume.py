"""MaxSim training resume: learning rate after a stop, best_model selection, crash-left checkpoints, CLI --eval."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from test_maxsim_train import DIM, make_reranker, synthetic

from rag_relax_plugins.embedders.hashing import HashingEncoder
from rag_relax_plugins.rerankers.maxsim import MaxSimReranker
from rag_relax_plugins.training.maxsim_train import MaxSimTrainConfig, train_maxsim

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _weights(folder: Path) -> torch.Tensor:
    rr = MaxSimReranker.load(folder, encoder=HashingEncoder(dim=DIM, seed=2))
    return rr.head.proj.weight.detach().clone()  # type: ignore[union-attr]


@pytest.mark.parametrize("stop", [3, 4])  # inside epoch 1; exactly at its end
def test_resume_after_max_steps_uses_the_new_schedules_learning_rate(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stop: int
) -> None:
    """The stopped run decays to 0 at its own max_steps; the resumed steps use the uninterrupted
    run's learning rates (the first one included, not the 0 saved in the optimiser state)."""
    lrs: list[float] = []
    real_step = torch.optim.AdamW.step

    def spy(self: torch.optim.AdamW, *a: object, **kw: object) -> object:
        lrs.append(self.param_groups[0]["lr"])
        return real_step(self, *a, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(torch.optim.AdamW, "step", spy)
    groups, queries, texts = synthetic()  # 8 groups, batch 2: 4 steps per epoch, 8 in all
    base = dict(epochs=2, batch_size=2, hard_negatives=2, learning_rate=0.1, val_rows=0, train_rows=10,
                show_progress=False)
    train_maxsim(MaxSimTrainConfig(output_dir=str(tmp_path / "full"), **base), groups, queries.texts,
                 texts.texts, reranker=make_reranker())
    full, lrs[:] = list(lrs), []
    assert full == pytest.approx([0.1 * (1 - s / 8) for s in range(8)])
    train_maxsim(MaxSimTrainConfig(output_dir=str(tmp_path / "part"), max_steps=stop, **base), groups,
                 queries.texts, texts.texts, reranker=make_reranker())
    lrs[:] = []
    ck = tmp_path / "part" / "checkpoint_epoch_1"
    res = train_maxsim(MaxSimTrainConfig(output_dir=str(tmp_path / "part"), resume_from=str(ck), **base), groups,
                       queries.texts, texts.texts, reranker=make_reranker())
    assert res["steps"] == 8
    assert lrs == pytest.approx(full[stop:], rel=1e-12, abs=1e-12)


@pytest.mark.parametrize("finished", [0.4, 0.6])  # epoch 2, finished by the resume: worse / better than epoch 1
def test_a_partial_epoch_never_becomes_best_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, finished: float
) -> None:
    """An epoch cut short by max_steps is validated and logged but does not compete for
    best_model: the resume finishes it and it competes then. After the stop and after the resume
    best_model/ is the model of the epoch that history and best_val_mrr name."""
    from rag_relax_plugins.training import maxsim_train

    # scripted validation scores, not a seed that happens to give them: trained numerics differ
    # between CPUs (seed 57 gave the partial epoch the better score on Intel, not on AMD)
    scores = iter([0.5, 0.9, finished])  # epoch 1; epoch 2 cut short (better); epoch 2 finished
    monkeypatch.setattr(maxsim_train, "_validate", lambda *a, **kw: next(scores))
    groups, queries, texts = synthetic()
    groups = groups[2:]  # 6 groups, batch 2: 3 batches per epoch; max_steps=5 stops inside epoch 2
    base = dict(epochs=2, batch_size=2, hard_negatives=2, learning_rate=0.2, seed=57, temperature=0.1,
                show_progress=False)
    out = tmp_path / "run"
    val = synthetic()[0][:2]  # validated by the scripted _validate
    part = train_maxsim(MaxSimTrainConfig(output_dir=str(out), max_steps=5, **base), groups, queries.texts,
                        texts.texts, val_groups=val, reranker=make_reranker())
    assert part["history"]["val_mrr"] == [0.5, 0.9]  # the partial epoch is validated and logged
    assert part["best_val_mrr"] == 0.5  # but does not compete (before the fix it became best_model)
    epoch1 = _weights(out / "checkpoint_epoch_1" / "model")
    assert torch.equal(_weights(out / "best_model"), epoch1)
    ck = out / "checkpoint_epoch_2"
    assert json.loads((ck / "trainer_state.json").read_text())["batch"] == 2
    res = train_maxsim(MaxSimTrainConfig(output_dir=str(out), resume_from=str(ck), **base), groups,
                       queries.texts, texts.texts, val_groups=val, reranker=make_reranker())
    assert res["history"]["val_mrr"] == [0.5, finished]
    assert res["best_val_mrr"] == max(0.5, finished)
    best_epoch_model = epoch1 if finished < 0.5 else _weights(out / "final_model")
    assert not torch.equal(epoch1, _weights(out / "final_model"))  # the two candidates differ
    assert torch.equal(_weights(out / "best_model"), best_epoch_model)


def test_resume_finds_a_checkpoint_left_between_the_two_renames(tmp_path: Path) -> None:
    """A crash while a checkpoint folder was being replaced leaves it as ``.<name>.old-*``;
    the resume reads that backup, as ``find_saved_folder`` promises."""
    groups, queries, texts = synthetic()
    base = dict(epochs=2, batch_size=4, hard_negatives=2, val_rows=0, train_rows=10, show_progress=False)
    full = train_maxsim(MaxSimTrainConfig(output_dir=str(tmp_path / "a"), **base), groups, queries.texts,
                        texts.texts, reranker=make_reranker())
    ck = tmp_path / "a" / "checkpoint_epoch_1"
    os.replace(ck, tmp_path / "a" / ".checkpoint_epoch_1.old-abc123")
    res = train_maxsim(MaxSimTrainConfig(output_dir=str(tmp_path / "b"), resume_from=str(ck), **base), groups,
                       queries.texts, texts.texts, reranker=make_reranker())
    assert res["steps"] == full["steps"] == 4
    assert res["history"]["step_loss"] == pytest.approx(full["history"]["step_loss"])


def _hashing_reranker_class(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the CLI build and load MaxSim rerankers on the hashing encoder (no model load)."""
    from rag_relax_plugins.rerankers import maxsim

    class Hashing(maxsim.MaxSimReranker):
        def __init__(self, config: maxsim.MaxSimConfig | None = None, **kw: object) -> None:
            kw["encoder"] = kw.get("encoder") or HashingEncoder(dim=DIM, seed=2)
            super().__init__(config, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(maxsim, "MaxSimReranker", Hashing)
    monkeypatch.setattr(MaxSimTrainConfig, "model_config",
                        lambda self, token_dim=None: maxsim.MaxSimConfig(projection_dim=8, token_dim=DIM))


def _scripted_validation(monkeypatch: pytest.MonkeyPatch, values: list[float]) -> None:
    """Make each epoch's validation return the next of ``values`` (across runs)."""
    from rag_relax_plugins.training import maxsim_train

    left = iter(values)
    monkeypatch.setattr(maxsim_train, "_validate", lambda *a, **kw: next(left))


def test_resume_into_a_new_folder_restores_an_earlier_best_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The checkpoint of epoch 3 holds the best model of epoch 2; a resume into a new folder
    restores it as best_model/, which keeps it when epoch 4 is worse (there was none before)."""
    groups, queries, texts = synthetic()  # 8 groups, batch 2: 4 steps per epoch
    _scripted_validation(monkeypatch, [0.5, 0.9, 0.3, 0.2, 0.2])
    base = dict(epochs=4, batch_size=2, hard_negatives=2, learning_rate=0.1, train_rows=10, val_rows=2,
                show_progress=False)
    first = train_maxsim(MaxSimTrainConfig(output_dir=str(tmp_path / "a"), **base), groups, queries.texts,
                         texts.texts, val_groups=groups[:2], reranker=make_reranker())
    epoch2 = _weights(tmp_path / "a" / "checkpoint_epoch_2" / "model")
    assert first["best_val_mrr"] == 0.9 and torch.equal(_weights(tmp_path / "a" / "best_model"), epoch2)
    ck = tmp_path / "a" / "checkpoint_epoch_3"
    assert torch.equal(_weights(ck / "best_model"), epoch2)
    assert not torch.equal(_weights(ck / "model"), epoch2)
    res = train_maxsim(MaxSimTrainConfig(output_dir=str(tmp_path / "b"), resume_from=str(ck), **base), groups,
                       queries.texts, texts.texts, val_groups=groups[:2], reranker=make_reranker())
    assert res["best_val_mrr"] == 0.9 and res["history"]["val_mrr"] == [0.5, 0.9, 0.3, 0.2]
    assert torch.equal(_weights(tmp_path / "b" / "best_model"), epoch2)


def test_resume_of_a_partial_epoch_restores_the_best_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A max_steps stop inside epoch 3 stores epoch 2's best model in its checkpoint (its model/ is
    the stopped one); the resume into a new folder restores that, not the mid-epoch model."""
    groups, queries, texts = synthetic()  # 4 steps per epoch; max_steps 10 stops inside epoch 3
    _scripted_validation(monkeypatch, [0.5, 0.9, 0.95, 0.1])  # epoch 3: 0.95 partial (does not compete), 0.1
    base = dict(epochs=3, batch_size=2, hard_negatives=2, learning_rate=0.1, train_rows=10, val_rows=2,
                show_progress=False)
    part = train_maxsim(MaxSimTrainConfig(output_dir=str(tmp_path / "a"), max_steps=10, **base), groups,
                        queries.texts, texts.texts, val_groups=groups[:2], reranker=make_reranker())
    assert part["best_val_mrr"] == 0.9
    epoch2 = _weights(tmp_path / "a" / "checkpoint_epoch_2" / "model")
    ck = tmp_path / "a" / "checkpoint_epoch_3"
    assert json.loads((ck / "trainer_state.json").read_text())["batch"] == 2
    res = train_maxsim(MaxSimTrainConfig(output_dir=str(tmp_path / "b"), resume_from=str(ck), **base), groups,
                       queries.texts, texts.texts, val_groups=groups[:2], reranker=make_reranker())
    assert res["best_val_mrr"] == 0.9 and res["steps"] == 12
    assert torch.equal(_weights(tmp_path / "b" / "best_model"), epoch2)


def _cli_runs(tmp_path: Path, data_dir: Path, monkeypatch: pytest.MonkeyPatch,
              capsys: pytest.CaptureFixture[str], *, old_format: bool = False) -> tuple[dict, str]:
    """``train-maxsim`` for one epoch into ``o1``, then ``--eval`` resuming its finished checkpoint
    into ``o2`` (``old_format``: the checkpoint as written before best models were stored)."""
    from rag_relax_plugins.cli import main

    _hashing_reranker_class(monkeypatch)
    rows = (data_dir / "hotpotqa" / "distractor_500.jsonl").read_text(encoding="utf-8").splitlines()[:30]
    data = tmp_path / "d.jsonl"
    data.write_text("\n".join(rows) + "\n", encoding="utf-8")
    common = ["--data", str(data), "--train-rows", "20", "--val-rows", "4", "--epochs", "1", "--batch-size", "8",
              "--cache-dir", str(tmp_path / "cache"), "--no-progress"]
    assert main(["train-maxsim", "-o", str(tmp_path / "o1"), *common]) == 0
    capsys.readouterr()
    ck = tmp_path / "o1" / "checkpoint_epoch_1"
    if old_format:
        state = json.loads((ck / "trainer_state.json").read_text())
        del state["best_epoch"]
        (ck / "trainer_state.json").write_text(json.dumps(state), encoding="utf-8")
    rc = main(["train-maxsim", "-o", str(tmp_path / "o2"), *common, "--eval", "--resume-from", str(ck)])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    report = json.loads(captured.out)
    assert set(report["test_after"]["all"]) >= {"mrr", "n"}
    return report, captured.err


def test_cli_eval_after_a_resume_into_a_new_folder_scores_the_runs_best_model(
    tmp_path: Path, data_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Resuming a finished checkpoint into a new output folder restores its best model there;
    ``--eval`` scores it (the run's best, epoch 1 here), not final_model."""
    report, err = _cli_runs(tmp_path, data_dir, monkeypatch, capsys)
    assert report["evaluated_model"] == str(tmp_path / "o2" / "best_model")
    assert torch.equal(_weights(tmp_path / "o2" / "best_model"), _weights(tmp_path / "o1" / "best_model"))
    assert "note" not in err


def test_cli_eval_after_a_resume_of_an_old_checkpoint_into_a_new_folder(
    tmp_path: Path, data_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A checkpoint without its best model (older format) writes no best_model into the new folder;
    ``--eval`` then evaluates final_model and says so (it used to stop with an error)."""
    report, err = _cli_runs(tmp_path, data_dir, monkeypatch, capsys, old_format=True)
    assert not (tmp_path / "o2" / "best_model").exists()
    assert report["evaluated_model"] == str(tmp_path / "o2" / "final_model")
    assert "final_model" in err and "best_model" in err


def test_trainer_state_carries_a_format_version_and_a_newer_one_is_refused(tmp_path: Path) -> None:
    """``trainer_state.json`` records its format version; a checkpoint of another version is
    refused naming the file; one written before the version existed (no key) reads as version 1
    and resumes."""
    groups, queries, texts = synthetic()
    base = dict(epochs=2, batch_size=2, hard_negatives=2, learning_rate=0.1, val_rows=0, train_rows=10,
                show_progress=False)
    train_maxsim(MaxSimTrainConfig(output_dir=str(tmp_path / "a"), max_steps=3, **base), groups,
                 queries.texts, texts.texts, reranker=make_reranker())
    ck = tmp_path / "a" / "checkpoint_epoch_1"
    file = ck / "trainer_state.json"
    state = json.loads(file.read_text())
    assert state["format_version"] == 1
    file.write_text(json.dumps({**state, "format_version": 2}), encoding="utf-8")
    with pytest.raises(ValueError, match=r"trainer_state\.json: unsupported checkpoint format_version 2"):
        train_maxsim(MaxSimTrainConfig(output_dir=str(tmp_path / "a"), resume_from=str(ck), **base), groups,
                     queries.texts, texts.texts, reranker=make_reranker())
    del state["format_version"]  # as written before the key existed
    file.write_text(json.dumps(state), encoding="utf-8")
    res = train_maxsim(MaxSimTrainConfig(output_dir=str(tmp_path / "a"), resume_from=str(ck), **base), groups,
                       queries.texts, texts.texts, reranker=make_reranker())
    assert res["steps"] == 8


@pytest.mark.parametrize("damage", ["optimizer.safetensors", "optimizer.json", "optimizer.json:{}",
                                    "trainer_state.json:scheduler", "trainer_state.json:history"])
def test_a_damaged_checkpoint_is_refused_before_the_model_loads_or_the_cache_is_built(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, damage: str
) -> None:
    """A damaged optimiser or state file was refused only after the checkpoint's model had been
    loaded into the passed reranker's encoder (its trained layers replaced) and the token cache
    built into a new output folder (review 2026-12-05)."""
    groups, queries, texts = synthetic()
    base = dict(epochs=2, batch_size=4, hard_negatives=2, val_rows=0, train_rows=10, show_progress=False)
    train_maxsim(MaxSimTrainConfig(output_dir=str(tmp_path / "a"), max_steps=2, **base), groups, queries.texts,
                 texts.texts, reranker=make_reranker())
    ck = tmp_path / "a" / "checkpoint_epoch_1"
    name, _, what = damage.partition(":")
    if not what:  # truncated
        (ck / name).write_bytes((ck / name).read_bytes()[:40])
    elif what == "{}":  # readable JSON, not an optimiser state
        (ck / name).write_text("{}")
    else:  # a field missing, or the history without its lists
        state = json.loads((ck / name).read_text())
        state[what] = {} if what == "history" else state.pop(what) and None
        (ck / name).write_text(json.dumps({k: v for k, v in state.items() if v is not None}))
    loads: list[Path] = []
    real_load = MaxSimReranker.load.__func__  # type: ignore[attr-defined]
    monkeypatch.setattr(MaxSimReranker, "load", classmethod(lambda cls, folder, **kw: loads.append(folder)
                                                            or real_load(cls, folder, **kw)))
    with pytest.raises(ValueError, match=name.replace(".", r"\.")):
        train_maxsim(MaxSimTrainConfig(output_dir=str(tmp_path / "b"), resume_from=str(ck), **base), groups,
                     queries.texts, texts.texts, reranker=make_reranker())
    assert loads == [] and not (tmp_path / "b").exists()
