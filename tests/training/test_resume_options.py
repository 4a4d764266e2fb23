"""A resume must use the checkpoint's options (runtime-only ones aside), for every trainer.

``rag-relax train`` (Gaussian embedder), ``train-maxsim`` and ``train-reranker`` (G-Rerank) store
their options in each checkpoint and refuse, before writing anything, a resume whose options
differ; a resume changing only runtime-only options runs.
"""

from __future__ import annotations

import hashlib
import json
import logging
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "rerankers"))

from _gumbel_helpers import FakeReader, example, grerank_config, tiny_scorer

from rag_relax_plugins.embedders.hashing import HashingEncoder
from rag_relax_plugins.rerankers.gumbel import GumbelReranker
from rag_relax_plugins.rerankers.maxsim import MaxSimConfig, MaxSimReranker
from rag_relax_plugins.training._resume_check import check_resume_options, resume_options
from rag_relax_plugins.training.gaussian_data import synthesize_pairs
from rag_relax_plugins.training.gaussian_train import TrainConfig, train
from rag_relax_plugins.training.grerank import GRerankConfig, train_grerank
from rag_relax_plugins.training.maxsim_data import QueryGroup, TextTable
from rag_relax_plugins.training.maxsim_train import MaxSimTrainConfig, train_maxsim

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def snapshot(folder: Path) -> dict[str, tuple[int, str]]:
    """Every file and folder under ``folder``: modification time and content hash."""
    return {
        str(p.relative_to(folder)): (p.stat().st_mtime_ns, _digest(p) if p.is_file() else "")
        for p in sorted(folder.rglob("*"))
    }


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --- the shared rule ---------------------------------------------------------------------------


def test_check_names_every_difference_and_ignores_runtime_only() -> None:
    saved = {"seed": 0, "lr": 1e-3, "device": "cpu", "batch": 4, "val": "v.jsonl"}
    now = {"seed": 7, "lr": 1e-2, "device": "cuda", "batch": 4, "val": None, "added_later": 3}
    with pytest.raises(ValueError) as err:
        check_resume_options(saved, now, {"device"}, "ck/step_1")
    assert str(err.value) == (
        "cannot resume from ck/step_1: different options: lr (checkpoint 0.001, now 0.01), "
        "seed (checkpoint 0, now 7), val (checkpoint 'v.jsonl', now None)"
    )
    check_resume_options(saved, {**saved, "device": "cuda", "added_later": 3}, {"device"}, "ck")  # no error


def test_older_checkpoint_without_options_resumes_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        check_resume_options(None, {"seed": 1}, set(), "old/ck")
    assert "old/ck" in caplog.text and "older format" in caplog.text


def test_local_paths_compare_as_the_same_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "pairs.jsonl").write_text("{}")
    monkeypatch.chdir(tmp_path)
    rel = resume_options({"train_file": "./pairs.jsonl", "backbone": "hashing:64"}, ["train_file", "backbone"])
    absolute = resume_options({"train_file": str(tmp_path / "pairs.jsonl"), "backbone": "hashing:64"},
                              ["train_file"])
    digest = hashlib.sha256(b"{}").hexdigest()
    want = {"train_file": str((tmp_path / "pairs.jsonl").resolve()), "train_file_sha256": digest,
            "backbone": "hashing:64"}
    assert rel == absolute == want


def test_gaussian_resume_after_the_data_file_changed_is_refused(gaussian_run: GaussianRun) -> None:
    opts, run = gaussian_run
    pairs = Path(opts["train_file"])
    original = pairs.read_bytes()
    try:  # same path, other content: edited in place between the run and its resume
        pairs.write_bytes(original + original.splitlines(keepends=True)[0])
        with pytest.raises(ValueError, match=r"train_file_sha256 \(checkpoint"):
            train(TrainConfig(output_dir=str(run), resume_from=str(run / "checkpoint_epoch_1"), **opts))
    finally:
        pairs.write_bytes(original)


# --- rag-relax train (Gaussian embedder) -------------------------------------------------------

DOCS = [f"Topic {w} is discussed here. It has facts about {w} and more {w}." for w in
        ("cats", "dogs", "stocks", "rain", "python", "paris")]


GaussianRun = tuple[dict[str, Any], Path]


@pytest.fixture
def gaussian_run(tmp_path: Path) -> GaussianRun:
    """A finished 2-epoch run with a validation file; its options and its output folder."""
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("\n".join(json.dumps(p.to_dict()) for p in synthesize_pairs(DOCS * 2, seed=0)))
    opts: dict[str, Any] = dict(
        train_file=str(pairs), val_file=str(pairs), backbone="hashing:32", output_dim=8, batch_size=4,
        learning_rate=1e-3, head_learning_rate=1e-2, num_slices=8, seed=3, show_progress=False,
        device="cpu", epochs=2,
    )
    train(TrainConfig(output_dir=str(tmp_path / "run"), **opts))
    return opts, tmp_path / "run"


