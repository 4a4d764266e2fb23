"""Review fixes of the Gaussian data files and training loop: JSONL line breaks, blank CSV rows,
one-pair validation files, the eval.json leak at test fraction 0, transformers' progress bars
under ``show_progress=False``, and diverging runs."""

from __future__ import annotations

import json
import logging

import pytest

from rag_relax_plugins.training.gaussian_data import load_pairs, prepare_data, read_documents
from rag_relax_plugins.training.gaussian_train import TrainConfig, train

pytestmark = pytest.mark.usefixtures("one_torch_thread")

WORDS = ("cats", "dogs", "stocks", "rain", "python", "paris", "bees", "lava", "chess", "coffee", "tea", "golf")
ROWS = [{"query": f"about {w}", "positive": f"Topic {w} is discussed here with {w} facts."} for w in WORDS]


def _jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _cfg(tmp_path, **kw) -> TrainConfig:
    base = dict(train_file=str(_jsonl(tmp_path / "train.jsonl", ROWS[:8])), output_dir=str(tmp_path / "run"),
                backbone="hashing:32", output_dim=8, batch_size=4, head_learning_rate=1e-2, num_slices=8,
                show_progress=False, device="cpu", save_checkpoints=False)
    base.update(kw)
    return TrainConfig(**base)


# A: JSONL lines are split at "\n" only
@pytest.mark.parametrize("sep", ["\u2028", "\u2029", "\u0085"])  # json.dumps escapes \x0b, \x0c ...
def test_jsonl_keeps_unicode_line_separators_inside_strings(tmp_path, sep) -> None:
    docs = [f"Doc {i} talks about topic {i}. It has a second sentence {i}." for i in range(10)]
    docs[3] = f"Cafe menu{sep}lists coffee. Second line{sep}of the menu. Prices vary."
    (tmp_path / "docs.txt").write_text("\n\n".join(docs), encoding="utf-8")
    paths = prepare_data(tmp_path / "docs.txt", tmp_path / "data", seed=0)
    read_back = [p for name in ("train", "val", "test") for p in load_pairs(paths[name])]
    assert len(read_back) == 10
    assert any(sep in p.positive or sep in p.query for p in read_back)
    # documents as JSONL, written with ensure_ascii=False like prepare-data writes
    (tmp_path / "docs.jsonl").write_text("".join(json.dumps({"text": d}, ensure_ascii=False) + "\n" for d in docs),
                                         encoding="utf-8")
    assert read_documents(tmp_path / "docs.jsonl")[3] == docs[3]


def test_jsonl_line_numbers_with_crlf(tmp_path) -> None:
    path = tmp_path / "p.jsonl"
    path.write_bytes(b'{"query": "q", "positive": "d"}\r\n\r\n{"query": 3}\r\n')
    with pytest.raises(ValueError, match=r"p.jsonl:3: 'query'"):
        load_pairs(path)


# E: a CSV row of empty fields is malformed, like the same JSONL row; blank lines are skipped
@pytest.mark.parametrize("row", [" , ", ",", '"",""'])
def test_csv_row_of_empty_fields_is_an_error(tmp_path, row) -> None:
    path = tmp_path / "p.csv"
    path.write_text(f"query,positive\nq1,p1\n{row}\nq2,p2\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"p.csv:3: 'query' must be a non-empty string, got a missing or blank field$"):
        load_pairs(path)


def test_csv_blank_lines_still_skipped(tmp_path) -> None:
    path = tmp_path / "p.csv"
    path.write_text("query,positive\nq1,p1\n\n   \nq2,p2\n\n", encoding="utf-8")
    assert [p.query for p in load_pairs(path)] == ["q1", "q2"]


# B: a validation file needs 2 pairs, like the training file
def test_one_pair_validation_file_is_not_used_to_select(tmp_path, caplog) -> None:
    """One pair's InfoNCE is 0 (no in-batch negative): val_loss was [0.0, 0.0, 0.0] and best_model/
    always epoch 1. Now best_model/ follows the training loss, with a warning."""
    cfg = _cfg(tmp_path, val_file=str(_jsonl(tmp_path / "val.jsonl", ROWS[8:9])), isotropy="none")
    with caplog.at_level(logging.WARNING):
        hist = train(cfg)["history"]
    assert "holds 1 pair" in caplog.text
    assert hist["val_loss"] == [] and hist["selection_loss"] == hist["train_loss"]


def test_prepare_data_warns_of_a_one_pair_validation_split(tmp_path, caplog) -> None:
    docs = [f"Doc {i} talks about topic {i}. It has a second sentence {i}." for i in range(10)]
    (tmp_path / "docs.txt").write_text("\n\n".join(docs), encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="rag_relax_plugins.training.gaussian_data"):
        paths = prepare_data(tmp_path / "docs.txt", tmp_path / "data")
    assert len(load_pairs(paths["val"])) == 1
    assert any("1 validation pair" in r.getMessage() for r in caplog.records)


def test_two_pair_validation_file_accepted(tmp_path) -> None:
    cfg = _cfg(tmp_path, val_file=str(_jsonl(tmp_path / "val.jsonl", ROWS[8:10])), epochs=1)
    assert len(train(cfg)["history"]["val_loss"]) == 1


# C: test fraction 0 builds eval.json from the validation queries: warned
def test_test_fraction_zero_warns_of_the_validation_leak(tmp_path, caplog) -> None:
    docs = [f"Doc {i} talks about topic {i}. It has a second sentence {i}." for i in range(20)]
    (tmp_path / "docs.txt").write_text("\n\n".join(docs), encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="rag_relax_plugins.training.gaussian_data"):
        paths = prepare_data(tmp_path / "docs.txt", tmp_path / "data", fractions=(0.9, 0.1, 0.0))
    val_queries = {p.query for p in load_pairs(paths["val"])}
    assert set(json.loads(paths["eval"].read_text())["queries"].values()) == val_queries
    msgs = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("validation queries" in m and "best_model" in m for m in msgs), msgs
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="rag_relax_plugins.training.gaussian_data"):
        prepare_data(tmp_path / "docs.txt", tmp_path / "data2")
    assert not [r for r in caplog.records if "validation queries" in r.getMessage()]


