"""train_retrieval's documented step bookkeeping (review 2026-12-05, mutants that survived): the LR
of step s is lr * lr_at(s), a last batch of one pair is no step, epoch_loss is the mean of the
epoch's step losses, negatives are drawn per step, and a resume with another seed is refused."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from test_mol_train import _cfg, _model, _toy

from rag_relax_plugins.training import mol_train
from rag_relax_plugins.training.mol_train import lr_at, train_retrieval


def test_each_step_runs_at_its_own_learning_rate(monkeypatch: pytest.MonkeyPatch) -> None:
    lrs: list[float] = []
    real = torch.optim.AdamW.step

    def spy(self: Any, *a: Any, **kw: Any) -> Any:
        lrs.append(self.param_groups[0]["lr"])
        return real(self, *a, **kw)

    monkeypatch.setattr(torch.optim.AdamW, "step", spy)
    res = train_retrieval(_model(), _toy(), _cfg(epochs=2, warmup_steps=2, min_lr_ratio=0.1))
    assert lrs == pytest.approx([0.05 * lr_at(s, total_steps=res.steps, warmup_steps=2, min_ratio=0.1)
                                 for s in range(res.steps)], rel=1e-12)


def test_a_last_batch_of_one_pair_is_no_step_and_epoch_loss_is_the_epoch_mean() -> None:
    res = train_retrieval(_model(), _toy(n_pairs=97), _cfg(epochs=2))  # batch 16: 6 full batches and 1 pair
    assert res.steps == 12
    h = res.history
    assert h["epoch_loss"] == pytest.approx([sum(h["step_loss"][:6]) / 6, sum(h["step_loss"][6:]) / 6], rel=1e-12)


def test_uniform_negatives_are_drawn_afresh_each_step(monkeypatch: pytest.MonkeyPatch) -> None:
    drawn: list[list[int]] = []
    real = mol_train._sample_negatives

    def spy(data: Any, s: Any, g: Any) -> Any:
        out = real(data, s, g)
        drawn.append(out.tolist())
        return out

    monkeypatch.setattr(mol_train, "_sample_negatives", spy)
    train_retrieval(_model(), _toy(), _cfg(epochs=1, num_negatives=6))
    assert len(drawn) == 6 and len({tuple(d) for d in drawn}) > 1


def test_a_resume_with_another_seed_is_refused(tmp_path: Path) -> None:
    ck = tmp_path / "ck"
    train_retrieval(_model(), _toy(), _cfg(checkpoint_dir=str(ck), max_steps=2))
    with pytest.raises(ValueError, match="seed"):
        train_retrieval(_model(), _toy(), _cfg(checkpoint_dir=str(ck), seed=4), resume=True)