def test_gaussian_resume_with_other_options_is_refused_before_writing(gaussian_run: GaussianRun) -> None:
    opts, run = gaussian_run
    ck = run / "checkpoint_epoch_1"
    before = snapshot(run)
    # the reviewer's case: no --val-file now, another batch size, seed and loss; and more epochs
    changed = {**opts, "val_file": None, "batch_size": 8, "seed": 9, "loss": "triplet", "epochs": 3}
    with pytest.raises(ValueError, match=r"cannot resume from .*checkpoint_epoch_1: different options") as err:
        train(TrainConfig(output_dir=str(run), resume_from=str(ck), **changed))
    for name in ("batch_size (checkpoint 4, now 8)", "epochs (checkpoint 2, now 3)",
                 "loss (checkpoint 'infonce', now 'triplet')", "seed (checkpoint 3, now 9)", "val_file ("):
        assert name in str(err.value)
    assert snapshot(run) == before


def test_gaussian_resume_changing_runtime_only_options_runs(gaussian_run: GaussianRun, tmp_path: Path) -> None:
    opts, run = gaussian_run
    full = json.loads((run / "history.json").read_text())
    # another output folder, no checkpoints, the backbone/dimension left to the checkpoint's model
    resumed_opts = {**opts, "backbone": None, "output_dim": None}
    res = train(TrainConfig(output_dir=str(tmp_path / "b"), resume_from=str(run / "checkpoint_epoch_1"),
                            save_checkpoints=False, **resumed_opts))
    assert res["steps"] == 6
    assert res["history"]["step_loss"] == pytest.approx(full["step_loss"], rel=1e-5)
    assert not list((tmp_path / "b").glob("checkpoint_*"))


