"""Splits by query: no query in two splits, one qid per query with all its positives; duplicates."""

from __future__ import annotations

import json

import pytest

from rag_relax_plugins.cli import main
from rag_relax_plugins.training.gaussian_data import (
    Pair,
    build_eval,
    load_pairs,
    prepare_data,
    read_documents,
    split_pairs,
)


def _two_positive_pairs(n: int = 20) -> list[Pair]:
    return [Pair(f"question {i}?", f"doc {i} {k}") for i in range(n) for k in "ab"]


def test_split_keeps_every_query_in_one_split() -> None:
    pairs = _two_positive_pairs()
    train, val, test = split_pairs(pairs, (0.5, 0.1, 0.4), seed=0)
    assert sorted(train + val + test, key=lambda p: p.positive) == sorted(pairs, key=lambda p: p.positive)
    splits = [{p.query for p in part} for part in (train, val, test)]
    assert not (splits[0] & splits[1]) and not (splits[0] & splits[2]) and not (splits[1] & splits[2])
    assert [len(s) for s in splits] == [10, 2, 8]  # fractions count queries, not rows
    assert all(len(part) == 2 * len(s) for part, s in zip((train, val, test), splits, strict=True))


def test_unique_queries_split_as_before() -> None:
    pairs = [Pair(f"q{i}", f"d{i}") for i in range(30)]
    train, val, test = split_pairs(pairs, (0.8, 0.1, 0.1), seed=3)
    import random

    order = list(range(30))
    random.Random(3).shuffle(order)  # the row-level split of earlier versions
    assert [p.query for p in train + val + test] == [f"q{i}" for i in order]
    assert (len(train), len(val), len(test)) == (24, 3, 3)


def test_build_eval_gives_one_qid_per_query_with_all_positives() -> None:
    test = [Pair("question 9?", "doc 9 a"), Pair("question 3?", "doc 3 a"), Pair("question 9?", "doc 9 b")]
    ev = build_eval(test, test)
    assert sorted(ev["queries"].values()) == ["question 3?", "question 9?"]
    by_text = {ev["queries"][q]: {ev["corpus"][d] for d in rel} for q, rel in ev["qrels"].items()}
    assert by_text == {"question 9?": {"doc 9 a", "doc 9 b"}, "question 3?": {"doc 3 a"}}


def test_prepare_data_pairs_with_several_positives(tmp_path) -> None:
    src = tmp_path / "pairs.jsonl"
    src.write_text("\n".join(json.dumps(p.to_dict()) for p in _two_positive_pairs()), encoding="utf-8")
    paths = prepare_data(src, tmp_path / "out", fractions=(0.5, 0.1, 0.4))
    train_q = {p.query for p in load_pairs(paths["train"])}
    ev = json.loads(paths["eval"].read_text(encoding="utf-8"))
    assert len(ev["queries"]) == len(set(ev["queries"].values())) == 8
    assert not set(ev["queries"].values()) & train_q
    assert all(len(rel) == 2 for rel in ev["qrels"].values())


def test_duplicate_documents_are_dropped_before_the_split(tmp_path, caplog) -> None:
    docs = [f"Topic {w} is discussed here. It has facts about {w}. More on {w} follows." for w in
            ("cats", "dogs", "rain", "bees", "lava", "chess", "tea", "golf", "moss", "salt")]
    src = tmp_path / "docs.txt"
    src.write_text("\n\n".join(docs + docs), encoding="utf-8")  # every document twice
    with caplog.at_level("WARNING"):
        assert read_documents(src) == docs
    assert "10 repeated documents kept once (10 distinct)" in caplog.text  # said, not silent
    paths = prepare_data(src, tmp_path / "out", fractions=(0.5, 0.2, 0.3))
    parts = [load_pairs(paths[k]) for k in ("train", "val", "test")]
    assert sum(len(p) for p in parts) == len(docs)
    train_pos = {p.positive for p in parts[0]}
    assert not train_pos & {p.positive for p in parts[1] + parts[2]}


def test_too_few_queries_to_split() -> None:
    with pytest.raises(ValueError, match="at least 3 distinct queries"):
        split_pairs([Pair("q", "a"), Pair("q", "b"), Pair("r", "c"), Pair("r", "d")])


def test_prepare_data_refuses_ignored_or_misread_options(tmp_path) -> None:
    src = tmp_path / "pairs.jsonl"
    src.write_text("\n".join(json.dumps(p.to_dict()) for p in _two_positive_pairs(5)), encoding="utf-8")
    with pytest.raises(ValueError, match=r"negatives.*documents"):
        prepare_data(src, tmp_path / "o1", negatives=True)
    assert not (tmp_path / "o1").exists()
    items = tmp_path / "docs.json"
    items.write_text(json.dumps([{"text": f"Document {i}. It is here."} for i in range(10)]), encoding="utf-8")
    with pytest.raises(ValueError, match=r"docs.json: .*\.txt.*\.jsonl"):
        read_documents(items)
    assert main(["prepare-data", str(items), "--kind", "documents", "--output", str(tmp_path / "o2")]) == 2
    assert main(["prepare-data", str(src), "--negatives", "--output", str(tmp_path / "o3")]) == 2


@pytest.mark.parametrize("name", ["notes.md", "corpus.text", "README", "docs.TXT"])
def test_prose_documents_with_any_other_name_are_read(tmp_path, name) -> None:
    src = tmp_path / name
    src.write_text("First document. It has two sentences.\n\nSecond document. Also two.\n", encoding="utf-8")
    assert read_documents(src) == ["First document. It has two sentences.", "Second document. Also two."]


@pytest.mark.parametrize("name", ["d.json", "d.csv", "d.tsv", "d.jsonl.gz", "d.txt.gz", "d.parquet", "d.CSV"])
def test_structured_files_are_not_read_as_prose(tmp_path, name) -> None:
    src = tmp_path / name
    src.write_text("a,b\n\nc,d\n", encoding="utf-8")
    with pytest.raises(ValueError, match=rf"{name}: .*not prose"):
        read_documents(src)
