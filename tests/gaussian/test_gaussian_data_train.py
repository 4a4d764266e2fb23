"""Data-preparation edge cases and training options of the Gaussian pipeline (hashing backbone)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from rag_relax_plugins.cli import main
from rag_relax_plugins.embedders.gaussian import GaussianEmbedder
from rag_relax_plugins.training.gaussian_data import (
    load_eval_file,
    load_pairs,
    prepare_data,
    read_documents,
    synthesize_pairs,
)
from rag_relax_plugins.training.gaussian_train import TrainConfig, make_batches, train

DOCS = [f"Topic {w} is discussed here. It has facts about {w} and more {w}." for w in
        ("cats", "dogs", "stocks", "rain", "python", "paris", "bees", "lava", "chess", "coffee", "tea", "golf")]


@pytest.fixture
def pairs_file(tmp_path):
    path = tmp_path / "pairs.jsonl"
    path.write_text("\n".join(json.dumps(p.to_dict()) for p in synthesize_pairs(DOCS, negatives=True)), encoding="utf-8")
    return path


def _cfg(tmp_path, train_file, **kw) -> TrainConfig:
    base = dict(train_file=str(train_file), output_dir=str(tmp_path / "run"), backbone="hashing:32", output_dim=8,
                batch_size=4, learning_rate=1e-3, head_learning_rate=1e-2, num_slices=8, show_progress=False,
                device="cpu", save_checkpoints=False)
    base.update(kw)
    return TrainConfig(**base)


def test_csv_quoted_multiline_and_line_numbers(tmp_path) -> None:
    path = tmp_path / "p.csv"
    path.write_text('query,positive,negative\n"q1","a doc\nspanning lines",\n\nq2,d2,n2\nq3,,n3\n', encoding="utf-8")
    with pytest.raises(ValueError, match=r"p.csv:6: 'positive' must be a non-empty string"):
        load_pairs(path)
    path.write_text('query,positive,negative\n"q1","a doc\nspanning lines",\nq2,d2,n2\n', encoding="utf-8")
    pairs = load_pairs(path)
    assert pairs[0].positive == "a doc\nspanning lines" and pairs[0].negative is None and pairs[1].negative == "n2"


@pytest.mark.parametrize(
    ("name", "content", "match"),
    [
        ("empty.json", "  \n", "empty"),
        ("empty.jsonl", "", "empty"),
        ("header_only.csv", "query,positive\n", "no pairs"),
        ("items.json", '[\n  {"query": "q", "positive": "d"},\n  {"query": "q"}\n]', r"items.json:3: item 1"),
        ("obj.json", '{"query": "q", "positive": "d"}\n{"query": 3, "positive": "d"}\n', r"obj.json:2"),
        ("bad.json", '[{"query": "q",,}]', r"bad.json:1: invalid JSON"),
        ("notlist.json", '[1]', r"notlist.json:1: item 0"),
        # one pretty-printed object: said so (it was "pretty.json:1: invalid JSON (Expecting property name ...)")
        ("pretty.json", '{\n  "query": "q",\n  "positive": "d"\n}\n', r"pretty.json: one JSON dict over several lines"),
        ("broken.json", '{\n  "query": "q",\n', r"broken.json:1: invalid JSON"),  # not JSON at all: as before
        # one line of JSONL: its own error, not "one JSON dict over several lines"
        ("line.json", '{"query": "", "positive": "p"}\n', r"line.json:1: 'query' must be a non-empty string, got ''"),
        ("p.txt", "q,d", "unsupported extension"),
    ],
)
def test_more_bad_files(tmp_path, name, content, match) -> None:
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ValueError, match=match):
        load_pairs(path)


def test_documents_folder_jsonl_and_eval_file(tmp_path) -> None:
    folder = tmp_path / "docs"
    folder.mkdir()
    for i, d in enumerate(DOCS):
        (folder / f"{i:02d}.txt").write_text(d, encoding="utf-8")
    assert read_documents(folder) == DOCS
    jl = tmp_path / "docs.jsonl"
    jl.write_text("\n".join(json.dumps({"text": d}) for d in DOCS) + '\n{"body": 1}\n', encoding="utf-8")
    with pytest.raises(ValueError, match=r"docs.jsonl:13"):
        read_documents(jl)
    paths = prepare_data(folder, tmp_path / "out", fractions=(0.5, 0.25, 0.25), seed=1)
    assert [len(load_pairs(paths[k])) for k in ("train", "val", "test")] == [6, 3, 3]
    ev = load_eval_file(paths["eval"])
    assert len(ev["queries"]) == 3 and all(len(r) == 1 for r in ev["qrels"].values())
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no documents"):
        prepare_data(tmp_path / "empty", tmp_path / "out2")
    bad = tmp_path / "bad_eval.json"
    bad.write_text(json.dumps({"corpus": {"d": "x"}, "queries": {"q": "y"}, "qrels": {"q": {"zz": 1}}}))
    with pytest.raises(ValueError, match="missing from the corpus"):
        load_eval_file(bad)
    for content, match in (([1, 2], "expected an object"),  # was an AttributeError
                           ({"corpus": {"d": "x"}, "queries": {"q": "y"}, "qrels": {"q": 5}}, r"qrels\['q'\] must map"),
                           ({"corpus": {"d": 3}, "queries": {"q": "y"}, "qrels": {"q": {"d": 1}}}, r"corpus\['d'\] must be a string")):
        bad.write_text(json.dumps(content))
        with pytest.raises(ValueError, match=match):
            load_eval_file(bad)


def test_prepare_data_never_overwrites_its_input_or_existing_files(tmp_path) -> None:
    src = tmp_path / "d" / "train.jsonl"
    src.parent.mkdir()
    lines = [json.dumps({"query": f"q{i}", "positive": f"p{i}"}) for i in range(20)]
    src.write_text("\n".join(lines) + "\n", encoding="utf-8")
    before = src.read_bytes()
    for overwrite in (False, True):  # review 2026-12-02: the input went from 20 lines to 16
        with pytest.raises(ValueError, match="it is an input file"):
            prepare_data(src, src.parent, overwrite=overwrite)
    assert src.read_bytes() == before and sorted(p.name for p in src.parent.iterdir()) == ["train.jsonl"]
    out = tmp_path / "out"
    prepare_data(src, out)
    (out / "eval.json").write_text("mine", encoding="utf-8")
    with pytest.raises(ValueError, match=r"already exist.*--overwrite"):
        prepare_data(src, out, seed=3)
    assert (out / "eval.json").read_text(encoding="utf-8") == "mine"
    prepare_data(src, out, seed=3, overwrite=True)
    assert load_eval_file(out / "eval.json")["queries"]


def test_an_interrupted_overwrite_never_leaves_new_splits_beside_an_old_eval_file(tmp_path, monkeypatch) -> None:
    """The four files were written one by one: an interrupt at eval.json left the new train.jsonl
    beside the old eval.json, whose test queries it could hold (review)."""
    import rag_relax_plugins.training.gaussian_data as gd

    src = tmp_path / "pairs.jsonl"
    src.write_text("".join(json.dumps({"query": f"q{i}", "positive": f"p{i}"}) + "\n" for i in range(30)),
                   encoding="utf-8")
    out = tmp_path / "out"
    prepare_data(src, out, seed=0)
    write = gd.atomic_write_text

    def interrupted_at_eval(path, text, **kw):  # type: ignore[no-untyped-def]
        if Path(path).name == "eval.json":
            raise KeyboardInterrupt
        return write(path, text, **kw)

    monkeypatch.setattr(gd, "atomic_write_text", interrupted_at_eval)
    with pytest.raises(KeyboardInterrupt):
        prepare_data(src, out, seed=1, overwrite=True)
    assert sorted(p.name for p in out.iterdir()) == ["test.jsonl", "train.jsonl", "val.jsonl"]  # no old eval.json


def test_an_overwrite_keeps_each_files_mode(tmp_path) -> None:
    """The earlier files are removed before the new ones are written: a chmod 600 came back 644,
    though a rewrite keeps the mode the file has (review)."""
    src = tmp_path / "pairs.jsonl"
    src.write_text("".join(json.dumps({"query": f"q{i}", "positive": f"p{i}"}) + "\n" for i in range(30)),
                   encoding="utf-8")
    out = tmp_path / "out"
    paths = prepare_data(src, out, seed=0)
    for path in paths.values():
        path.chmod(0o600)
    prepare_data(src, out, seed=1, overwrite=True)
    assert {p.name: p.stat().st_mode & 0o777 for p in paths.values()} == dict.fromkeys(
        ["train.jsonl", "val.jsonl", "test.jsonl", "eval.json"], 0o600)


@pytest.mark.parametrize("fractions", [(float("nan"), 0.0, 0.0), (1.0, 0.0, 0.0), (0.5, float("inf"), 0.0)])
def test_prepare_data_refuses_fractions_that_leave_no_eval_set(tmp_path, fractions) -> None:
    src = tmp_path / "p.jsonl"
    src.write_text("".join(json.dumps({"query": f"q{i}", "positive": f"p{i}"}) + "\n" for i in range(10)), encoding="utf-8")
    with pytest.raises(ValueError, match="fractions"):
        prepare_data(src, tmp_path / "out", fractions=fractions)
    assert not (tmp_path / "out").exists()  # nothing written


def test_batches_seeded_and_accumulation_steps(tmp_path, pairs_file) -> None:
    pairs = load_pairs(pairs_file)
    assert make_batches(pairs, 5, 1, 0) == make_batches(pairs, 5, 1, 0) != make_batches(pairs, 5, 1, 1)
    assert [len(b) for b in make_batches(pairs, 5, 0, 0)] == [5, 5, 2]
    assert [len(b) for b in make_batches(pairs[:11], 5, 0, 0)] == [5, 5]  # a lone last pair is dropped
    out = train(_cfg(tmp_path, pairs_file, epochs=2, batch_size=2, grad_accum_steps=4, warmup_steps=1))
    assert out["steps"] == 4  # 6 batches per epoch -> groups of 4 and 2 -> 2 optimiser steps per epoch
    lrs = [float(line.rsplit("lr ", 1)[1]) for line in (tmp_path / "run" / "training.log").read_text().splitlines() if " lr " in line]
    # stepped per optimiser step, each line with the LR its step used (it showed the next step's: 1, 2/3, 1/3, 0)
    assert lrs == pytest.approx([1e-2 * x for x in (1 / 2, 1.0, 2 / 3, 1 / 3)], rel=1e-3)


def test_predictor_mixed_precision_and_resume_with_predictor(tmp_path, pairs_file) -> None:
    cfg = _cfg(tmp_path, pairs_file, epochs=2, predictor=True, mixed_precision="bf16", save_checkpoints=True, seed=5)
    full = train(cfg)
    assert (tmp_path / "run" / "checkpoint_epoch_1" / "predictor.safetensors").is_file()
    resumed = train(_cfg(tmp_path / "r", pairs_file, epochs=2, predictor=True, mixed_precision="bf16", seed=5,
                         resume_from=str(tmp_path / "run" / "checkpoint_epoch_1")))
    assert resumed["history"]["step_loss"] == pytest.approx(full["history"]["step_loss"], rel=1e-5)
    with pytest.raises(ValueError, match="predictor"):
        train(_cfg(tmp_path / "r2", pairs_file, epochs=2, seed=5, resume_from=str(tmp_path / "run" / "checkpoint_epoch_1")))


def test_option_conflicts_and_errors(tmp_path, pairs_file) -> None:
    model = GaussianEmbedder(_cfg(tmp_path, pairs_file).model_config(), device="cpu")
    model.save(tmp_path / "init")
    with pytest.raises(ValueError, match="output_dim=16 differs"):
        train(_cfg(tmp_path, pairs_file, output_dim=16, init_model=str(tmp_path / "init")))
    with pytest.raises(ValueError, match="not both"):
        TrainConfig(train_file="x", init_model="a", resume_from="b")
    with pytest.raises(ValueError, match="not both"):
        train(_cfg(tmp_path, pairs_file, init_model=str(tmp_path / "init")), model=model)
    with pytest.raises(ValueError, match="batch_size"):
        TrainConfig(train_file="x", batch_size=1)
    with pytest.raises(ValueError, match="learning_rate"):
        TrainConfig(train_file="x", learning_rate=float("nan"))
    with pytest.raises(ValueError, match="isotropy"):
        TrainConfig(train_file="x", isotropy="whitening")
    with pytest.raises(FileNotFoundError, match="pairs file"):
        train(_cfg(tmp_path, tmp_path / "missing.jsonl"))
    ft = train(_cfg(tmp_path / "ft", pairs_file, init_model=str(tmp_path / "init"), geometry="euclidean"))
    assert ft["steps"] == 3
    rc = main(["train", "--train-file", str(pairs_file), "--output", str(tmp_path / "x"), "--backbone", "hashing:32",
               "--resume-from", str(tmp_path / "no_checkpoint"), "--no-progress", "--device", "cpu"])
    assert rc == 2
    rc = main(["train", "--train-file", str(pairs_file), "--output", str(tmp_path / "x"), "--output-dim", "0"])
    assert rc == 2


def test_refused_training_leaves_no_new_folder(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A missing pairs file failed after the output folder and an empty training.log were made."""
    with pytest.raises(FileNotFoundError, match="pairs file"):
        train(_cfg(tmp_path / "new", tmp_path / "missing.jsonl"))
    assert not (tmp_path / "new").exists()


