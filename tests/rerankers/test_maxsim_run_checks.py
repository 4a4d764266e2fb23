"""MaxSim training: an earlier run's best_model/, a passed reranker's own config, integer options."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from test_maxsim_resume import _hashing_reranker_class, _weights
from test_maxsim_train import make_reranker, synthetic

from rag_relax_plugins.training.maxsim_train import MaxSimTrainConfig, train_maxsim

pytestmark = pytest.mark.usefixtures("one_torch_thread")

# 8 groups, batch 2: 4 steps per epoch; projection_dim 8 is make_reranker()'s
BASE = dict(epochs=1, batch_size=2, hard_negatives=2, learning_rate=0.1, val_rows=0, train_rows=10,
            projection_dim=8, show_progress=False)


def _tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# --- 1: a fresh run never leaves an earlier run's best_model/ as its own -------------------------

def test_a_fresh_run_without_a_complete_epoch_removes_the_earlier_runs_best_model(tmp_path: Path) -> None:
    groups, queries, texts = synthetic()
    out = tmp_path / "run"
    first = train_maxsim(MaxSimTrainConfig(output_dir=str(out), **BASE), groups, queries.texts, texts.texts,
                         reranker=make_reranker())
    assert first["best_val_mrr"] > -float("inf") and (out / "best_model").is_dir()
    again = train_maxsim(MaxSimTrainConfig(output_dir=str(out), max_steps=2, seed=7, **BASE), groups,
                         queries.texts, texts.texts, reranker=make_reranker())
    assert again["best_val_mrr"] == -float("inf") and again["steps"] == 2
    assert not (out / "best_model").exists()  # the earlier run's: deleted, not passed off as this run's
    assert (out / "final_model" / "config.json").is_file()


def test_a_fresh_run_refuses_a_best_model_folder_it_did_not_write(tmp_path: Path) -> None:
    groups, queries, texts = synthetic()
    out = tmp_path / "run"
    (out / "best_model").mkdir(parents=True)
    (out / "best_model" / "notes.txt").write_text("mine", encoding="utf-8")
    before = _tree(out)
    with pytest.raises(ValueError, match="best_model exists and is not a MaxSim reranker saved"):
        train_maxsim(MaxSimTrainConfig(output_dir=str(out), **BASE), groups, queries.texts, texts.texts,
                     reranker=make_reranker())
    assert _tree(out) == before


def test_a_resumed_run_refuses_a_best_model_folder_it_did_not_write_before_training(tmp_path: Path) -> None:
    """A resume into a folder whose best_model/ is the user's trained an epoch, then its
    best_model/ save refused the folder: the epoch was lost (review)."""
    groups, queries, texts = synthetic()
    first = tmp_path / "first"
    train_maxsim(MaxSimTrainConfig(output_dir=str(first), max_steps=2, **BASE), groups, queries.texts,
                 texts.texts, reranker=make_reranker())
    out = tmp_path / "run"
    (out / "best_model").mkdir(parents=True)
    (out / "best_model" / "notes.txt").write_text("mine", encoding="utf-8")
    before = _tree(out)
    ck = next(first.glob("checkpoint_epoch_*"), None) or next(first.glob("checkpoint_*"))
    with pytest.raises(ValueError, match=r"refusing to replace the existing folder .*best_model"):
        train_maxsim(MaxSimTrainConfig(output_dir=str(out), resume_from=str(ck), **BASE), groups, queries.texts,
                     texts.texts, reranker=make_reranker())
    assert _tree(out) == before


def test_cli_eval_of_a_fresh_run_without_a_complete_epoch_scores_its_final_model(
    tmp_path: Path, data_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A second, fresh run into the same --output stopped by --max-steps inside its first epoch:
    --eval scored the first run's best_model/ as this run's model; now final_model/, with a note."""
    from rag_relax_plugins.cli import main

    _hashing_reranker_class(monkeypatch)
    rows = (data_dir / "hotpotqa" / "distractor_500.jsonl").read_text(encoding="utf-8").splitlines()[:30]
    data = tmp_path / "d.jsonl"
    data.write_text("\n".join(rows) + "\n", encoding="utf-8")
    out = tmp_path / "o"
    common = ["-o", str(out), "--data", str(data), "--train-rows", "20", "--val-rows", "4", "--epochs", "1",
              "--batch-size", "4", "--cache-dir", str(tmp_path / "cache"), "--no-progress"]
    assert main(["train-maxsim", *common]) == 0
    earlier = _weights(out / "best_model")
    capsys.readouterr()
    assert main(["train-maxsim", *common, "--seed", "7", "--max-steps", "1", "--eval"]) == 0
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    assert report["steps"] == 1
    assert report["evaluated_model"] == str(out / "final_model")
    assert "completed no epoch" in captured.err and "final_model" in captured.err
    assert not (out / "best_model").exists()
    assert not torch.equal(_weights(out / "final_model"), earlier)