def test_gaussian_checkpoint_without_options_resumes_with_a_warning(
    gaussian_run: GaussianRun, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    opts, run = gaussian_run
    ck = run / "checkpoint_epoch_1"
    state = json.loads((ck / "trainer_state.json").read_text())
    assert state["config"]["seed"] == 3
    assert state["config"]["train_file"] == str(Path(opts["train_file"]).resolve())
    del state["config"]  # as written before the options were stored
    (ck / "trainer_state.json").write_text(json.dumps(state))
    with caplog.at_level(logging.WARNING):
        res = train(TrainConfig(output_dir=str(tmp_path / "c"), resume_from=str(ck), **{**opts, "seed": 4}))
    assert res["steps"] == 6 and "older format" in caplog.text


# --- rag-relax train-maxsim ----------------------------------------------------------------------

DIM = 48
TOPICS = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel"]


def _maxsim_data() -> tuple[list[QueryGroup], list[str], list[str]]:
    queries, texts = TextTable(), TextTable()
    groups = []
    for i, topic in enumerate(TOPICS):
        rows = tuple(texts.add(f"{TOPICS[(i + j) % len(TOPICS)]} notes number {j}") for j in range(4))
        groups.append(QueryGroup(queries.add(f"tell me about {topic}"), rows, (0,), "bridge"))
    return groups, queries.texts, texts.texts


def _maxsim_reranker() -> MaxSimReranker:
    return MaxSimReranker(MaxSimConfig(projection_dim=8, token_dim=DIM, seed=0), encoder=HashingEncoder(dim=DIM, seed=2))


def test_maxsim_resume_with_other_options_is_refused_and_runtime_only_changes_run(tmp_path: Path) -> None:
    groups, queries, texts = _maxsim_data()
    base: dict[str, Any] = dict(epochs=2, batch_size=2, hard_negatives=2, learning_rate=0.05, temperature=0.1, seed=1,
                val_rows=0, train_rows=10, show_progress=False)
    run = tmp_path / "run"
    full = train_maxsim(MaxSimTrainConfig(output_dir=str(run), **base), groups, queries, texts,
                        reranker=_maxsim_reranker())
    ck = run / "checkpoint_epoch_1"
    before = snapshot(run)
    changed = {**base, "learning_rate": 0.5, "hard_negatives": 3}
    want = r"different options: hard_negatives \(checkpoint 2, now 3\), learning_rate \(checkpoint 0.05, now 0.5\)$"
    with pytest.raises(ValueError, match=want):
        train_maxsim(MaxSimTrainConfig(output_dir=str(run), resume_from=str(ck), **changed), groups, queries,
                     texts, reranker=_maxsim_reranker())
    assert snapshot(run) == before
    # runtime-only: another output folder, token cache folder and max_steps (stop, then continue)
    part = MaxSimTrainConfig(output_dir=str(tmp_path / "b"), resume_from=str(ck), max_steps=6,
                             cache_dir=str(tmp_path / "cache"), **base)
    assert train_maxsim(part, groups, queries, texts, reranker=_maxsim_reranker())["steps"] == 6
    rest = MaxSimTrainConfig(output_dir=str(tmp_path / "b"),
                             resume_from=str(tmp_path / "b" / "checkpoint_epoch_2"), **base)
    res = train_maxsim(rest, groups, queries, texts, reranker=_maxsim_reranker())
    assert res["steps"] == full["steps"] == 8
    assert res["history"]["step_loss"][:4] == pytest.approx(full["history"]["step_loss"][:4])


def test_maxsim_resume_on_other_training_data_is_refused(tmp_path: Path) -> None:
    """Data given to the Python API (or the default data file, edited in place) is named by no
    option: a resume on another split was accepted, and train_config.json named the defaults."""
    groups, queries, texts = _maxsim_data()
    base: dict[str, Any] = dict(epochs=2, batch_size=2, hard_negatives=2, seed=1, val_rows=0, train_rows=10,
                                show_progress=False)
    run = tmp_path / "run"
    train_maxsim(MaxSimTrainConfig(output_dir=str(run), max_steps=2, **base), groups, queries, texts,
                 reranker=_maxsim_reranker())
    ck = run / "checkpoint_epoch_1"
    before = snapshot(run)
    edited = [*texts[:-1], texts[-1] + " (edited)"]
    for other in ((groups[:6], queries, texts), (groups, queries, edited), (groups[1:] + groups[:1], queries, texts)):
        with pytest.raises(ValueError, match=r"different options: training_data_sha256 \(checkpoint '[0-9a-f]{64}'"):
            train_maxsim(MaxSimTrainConfig(output_dir=str(run), resume_from=str(ck), **base), *other,
                         reranker=_maxsim_reranker())
    with pytest.raises(ValueError, match="training_data_sha256"):  # the validation groups are data too
        train_maxsim(MaxSimTrainConfig(output_dir=str(run), resume_from=str(ck), **base), groups, queries, texts,
                     val_groups=groups[:2], reranker=_maxsim_reranker())
    assert snapshot(run) == before
    # the same data resumes, its numbers as numpy integers too (check_groups accepts them)
    as_numpy = [QueryGroup(np.int64(g.query), tuple(np.int64(c) for c in g.candidates), tuple(np.int64(x) for x in g.gold),
                           g.type) for g in groups]
    res = train_maxsim(MaxSimTrainConfig(output_dir=str(run), resume_from=str(ck), **base), as_numpy, queries, texts,
                       reranker=_maxsim_reranker())
    assert res["steps"] == 8


@pytest.mark.parametrize("damage", ["nan_weights", "moment_shape", "no_history", "step_text"])
def test_a_damaged_maxsim_checkpoint_is_refused_before_anything_is_written(tmp_path: Path, damage: str) -> None:
    """NaN weights loaded, and a mis-shaped optimiser moment failed only at the first step: by
    then best_model/ had been replaced by the checkpoint's (NaN) one and train_config.json
    rewritten."""
    from safetensors.torch import load_file, save_file

    groups, queries, texts = _maxsim_data()
    base: dict[str, Any] = dict(epochs=2, batch_size=2, hard_negatives=2, seed=1, val_rows=2, train_rows=10,
                                show_progress=False)
    run = tmp_path / "run"
    train_maxsim(MaxSimTrainConfig(output_dir=str(run), **base), groups[:6], queries, texts,
                 val_groups=groups[6:], reranker=_maxsim_reranker())
    ck = run / "checkpoint_epoch_1"
    if damage in ("no_history", "step_text"):  # a KeyError, or a TypeError deep in the loop
        state = json.loads((ck / "trainer_state.json").read_text())
        if damage == "no_history":
            del state["history"]
        else:
            state["step"] = str(state["step"])
        (ck / "trainer_state.json").write_text(json.dumps(state))
    else:
        file = ck / "model" / "model.safetensors" if damage == "nan_weights" else ck / "optimizer.safetensors"
        tensors = load_file(str(file))
        name = next(k for k, t in tensors.items() if t.is_floating_point() and t.dim() > 0)
        tensors[name] = (torch.full_like(tensors[name], float("nan")) if damage == "nan_weights"
                         else torch.zeros(tensors[name].numel() + 1))
        save_file(tensors, str(file))
    before = snapshot(run)
    want = {"nan_weights": "contains NaN or inf", "moment_shape": "has shape",
            "no_history": r"trainer_state\.json: 'history' is missing or not dict of lists",
            "step_text": r"trainer_state\.json: 'step' is missing or not int"}[damage]
    with pytest.raises(ValueError, match=want):
        train_maxsim(MaxSimTrainConfig(output_dir=str(run), resume_from=str(ck), **base), groups[:6], queries,
                     texts, val_groups=groups[6:], reranker=_maxsim_reranker())
    assert snapshot(run) == before


# --- rag-relax train-reranker (G-Rerank) -------------------------------------------------------

EXAMPLES = [example(i) for i in range(4)]


def _gr_config(out: Path, **kw: object) -> GRerankConfig:
    config: GRerankConfig = grerank_config(out, **{"k": 1, "tau": 0.5, **kw})
    return config


def _gr_reranker(minilm_path: str, seed: int = 0) -> GumbelReranker:
    return GumbelReranker(tiny_scorer(minilm_path, seed=seed), k=1, device="cpu", tau=0.5)


def test_grerank_resume_with_other_options_is_refused_before_writing(minilm_path: str, tmp_path: Path) -> None:
    run = tmp_path / "run"
    train_grerank(_gr_config(run, max_steps=2), examples=EXAMPLES, reranker=_gr_reranker(minilm_path),
                  reader=FakeReader())
    ck = run / "checkpoint_step_2"
    before = snapshot(run)
    # the reviewer's case: other --grad-accum-steps, --seed and --learning-rate than the checkpoint's
    bad = _gr_config(run, resume_from=str(ck), grad_accum_steps=2, seed=7, learning_rate=1e-2)
    with pytest.raises(ValueError) as err:
        train_grerank(bad, examples=EXAMPLES, reranker=_gr_reranker(minilm_path), reader=FakeReader())
    assert str(err.value) == (
        f"cannot resume from {ck}: different options: grad_accum_steps (checkpoint 1, now 2), "
        "learning_rate (checkpoint 0.001, now 0.01), seed (checkpoint 0, now 7)"
    )
    assert snapshot(run) == before  # train_config.json included


def test_grerank_resume_may_raise_epochs_and_change_checkpointing(minilm_path: str, tmp_path: Path) -> None:
    """No LR schedule over the run's length: one epoch, then a resume with ``epochs=2``, gives the
    weights of an uninterrupted 2-epoch run."""
    full = _gr_reranker(minilm_path)
    train_grerank(_gr_config(tmp_path / "a", epochs=2), examples=EXAMPLES, reranker=full, reader=FakeReader())
    train_grerank(_gr_config(tmp_path / "b"), examples=EXAMPLES, reranker=_gr_reranker(minilm_path),
                  reader=FakeReader())
    resumed = _gr_reranker(minilm_path, seed=1)
    cfg = _gr_config(tmp_path / "c", epochs=2, resume_from=str(tmp_path / "b" / "checkpoint_step_4"),
                     save_every_steps=3, keep_checkpoints=1)
    res = train_grerank(cfg, examples=EXAMPLES, reranker=resumed, reader=FakeReader())
    assert len(res.history["loss"]) == 8
    q, docs = EXAMPLES[0].question, EXAMPLES[0].paragraph_texts()
    assert torch.allclose(resumed.score(q, docs), full.score(q, docs), atol=1e-5)


def test_grerank_resume_on_other_training_questions_is_refused(minilm_path: str, tmp_path: Path) -> None:
    """examples= (or the default data file, whose data_path is None) is named by no option: a
    resume on other questions was accepted."""
    run = tmp_path / "run"
    train_grerank(_gr_config(run, max_steps=2), examples=EXAMPLES, reranker=_gr_reranker(minilm_path),
                  reader=FakeReader())
    ck = run / "checkpoint_step_2"
    before = snapshot(run)
    for other in (EXAMPLES[:3], [example(i) for i in range(1, 5)]):
        with pytest.raises(ValueError, match=r"different options: training_data_sha256 \(checkpoint '[0-9a-f]{64}'"):
            train_grerank(_gr_config(run, resume_from=str(ck)), examples=other, reranker=_gr_reranker(minilm_path),
                          reader=FakeReader())
    assert snapshot(run) == before
    train_grerank(_gr_config(run, resume_from=str(ck)), examples=list(EXAMPLES), reranker=_gr_reranker(minilm_path),
                  reader=FakeReader())  # the same questions: resumes


@pytest.mark.parametrize(("module", "config", "option"), [
    ("maxsim_train", "MaxSimTrainConfig", "learning_rate"),
    ("maxsim_train", "MaxSimTrainConfig", "backbone_learning_rate"),
    ("grerank_config", "GRerankConfig", "learning_rate"),
    ("grerank_config", "GRerankConfig", "max_grad_norm"),
    ("mol_train_config", "MoLTrainConfig", "lr"),
])
def test_a_learning_rate_that_overflows_float32_is_refused_by_every_trainer(module: str, config: str, option: str) -> None:
    """1e38 passed the checks and AdamW raised "value cannot be converted to type float without
    overflow" at the first step: a traceback, exit 1 (review)."""
    import importlib

    cls = getattr(importlib.import_module(f"rag_relax_plugins.training.{module}"), config)
    with pytest.raises(ValueError, match=rf"{option} must be at most 1e\+30 \(the optimiser works in float32\)"):
        cls(**{option: 1e38})


def test_options_neither_run_uses_may_differ_on_resume_of_the_reranker_trainers(tmp_path: Path) -> None:
    """A backbone learning rate with a frozen MaxSim backbone, the reader's options of a labels-
    supervised G-Rerank run and the backbone learning rate with trainable_layers=0 change nothing,
    yet a resume without them was refused (review); an option one of the runs uses still counts."""
    from rag_relax_plugins.training import grerank_checkpoint, maxsim_checkpoint
    from rag_relax_plugins.training.grerank_config import GRerankConfig
    from rag_relax_plugins.training.maxsim_train import MaxSimTrainConfig

    def stored(folder: Path, options: dict) -> Path:
        folder.mkdir()
        (folder / "trainer_state.json").write_text(json.dumps({"config": options}), encoding="utf-8")
        return folder

    ms = maxsim_checkpoint.checkpoint_options
    frozen = stored(tmp_path / "ms", ms(MaxSimTrainConfig(train_last_layers=0, backbone_learning_rate=1e-4).to_dict()))
    maxsim_checkpoint.check_resume(frozen, ms(MaxSimTrainConfig(train_last_layers=0).to_dict()))
    tuned = stored(tmp_path / "ms1", ms(MaxSimTrainConfig(train_last_layers=1, backbone_learning_rate=1e-4).to_dict()))
    with pytest.raises(ValueError, match=r"backbone_learning_rate \(checkpoint 0.0001"):
        maxsim_checkpoint.check_resume(tuned, ms(MaxSimTrainConfig(train_last_layers=1).to_dict()))

    gr = grerank_checkpoint.checkpoint_options
    labels = stored(tmp_path / "gr", gr(GRerankConfig(supervision="labels", doc_tokens=32, trainable_layers=0,
                                                      learning_rate=1e-4).to_dict()))
    grerank_checkpoint.check_resume(labels, gr(GRerankConfig(supervision="labels", trainable_layers=0).to_dict()))
    reader = stored(tmp_path / "gr1", gr(GRerankConfig(doc_tokens=32).to_dict()))
    with pytest.raises(ValueError, match=r"doc_tokens \(checkpoint 32, now 48\)"):
        grerank_checkpoint.check_resume(reader, gr(GRerankConfig().to_dict()))


def test_a_grerank_resume_reads_the_scorer_settings_it_leaves_unused_from_the_checkpoint(tmp_path: Path) -> None:
    """The checkpoint's reranker decides trainable_layers: a frozen run resumed without repeating
    trainable_layers=0 was refused over the (unused) backbone learning rate (review)."""
    from rag_relax_plugins.training import grerank_checkpoint
    from rag_relax_plugins.training.grerank_config import GRerankConfig

    gr = grerank_checkpoint.checkpoint_options
    folder = tmp_path / "ck"
    folder.mkdir()
    saved = gr(GRerankConfig(supervision="labels", trainable_layers=0, learning_rate=1e-3).to_dict())
    (folder / "trainer_state.json").write_text(json.dumps({"config": saved}), encoding="utf-8")
    grerank_checkpoint.check_resume(folder, gr(GRerankConfig(supervision="labels", learning_rate=2e-3).to_dict()))


def test_a_folder_like_checkpoint_epoch_01_is_not_the_runs(tmp_path: Path) -> None:
    from rag_relax_plugins.training._run_files import check_checkpoint_targets

    (tmp_path / "checkpoint_epoch_01").mkdir()
    (tmp_path / "checkpoint_epoch_01" / "notes.txt").write_text("mine", encoding="utf-8")
    check_checkpoint_targets(tmp_path, "checkpoint_epoch_", 3)  # the run writes checkpoint_epoch_1