@pytest.mark.parametrize(("val_pairs", "said"), [(1, "training loss (no usable validation loss)"), (3, "validation loss"),
                                                 (0, "training loss (no --val-file)")])
def test_the_closing_line_names_what_best_model_was_chosen_by(tmp_path, caplog, val_pairs, said) -> None:  # type: ignore[no-untyped-def]
    """With one validation pair (no in-batch negative) the library chose by the training loss and
    said so, and the command's last line still said "best_model by validation loss"."""
    import json
    import logging

    train_file, val_file = tmp_path / "train.jsonl", tmp_path / "val.jsonl"
    train_file.write_text("".join(json.dumps({"query": f"topic {i}", "positive": f"about topic {i}"}) + "\n"
                                  for i in range(8)))
    val_file.write_text("".join(json.dumps({"query": f"theme {i}", "positive": f"about theme {i}"}) + "\n"
                                for i in range(val_pairs)))
    with caplog.at_level(logging.INFO, logger="rag_relax_plugins._cli.train"):
        assert main(["train", "--train-file", str(train_file), *(["--val-file", str(val_file)] if val_pairs else []),
                     "--output", str(tmp_path / "run"), "--backbone", "hashing:32", "--output-dim", "8",
                     "--max-steps", "1", "--batch-size", "4", "--no-checkpoints", "--no-progress", "--device", "cpu"]) == 0
    assert f"best_model by {said} " in caplog.text