# D: show_progress=False silences transformers' load / save bars
def test_no_progress_silences_transformers_bars(minilm_path, tmp_path, capfd) -> None:
    from transformers.utils import logging as hf_logging

    cfg = _cfg(tmp_path, backbone=minilm_path, freeze_early_layers=5, output_dim=8, batch_size=2,
               train_file=str(_jsonl(tmp_path / "train.jsonl", ROWS[:2])), max_steps=1)
    assert hf_logging.is_progress_bar_enabled()
    train(cfg)
    err = capfd.readouterr().err
    assert (tmp_path / "run" / "final_model").is_dir()
    assert "Writing model shards" not in err and "Loading weights" not in err, err[-2000:]
    assert hf_logging.is_progress_bar_enabled()  # restored


def test_library_progress_restores_state_on_error() -> None:
    pytest.importorskip("transformers")
    from huggingface_hub import utils as hub_utils
    from transformers.utils import logging as hf_logging

    from rag_relax_plugins._progress import library_progress

    assert hf_logging.is_progress_bar_enabled() and not hub_utils.are_progress_bars_disabled()
    with pytest.raises(RuntimeError), library_progress(False):
        assert not hf_logging.is_progress_bar_enabled() and hub_utils.are_progress_bars_disabled()
        raise RuntimeError
    assert hf_logging.is_progress_bar_enabled() and not hub_utils.are_progress_bars_disabled()
    hf_logging.disable_progress_bar()
    try:
        with library_progress(False):
            pass
        assert not hf_logging.is_progress_bar_enabled()  # a caller's "off" stays off
    finally:
        hf_logging.enable_progress_bar()


# F: a diverging run names the divergence, not the losses' input check
@pytest.mark.parametrize("loss", ["infonce", "triplet"])
def test_diverging_run_says_so(tmp_path, loss) -> None:
    cfg = _cfg(tmp_path, train_file=str(_jsonl(tmp_path / "train.jsonl", ROWS)), epochs=3, loss=loss,
               head_learning_rate=1e20, max_grad_norm=1e30)
    with pytest.raises(ValueError, match=r"training diverged (at epoch \d+, step \d+|in the validation pass) "
                                         r"\(non-finite embeddings/loss\); lower the learning rate"):
        train(cfg)


def test_a_csv_field_longer_than_the_csv_modules_default_limit_is_read(tmp_path) -> None:
    """A 200 kB passage was refused ("field larger than field limit (131072)"), the same row as
    JSONL accepted (review); the module's limit is put back afterwards."""
    import csv

    limit = csv.field_size_limit()
    path = tmp_path / "huge.csv"
    path.write_text("query,positive\nq1,p1\nq2," + "x" * 200_000 + "\n", encoding="utf-8")
    pairs = load_pairs(path)
    assert len(pairs) == 2 and len(pairs[1].positive) == 200_000
    assert csv.field_size_limit() == limit


@pytest.mark.parametrize("suffix", [".jsonl", ".json"])
def test_an_unknown_pair_field_is_refused_like_a_csv_column(tmp_path, suffix) -> None:
    # "negatives" (or a misspelt "neg") loaded without its hard negatives (review 2026-12-05)
    rows = [{"query": "a b", "positive": "b c", "negatives": ["x y"]}, {"query": "c d", "positive": "d e"}]
    f = tmp_path / f"p{suffix}"
    f.write_text("\n".join(json.dumps(r) for r in rows) if suffix == ".jsonl" else json.dumps(rows), encoding="utf-8")
    with pytest.raises(ValueError, match=r"p\.json\w?:1.*unknown field\(s\) \['negatives'\]"):
        load_pairs(f)
    f.write_text(json.dumps({"query": "a b", "positive": "b c", "negative": "x y"}) + "\n", encoding="utf-8")
    if suffix == ".jsonl":
        assert load_pairs(f)[0].negative == "x y"


