"""Data-set loaders on the shared data (counts from data/README.md) and on small bad files."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from rag_relax_plugins.datasets import (
    DATA_ENV_VAR,
    hotpot_open_corpus,
    leave_last_out,
    load_hotpotqa_distractor,
    load_hotpotqa_evidence,
    load_movielens,
    load_snli,
)


@pytest.fixture(scope="module")
def movielens(data_dir: Path):  # type: ignore[no-untyped-def]
    return load_movielens(data_dir / "movielens-100k")


def test_hotpot_distractor(data_dir: Path) -> None:
    rows = load_hotpotqa_distractor(data_dir / "hotpotqa" / "distractor_500.jsonl")
    assert len(rows) == 500
    assert sum(len(r.paragraphs) == 10 for r in rows) == 495
    ex = rows[0]
    assert ex.gold_titles == ("Kansas Song", "University of Kansas")
    assert ex.paragraph_text(ex.gold_indices[0]).startswith("University of Kansas: ")
    assert "  " not in ex.paragraph_text(0)
    assert all(ex.titles[i] in ex.gold_titles for i in ex.gold_indices)
    assert ex.missing_gold_titles == ("Kansas Song",)
    assert {r.type for r in rows} <= {"bridge", "comparison"}
    with pytest.raises(IndexError):
        ex.paragraph_text(10)


def test_hotpot_default_path_and_limit(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(DATA_ENV_VAR, str(data_dir))
    assert len(load_hotpotqa_distractor(limit=7)) == 7
    assert len(load_hotpotqa_distractor(data_dir, limit=3)) == 3  # a folder is accepted
    ev = load_hotpotqa_evidence()
    assert len(ev) == 500
    assert all(isinstance(s, str) for s in ev[0].evidence) and ev[0].evidence


def test_hotpot_open_corpus(data_dir: Path) -> None:
    rows = load_hotpotqa_distractor(data_dir / "hotpotqa" / "distractor_500.jsonl")
    corpus, queries, qrels = hotpot_open_corpus(rows)
    assert len(queries) == 500
    assert 4800 <= len(corpus) <= 5000
    assert set(qrels) == set(queries)
    for qid, judged in qrels.items():
        assert all(doc in corpus and grade == 1 for doc, grade in judged.items()), qid
    ex = rows[0]
    assert corpus["University of Kansas"] == ex.paragraph_text(
        ex.titles.index("University of Kansas")
    )
    with pytest.raises(ValueError, match="twice"):
        hotpot_open_corpus([ex, ex])


def test_snli_counts_and_labels(data_dir: Path) -> None:
    test = load_snli("test", path=data_dir)
    assert len(test) == 10_000
    assert {p.label for p in test} == {"entailment", "neutral", "contradiction", "-"}
    kept = load_snli("test", path=data_dir, labels=("entailment", "neutral", "contradiction"))
    assert len(kept) == 10_000 - sum(p.label == "-" for p in test)
    assert len(load_snli("train", path=data_dir)) == 100_000
    assert len(load_snli("train", path=data_dir, limit=5, labels=["neutral"])) == 5
    assert test[0].premise and test[0].hypothesis


def test_snli_bad_arguments(data_dir: Path) -> None:
    with pytest.raises(ValueError, match="split"):
        load_snli("dev", path=data_dir)
    with pytest.raises(ValueError, match="labels"):
        load_snli("test", path=data_dir, labels=["entails"])


def test_movielens_counts(movielens) -> None:  # type: ignore[no-untyped-def]
    assert len(movielens.interactions) == 100_000
    assert movielens.num_users == 943
    assert movielens.num_items == 1682
    times = [r.timestamp for r in movielens.interactions]
    assert times == sorted(times)
    assert movielens.items[1].title == "Toy Story"
    cols = movielens.as_tensors()
    assert cols["user"].shape == (100_000,)
    assert int(cols["item"].max()) == 1682


def test_leave_last_out(movielens) -> None:  # type: ignore[no-untyped-def]
    train, valid, test = leave_last_out(movielens)
    assert len(train) + len(valid) + len(test) == 100_000
    assert len(test) == len(valid) == 943  # every user has >= 20 ratings
    last = {}
    for r in movielens.interactions:
        last[r.user] = r
    assert {(r.user, r.item) for r in test} == {(r.user, r.item) for r in last.values()}
    train_time: dict[int, int] = {}
    for r in train:
        train_time[r.user] = max(train_time.get(r.user, 0), r.timestamp)
    assert all(r.timestamp >= train_time[r.user] for r in valid + test)
    train2, valid2, test2 = leave_last_out(movielens, valid=False)
    assert valid2 == [] and len(test2) == 943 and len(train2) == 100_000 - 943


def test_missing_file_names_path_and_env_var(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(DATA_ENV_VAR, str(tmp_path))
    for call in (load_hotpotqa_distractor, load_hotpotqa_evidence, load_snli, load_movielens):
        with pytest.raises(FileNotFoundError) as info:
            call()
        assert str(tmp_path) in str(info.value)
        assert DATA_ENV_VAR in str(info.value)


def test_malformed_json_line_gives_line_number(tmp_path: Path) -> None:
    good = {
        "question": "q",
        "answer": "a",
        "type": "bridge",
        "level": "easy",
        "context": [["T", ["s."]]],
        "supporting_facts": [["T", 0]],
    }
    path = tmp_path / "d.jsonl"
    path.write_text(json.dumps(good) + "\n\n" + "{not json\n", encoding="utf-8")
    with pytest.raises(ValueError, match="line 3"):
        load_hotpotqa_distractor(path)
    assert len(load_hotpotqa_distractor(path, limit=1)) == 1
    path.write_text(
        json.dumps(good) + "\n" + json.dumps({"question": "q"}) + "\n", encoding="utf-8"
    )
    with pytest.raises(ValueError, match=r"line 2.*missing"):
        load_hotpotqa_distractor(path)


def test_malformed_snli_and_movielens(tmp_path: Path) -> None:
    snli = tmp_path / "s.jsonl.gz"
    with gzip.open(snli, "wt", encoding="utf-8") as fh:
        fh.write(json.dumps({"sentence1": "a", "sentence2": "b", "gold_label": "neutral"}) + "\n")
        fh.write(json.dumps({"sentence1": "a", "sentence2": "b", "gold_label": "maybe"}) + "\n")
    with pytest.raises(ValueError, match="line 2"):
        load_snli("test", path=snli)
    ml = tmp_path / "ml"
    ml.mkdir()
    (ml / "ml-100k.inter").write_text(
        "user_id:token\titem_id:token\trating:float\ttimestamp:float\n1\t2\t3\t100\n1\tx\t3\t101\n"
    )
    (ml / "ml-100k.user").write_text(
        "user_id:token\tage:token\tgender:token\toccupation:token\tzip_code:token\n"
    )
    (ml / "ml-100k.item").write_text(
        "item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq\n"
    )
    with pytest.raises(ValueError, match="line 3"):
        load_movielens(ml)
    (ml / "ml-100k.inter").write_text(  # id 0 is the padding id of the sequence models
        "user_id:token\titem_id:token\trating:float\ttimestamp:float\n1\t2\t3\t100\n1\t0\t3\t101\n"
    )
    with pytest.raises(ValueError, match=r"line 3.*ids must be >= 1"):
        load_movielens(ml)


def test_leave_last_out_orders_by_time_whatever_the_input_order() -> None:
    from rag_relax_plugins.datasets.movielens import MovieLens, Rating

    rows = (Rating(1, 1, 4.0, 100), Rating(1, 2, 4.0, 300), Rating(1, 3, 4.0, 200))  # not by time
    train, _valid, test = leave_last_out(MovieLens(interactions=rows, users={}, items={}), valid=False)
    assert [r.item for r in test] == [2]  # the latest rating, not the last row
    assert [r.item for r in train] == [1, 3]


@pytest.mark.parametrize(("table", "row", "what"), [
    ("ml-100k.user", "0\t20\tM\tx\t1", "user_id 0"),
    ("ml-100k.item", "-3\tX\t1995\tA", "item_id -3"),
])
def test_movielens_table_ids_below_one_are_refused(tmp_path: Path, table: str, row: str, what: str) -> None:
    """The docstring refuses ids below 1, but only the interactions were checked: a user or item
    row with id 0 loaded and was counted in num_users / num_items (review)."""
    ml = tmp_path / "ml"
    ml.mkdir()
    (ml / "ml-100k.inter").write_text("user_id:token\titem_id:token\trating:float\ttimestamp:float\n1\t1\t3\t100\n")
    (ml / "ml-100k.user").write_text("user_id:token\tage:token\tgender:token\toccupation:token\tzip_code:token\n"
                                     "1\t20\tF\tx\t1\n")
    (ml / "ml-100k.item").write_text("item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq\n"
                                     "1\tY\t1995\tA\n")
    with (ml / table).open("a", encoding="utf-8") as fh:
        fh.write(row + "\n")
    with pytest.raises(ValueError, match=rf"{table}: line 3 has {what}; ids must be >= 1"):
        load_movielens(ml)