def test_the_closing_line_of_a_resumed_run_without_best_epoch_follows_the_options() -> None:
    """A checkpoint of an older format records no best epoch: the line said "training loss" for
    a run selected by its validation loss."""
    from rag_relax_plugins._cli.train import _selected_by

    result = {"history": {"val_loss": [0.9, 0.8]}, "best_epoch": None, "best_val_loss": 0.8}
    assert _selected_by(result, val_file=True) == "validation loss"
    assert _selected_by(result, val_file=False) == "training loss (no --val-file)"
    result["best_epoch"] = 2
    assert _selected_by(result, val_file=True) == "validation loss"


def test_a_cpu_run_leaves_the_cuda_rngs_and_the_callers_generator_alone(tmp_path, pairs_file, monkeypatch) -> None:
    """The run seeded with torch.manual_seed: every CUDA device reseeded (fork_rng does not
    restore them) and the caller's CPU generator left at the run's state. Now only the CPU
    generator and the run's own device are seeded, inside a fork."""
    import torch

    torch.manual_seed(123)
    calls: list[object] = []
    monkeypatch.setattr(torch.cuda, "manual_seed_all", lambda seed: calls.append(("all", seed)))
    monkeypatch.setattr(torch.cuda, "manual_seed", lambda seed: calls.append(("one", seed)))
    before = torch.get_rng_state()
    first = train(_cfg(tmp_path / "a", pairs_file, seed=5))
    assert calls == [] and torch.equal(torch.get_rng_state(), before)
    torch.rand(7)  # another caller state: the run is still seeded by cfg.seed alone
    assert train(_cfg(tmp_path / "b", pairs_file, seed=5))["history"]["step_loss"] == first["history"]["step_loss"]