def test_cli_eval_without_test_questions_is_refused_before_anything_is_written(
    tmp_path: Path, data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Test rows whose gold paragraphs are all missing from their context make no test group:
    --eval wrote token_cache/ into the new --output, then failed with "groups must not be empty"
    (review)."""
    from rag_relax_plugins.cli import main

    rows = [json.loads(r) for r in
            (data_dir / "hotpotqa" / "distractor_500.jsonl").read_text(encoding="utf-8").splitlines()[:24]]
    for row in rows[20:]:
        row["supporting_facts"] = [["no such title", 0]]
    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    out = tmp_path / "o"
    argv = ["train-maxsim", "-o", str(out), "--data", str(data), "--train-rows", "20", "--val-rows", "4", "--epochs", "1",
            "--batch-size", "4", "--no-progress", "--eval"]
    assert main(argv) == 2
    assert "--eval needs test questions: none of the rows after --train-rows 20" in capsys.readouterr().err
    assert not out.exists()


# --- 2: a passed reranker brings its model; options that contradict it are refused --------------

def test_options_contradicting_the_passed_reranker_are_refused_before_anything_is_written(tmp_path: Path) -> None:
    groups, queries, texts = synthetic()
    out = tmp_path / "run"
    cfg = MaxSimTrainConfig(**{**BASE, "output_dir": str(out), "projection_dim": 32, "max_seq_length": 64})
    with pytest.raises(ValueError, match=r"projection_dim \(options 32, reranker 8\), max_seq_length "
                                         r"\(options 64, reranker 256\)"):
        train_maxsim(cfg, groups, queries.texts, texts.texts, reranker=make_reranker())
    cfg = MaxSimTrainConfig(**{**BASE, "output_dir": str(out), "backbone": str(tmp_path / "other")})
    with pytest.raises(ValueError, match="backbone"):
        train_maxsim(cfg, groups, queries.texts, texts.texts, reranker=make_reranker())
    assert not out.exists()


def test_options_left_at_their_defaults_record_the_passed_rerankers_values(tmp_path: Path) -> None:
    """projection_dim keeps its default (128); the 8-d reranker is trained and 8 is what
    train_config.json and the checkpoint record (they said 128). seed seeds the training only."""
    groups, queries, texts = synthetic()
    out = tmp_path / "run"
    cfg = MaxSimTrainConfig(**{**BASE, "output_dir": str(out), "projection_dim": 128, "seed": 5})
    train_maxsim(cfg, groups, queries.texts, texts.texts, reranker=make_reranker())
    recorded = json.loads((out / "train_config.json").read_text(encoding="utf-8"))
    stored = json.loads((out / "checkpoint_epoch_1" / "trainer_state.json").read_text(encoding="utf-8"))["config"]
    model = json.loads((out / "final_model" / "config.json").read_text(encoding="utf-8"))
    for options in (recorded, stored):
        assert options["projection_dim"] == model["projection_dim"] == 8
        assert options["max_seq_length"] == model["max_seq_length"] == 256
        assert options["seed"] == 5
    assert model["seed"] == 0  # the reranker's own initialisation seed


# --- 3: integer options are ints; a batch needs two queries --------------------------------------

def test_batch_size_one_is_refused_by_the_config() -> None:
    """batch_size=1: every batch was dropped, zero steps, rc 0 and an untrained final_model."""
    with pytest.raises(ValueError, match=r"batch_size must be >= 2 \(a batch needs 2 queries.*, got 1"):
        MaxSimTrainConfig(batch_size=1)
    assert MaxSimTrainConfig(batch_size=2).batch_size == 2


@pytest.mark.parametrize(("name", "value"), [("epochs", 2.5), ("batch_size", 4.7), ("hard_negatives", True),
                                             ("seed", True), ("train_rows", "400"), ("val_rows", 1.0)])
def test_non_int_counts_are_refused(name: str, value: object) -> None:
    with pytest.raises(TypeError, match=f"{name} must be an int, got"):
        MaxSimTrainConfig(**{name: value})


@pytest.mark.parametrize(("name", "value"), [("max_steps", 2.5), ("max_steps", True), ("projection_dim", 8.0)])
def test_non_int_optional_counts_are_refused(name: str, value: object) -> None:
    with pytest.raises(ValueError, match=f"{name} must be an int >= 1 or None"):
        MaxSimTrainConfig(**{name: value})


# --- run files: train_config.json / history.json replaced atomically --------------------------------

def test_a_failing_write_never_leaves_a_truncated_run_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """train_config.json and history.json were written in place: a write failing part-way (a full
    disk) left the earlier run's file truncated. Now each is replaced atomically."""
    groups, queries, texts = synthetic()
    out = tmp_path / "run"
    train_maxsim(MaxSimTrainConfig(output_dir=str(out), **BASE), groups, queries.texts, texts.texts,
                 reranker=make_reranker())
    earlier = {name: (out / name).read_bytes() for name in ("train_config.json", "history.json")}

    def full_disk(self: Path, *args: object, **kwargs: object) -> int:
        with open(self, "w", encoding="utf-8") as fh:  # opened (truncated), then nothing fits
            fh.write("{")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Path, "write_text", full_disk)
    with pytest.raises(OSError, match="No space left"):
        train_maxsim(MaxSimTrainConfig(output_dir=str(out), seed=4, save_checkpoints=False, **BASE), groups,
                     queries.texts, texts.texts, reranker=make_reranker())
    for name in ("train_config.json", "history.json"):
        json.loads((out / name).read_text(encoding="utf-8"))  # whole: the earlier run's or this one's
    assert (out / "history.json").read_bytes() == earlier["history.json"]  # the run failed before its own


