"""Documented behaviour of the data-set loaders (JSONL, SNLI, HotpotQA, MovieLens) that hand
mutants changed unnoticed (review 2026-12-05). Each test fails on one mutant and passes on the code."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rag_relax_plugins.datasets._io import iter_jsonl
from rag_relax_plugins.datasets.hotpotqa import HotpotExample, hotpot_open_corpus
from rag_relax_plugins.datasets.movielens import (
    Movie,
    MovieLens,
    Rating,
    User,
    leave_last_out,
    load_movielens,
)
from rag_relax_plugins.datasets.snli import load_snli


@pytest.mark.parametrize("line", ["null", "[1, 2]", '"sentence1 sentence2 gold_label"', "3"])
def test_jsonl_non_object_line_is_refused_with_its_number(tmp_path: Path, line: str) -> None:
    # without the check a string holding the key names passed require_keys' ``in`` test
    f = tmp_path / "s.jsonl"
    good = json.dumps({"sentence1": "a", "sentence2": "b", "gold_label": "neutral"})
    f.write_text(good + "\n" + line + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match="line 2 must be a JSON object"):
        list(iter_jsonl(f))
    with pytest.raises(ValueError, match="line 2 must be a JSON object"):
        load_snli(path=f)


def test_negative_limit_is_refused(tmp_path: Path) -> None:
    f = tmp_path / "s.jsonl"
    f.write_text("".join(json.dumps({"sentence1": f"a{i}", "sentence2": "b", "gold_label": "neutral"}) + "\n"
                         for i in range(3)), encoding="utf-8")
    with pytest.raises(ValueError, match="limit"):
        load_snli(path=f, limit=-1)


def test_snli_premise_is_sentence1_and_hypothesis_sentence2(tmp_path: Path) -> None:
    f = tmp_path / "s.jsonl"
    f.write_text(json.dumps({"sentence1": "A man plays a guitar on stage.", "sentence2": "A man plays.",
                             "gold_label": "entailment", "pairID": "p1"}) + "\n", encoding="utf-8")
    (pair,) = load_snli(path=f)
    assert (pair.premise, pair.hypothesis, pair.label, pair.pair_id) == (
        "A man plays a guitar on stage.", "A man plays.", "entailment", "p1")


def test_snli_labels_as_a_single_string_is_a_type_error(tmp_path: Path) -> None:
    f = tmp_path / "s.jsonl"
    f.write_text(json.dumps({"sentence1": "a", "sentence2": "b", "gold_label": "neutral"}) + "\n", encoding="utf-8")
    with pytest.raises(TypeError, match="not a single str"):
        load_snli(path=f, labels="neutral")


def test_paragraph_text_drops_blank_sentences() -> None:
    # two rows of the shared file hold a blank sentence: it must not leave a double space
    ex = HotpotExample("x", "q?", "a", "bridge", "easy", (("T", (" A.", "  ", " B.")),), ())
    assert ex.paragraph_text(0) == "T: A. B."


def test_open_corpus_first_occurrence_of_a_title_wins() -> None:
    a = HotpotExample("1", "q1", "a", "bridge", "easy", (("T", ("first.",)),), (("T", 0),))
    b = HotpotExample("2", "q2", "a", "bridge", "easy", (("T", ("second.",)),), (("T", 0),))
    corpus, _, _ = hotpot_open_corpus([a, b])
    assert corpus == {"T": "T: first."}


def test_evidence_must_be_a_list_of_strings_every_item(tmp_path: Path) -> None:
    from rag_relax_plugins.datasets.hotpotqa import load_hotpotqa_evidence

    f = tmp_path / "e.jsonl"
    f.write_text(json.dumps({"question": "q?", "answer": "a", "evidence": ["ok.", 3]}) + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match="line 1 field 'evidence' must be a list of strings"):
        load_hotpotqa_evidence(f)


_INTER = "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
_USERS = "user_id:token\tage:token\tgender:token\toccupation:token\tzip_code:token\n1\t24\tM\ttech\t85711\n"
_ITEMS = "item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq\n1\tA\t1995\tX\n2\tB\t1996\tY\n3\tC\t1997\tZ\n"


def _folder(tmp_path: Path, inter: str, inter_header: str = _INTER) -> Path:
    (tmp_path / "ml-100k.inter").write_text(inter_header + inter, encoding="utf-8")
    (tmp_path / "ml-100k.user").write_text(_USERS, encoding="utf-8")
    (tmp_path / "ml-100k.item").write_text(_ITEMS, encoding="utf-8")
    return tmp_path


def _ml(rows: list[tuple[int, int, float, int]]) -> MovieLens:
    users = {u: User(u, 30, "M", "x", "0") for u in {r[0] for r in rows}}
    items = {i: Movie(i, "t", 0, ()) for i in {r[1] for r in rows}}
    return MovieLens(tuple(Rating(*r) for r in rows), users, items)


def test_leave_last_out_breaks_timestamp_ties_by_interaction_order() -> None:
    ml = _ml([(1, 1, 4.0, 10), (1, 2, 4.0, 20), (1, 3, 4.0, 20)])
    train, valid, test = leave_last_out(ml, valid=True)
    assert [r.item for r in test] == [3] and [r.item for r in valid] == [2] and [r.item for r in train] == [1]


def test_load_movielens_keeps_file_order_at_equal_timestamps(tmp_path: Path) -> None:
    # three tied rows, so a reversed tie order cannot pass by chance
    ml = load_movielens(_folder(tmp_path, "1\t2\t4\t50\n1\t3\t4\t50\n1\t1\t4\t50\n1\t1\t3\t10\n"))
    assert [(r.item, r.timestamp) for r in ml.interactions] == [(1, 10), (2, 50), (3, 50), (1, 50)]
    _, _, test = leave_last_out(ml, valid=False)
    assert [r.item for r in test] == [1]


@pytest.mark.parametrize(("n", "valid", "min_train", "held"), [
    (2, True, 1, (0, 1)), (3, True, 1, (1, 1)), (1, False, 1, (0, 0)), (2, False, 1, (0, 1)),
    (2, True, 0, (1, 1)), (3, True, 2, (0, 1)),
])
def test_leave_last_out_keeps_exactly_min_train(n: int, valid: bool, min_train: int, held: tuple[int, int]) -> None:
    ml = _ml([(1, i + 1, 4.0, 10 * i) for i in range(n)])
    train, val, test = leave_last_out(ml, valid=valid, min_train=min_train)
    assert (len(val), len(test)) == held
    assert len(train) == n - sum(held) and len(train) >= min_train


def test_movielens_header_must_name_every_required_column(tmp_path: Path) -> None:
    header = "user_id:token\titem_id:token\trating:float\ttime:float\n"
    with pytest.raises(ValueError, match=r"line 1 header must start with"):
        load_movielens(_folder(tmp_path, "1\t1\t4\t10\n", inter_header=header))


def test_movielens_short_row_names_its_line(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"ml-100k\.inter: line 3 has 3 fields, expected 4"):
        load_movielens(_folder(tmp_path, "1\t1\t4\t10\n1\t2\t4\n"))