@pytest.mark.gpu
@pytest.mark.skipif(not __import__("torch").cuda.is_available(), reason="needs CUDA")
def test_a_cuda_run_leaves_the_callers_cuda_and_cpu_generators_as_they_were(tmp_path, pairs_file) -> None:
    import torch

    torch.manual_seed(123)
    before = (torch.get_rng_state(), torch.cuda.get_rng_state())
    out = train(_cfg(tmp_path, pairs_file, device="cuda", seed=5))
    assert out["steps"] > 0 and all(math.isfinite(x) for x in out["history"]["step_loss"])
    assert torch.equal(torch.get_rng_state(), before[0]) and torch.equal(torch.cuda.get_rng_state(), before[1])


def test_an_overwrite_onto_a_target_that_is_not_a_file_removes_nothing(tmp_path) -> None:
    """The four earlier files were removed before the write found eval.json to be a folder: the
    old splits were lost and the run failed (review)."""
    src = tmp_path / "pairs.jsonl"
    src.write_text("".join(json.dumps({"query": f"q{i}", "positive": f"p{i}"}) + "\n" for i in range(30)),
                   encoding="utf-8")
    out = tmp_path / "out"
    prepare_data(src, out, seed=0)
    (out / "eval.json").unlink()
    (out / "eval.json").mkdir()
    with pytest.raises(ValueError, match=r"eval\.json: not a regular file"):
        prepare_data(src, out, seed=1, overwrite=True)
    assert sorted(p.name for p in out.iterdir()) == ["eval.json", "test.jsonl", "train.jsonl", "val.jsonl"]
