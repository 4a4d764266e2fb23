"""MaxSim training (review 2026-12-05, mutants that survived): the epoch a resume finishes after a
max_steps stop is summarised over all of its batches (the selection loss without validation
groups), and a trailing single-query batch is dropped."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_maxsim_train import make_reranker, synthetic

from rag_relax_plugins.training.maxsim_train import MaxSimTrainConfig, train_maxsim

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_a_resumed_epoch_mean_counts_the_batches_before_the_stop(tmp_path: Path) -> None:
    groups, queries, texts = synthetic()  # 8 groups, batch 2: 4 steps per epoch
    base = dict(epochs=1, batch_size=2, hard_negatives=2, learning_rate=0.1, show_progress=False)
    out = tmp_path / "run"
    train_maxsim(MaxSimTrainConfig(output_dir=str(out), max_steps=3, **base), groups, queries.texts, texts.texts,
                 reranker=make_reranker())
    res = train_maxsim(MaxSimTrainConfig(output_dir=str(out), resume_from=str(out / "checkpoint_epoch_1"), **base),
                       groups, queries.texts, texts.texts, reranker=make_reranker())
    h = res["history"]
    assert len(h["step_loss"]) == 4 and len(h["train_loss"]) == 1
    assert h["train_loss"][0] == pytest.approx(sum(h["step_loss"]) / 4, rel=1e-9)
    assert res["best_val_mrr"] == pytest.approx(-h["train_loss"][0], rel=1e-9)  # selection: minus that mean


def test_a_trailing_single_query_is_not_a_batch(tmp_path: Path) -> None:
    groups, queries, texts = synthetic()
    res = train_maxsim(MaxSimTrainConfig(output_dir=str(tmp_path / "run"), epochs=1, batch_size=2, hard_negatives=2,
                                         show_progress=False, save_checkpoints=False),
                       groups[:5], queries.texts, texts.texts, reranker=make_reranker())
    assert res["steps"] == 2  # 5 groups, batch 2: 2 batches of 2, the fifth query left out this epoch