def test_history_json_is_never_written_in_place(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The test above fails the run before history.json is written; here every write but
    history.json's succeeds, and an in-place write of history.json would truncate it and fail."""
    groups, queries, texts = synthetic()
    out = tmp_path / "run"
    original = Path.write_text

    def full_disk_for_history(self: Path, *args: object, **kwargs: object) -> int:
        if self.name == "history.json":
            with open(self, "w", encoding="utf-8") as fh:
                fh.write("{")
            raise OSError(28, "No space left on device")
        return original(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Path, "write_text", full_disk_for_history)
    result = train_maxsim(MaxSimTrainConfig(output_dir=str(out), **BASE), groups, queries.texts, texts.texts,
                          reranker=make_reranker())
    assert json.loads((out / "history.json").read_text(encoding="utf-8")) == result["history"]


def test_cli_resume_with_the_default_data_file_edited_in_place_is_refused(
    tmp_path: Path, data_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without --data the option is None and no file was hashed: a resume after the default data
    file changed trained on the new rows. The split's digest is checked now, --eval's early check
    included."""
    from rag_relax_plugins.cli import main

    _hashing_reranker_class(monkeypatch)
    rows = (data_dir / "hotpotqa" / "distractor_500.jsonl").read_text(encoding="utf-8").splitlines()[:30]
    data = tmp_path / "data" / "hotpotqa" / "distractor_500.jsonl"
    data.parent.mkdir(parents=True)
    data.write_text("\n".join(rows) + "\n", encoding="utf-8")
    monkeypatch.setenv("RAG_RELAX_DATA", str(tmp_path / "data"))
    out = tmp_path / "o"
    common = ["-o", str(out), "--train-rows", "20", "--val-rows", "4", "--epochs", "2", "--batch-size", "4",
              "--cache-dir", str(tmp_path / "cache"), "--no-progress"]
    assert main(["train-maxsim", *common, "--max-steps", "2"]) == 0
    rows[0] = rows[0].replace('"question": "', '"question": "Edited: ', 1)
    assert "Edited: " in rows[0]
    data.write_text("\n".join(rows) + "\n", encoding="utf-8")
    resume = ["--resume-from", str(out / "checkpoint_epoch_1")]

    def no_evaluation(*args: object, **kwargs: object) -> None:
        raise AssertionError("--eval evaluated before the resume was checked")

    # --eval checks the resume before its test-split evaluation
    monkeypatch.setattr("rag_relax_plugins.training.maxsim_train.evaluate_groups", no_evaluation)
    for extra in ([], ["--eval"]):
        capsys.readouterr()
        assert main(["train-maxsim", *common, *resume, *extra]) == 2
        assert "different options: training_data_sha256" in capsys.readouterr().err


def test_a_resume_takes_a_best_model_saved_before_kinds_were_recorded(tmp_path: Path) -> None:
    """Today's earlier check refused, on resume, a best_model/ whose marker records no kind (saves
    before 2026-12-03), calling the resume "a new run"; the old package resumed it (review)."""
    import json as json_

    groups, queries, texts = synthetic()
    out = tmp_path / "run"
    train_maxsim(MaxSimTrainConfig(output_dir=str(out), **{**BASE, "epochs": 2, "max_steps": 5}), groups,
                 queries.texts, texts.texts, reranker=make_reranker())
    marker = out / "best_model" / ".rag_relax_save.json"
    meta = json_.loads(marker.read_text())
    del meta["kind"]
    marker.write_text(json_.dumps(meta))
    ck = out / "checkpoint_epoch_1"
    res = train_maxsim(MaxSimTrainConfig(output_dir=str(out), resume_from=str(ck), **{**BASE, "epochs": 2}), groups,
                       queries.texts, texts.texts, reranker=make_reranker())
    assert res["steps"] == 8
    (out / "best_model" / ".rag_relax_save.json").unlink()  # a save from before the markers (2026-12-02)
    with pytest.raises(ValueError, match=r"refusing to replace the existing folder .*best_model"):  # at once,
        train_maxsim(MaxSimTrainConfig(output_dir=str(out), resume_from=str(ck), **{**BASE, "epochs": 2}), groups,
                     queries.texts, texts.texts, reranker=make_reranker())  # not at its best_model save


def test_validation_groups_without_gold_do_not_select_the_first_epoch(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Validation groups with no gold text gave an MRR of 0 at every epoch, so best_model was
    always epoch 1, silently (review); now a warning, and the training loss selects."""
    from rag_relax_plugins.training.maxsim_data import QueryGroup

    groups, queries, texts = synthetic()
    val = [QueryGroup(g.query, g.candidates, (), g.type) for g in groups[:2]]
    with caplog.at_level("WARNING"):
        res = train_maxsim(MaxSimTrainConfig(output_dir=str(tmp_path / "run"), **{**BASE, "epochs": 2}), groups,
                           queries.texts, texts.texts, val_groups=val, reranker=make_reranker())
    assert "none of the 2 validation groups has a gold text" in caplog.text
    assert res["best_val_mrr"] < 0  # the negated training loss, as without validation groups


@pytest.mark.usefixtures("diverging_adamw")
def test_a_diverged_run_says_so(tmp_path: Path) -> None:
    """At a huge learning rate the weights became NaN and the next step failed with "q or d
    contains NaN or inf values", which did not say the run diverged (review). An update that
    leaves a NaN weight stands in for the divergence here."""
    groups, queries, texts = synthetic()
    with pytest.raises(ValueError, match=r"training diverged at step 1 \(a non-finite weight after the update\): "
                                         "lower the learning rate"):
        train_maxsim(MaxSimTrainConfig(output_dir=str(tmp_path / "run"), **BASE),
                     groups, queries.texts, texts.texts, reranker=make_reranker())