def test_qrels_naming_a_query_missing_from_queries_are_refused(tmp_path) -> None:
    # such queries were left out of the evaluation silently (review 2026-12-05)
    from rag_relax_plugins.training.gaussian_files import load_eval_file

    data = {"corpus": {"d0": "a", "d1": "b"}, "queries": {"q0": "x", "q1": "y"},
            "qrels": {"q0": {"d0": 1}, "Q1": {"d1": 1}}}
    f = tmp_path / "eval.json"
    f.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(ValueError, match=r"qrels name queries missing from 'queries': \['Q1'\]"):
        load_eval_file(f)
    data["qrels"] = {"q0": {"d0": 1}}  # a query without qrels stays allowed (no relevant document)
    f.write_text(json.dumps(data), encoding="utf-8")
    assert load_eval_file(f)["qrels"] == {"q0": {"d0": 1}}


def test_inverse_cloze_sentences_do_not_end_at_initials_or_abbreviations() -> None:
    # on the HotpotQA paragraphs 106 queries were two words or fewer, e.g. "St.", "T.", "Don S."
    # (review 2026-12-05; 14 now, genuine short sentences)
    from rag_relax_plugins.training.gaussian_data import synthesize_pairs

    doc = "George A. Smith lived in St. Louis with Dr. Jones. He was born in the U.S. in 1982. It rained!"
    queries = {synthesize_pairs([doc], seed=s)[0].query for s in range(40)}
    assert queries == {"George A. Smith lived in St. Louis with Dr. Jones.", "He was born in the U.S. in 1982.",
                       "It rained!"}


def test_a_hard_negative_is_never_another_positive_of_the_same_query(tmp_path) -> None:
    # two documents with one synthetic query ("Copyright notice here."): each was drawn as the
    # other's hard negative though eval.json lists both as relevant (review 2026-12-05)
    docs = ["Copyright notice here. Alpha beta gamma delta.", "Copyright notice here. Epsilon zeta eta theta."] + [
        f"Doc number {i} talks about topic {i}. It has a second sentence {i}." for i in range(8)]
    src = tmp_path / "docs.txt"
    src.write_text("\n\n".join(docs), encoding="utf-8")
    for seed in range(8):
        paths = prepare_data(src, tmp_path / "o", negatives=True, seed=seed, overwrite=True)
        for split in ("train", "val", "test"):
            rows = [json.loads(line) for line in paths[split].read_text(encoding="utf-8").splitlines()]
            relevant: dict[str, set[str]] = {}
            for r in rows:
                relevant.setdefault(r["query"], set()).add(r["positive"])
            assert not [r for r in rows if r.get("negative") in relevant[r["query"]]], (seed, split)
    from rag_relax_plugins.training.gaussian_data import Pair, add_negatives

    pairs = [Pair("q", "A"), Pair("q", "B"), Pair("r", "C")]
    assert [p.negative for p in add_negatives(pairs, seed=0)][:2] == ["C", "C"]  # the only allowed one
    assert add_negatives([Pair("q", "A"), Pair("q", "B")], seed=0) == [Pair("q", "A"), Pair("q", "B")]  # none left


def test_a_same_query_conflict_moves_no_other_pairs_negative() -> None:
    # the first fix redrew from the main generator: every later pair's negative moved (diff review)
    import random

    from rag_relax_plugins.training.gaussian_data import Pair, add_negatives, synthesize_pairs

    for seed in range(200):
        r = random.Random(seed)
        rest = [Pair(f"q{i}", f"P{i}") for i in range(r.randint(2, 6))]
        conflict = [Pair("qa", "A"), Pair("qa", "B"), *rest]
        renamed = [Pair("qa", "A"), Pair("qb", "B"), *rest]  # the same candidates, no conflict
        got, plain = add_negatives(conflict, seed=seed), add_negatives(renamed, seed=seed)
        assert [p.negative for p in got[2:]] == [p.negative for p in plain[2:]]
        assert got[0].negative not in ("A", "B") and got[1].negative not in ("A", "B")
    docs = ["Copyright notice here. Alpha beta gamma.", "Copyright notice here. Delta epsilon zeta."] + [
        f"Doc {i} one. Doc {i} two." for i in range(3)]
    for seed in range(50):  # synthesize_pairs(negatives=True) drew them too
        pairs = synthesize_pairs(docs, negatives=True, seed=seed)
        relevant: dict[str, set[str]] = {}
        for p in pairs:
            relevant.setdefault(p.query, set()).add(p.positive)
        assert all(p.negative not in relevant[p.query] for p in pairs), seed
