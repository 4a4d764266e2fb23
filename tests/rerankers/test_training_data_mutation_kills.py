"""Documented behaviour of the MaxSim / MoL training data and the Gaussian file readers that hand
mutants changed unnoticed (review 2026-12-05). Each test fails on one mutant and passes on the code."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from rag_relax_plugins.datasets.hotpotqa import HotpotEvidence, HotpotExample
from rag_relax_plugins.embedders.hashing import HashingEncoder
from rag_relax_plugins.rerankers.maxsim import MaxSimConfig, MaxSimReranker, PackedTokens
from rag_relax_plugins.training.gaussian_files import load_eval_file, load_pairs, read_documents
from rag_relax_plugins.training.maxsim_data import (
    TextTable,
    _check_packed,
    _fingerprint,
    evidence_groups,
    hotpot_split,
)
from rag_relax_plugins.training.mol_data import hotpot_open_split


def _row(i: int) -> dict[str, Any]:
    return {"_id": f"id{i}", "question": f"question {i}?", "answer": "a", "type": "bridge", "level": "easy",
            "context": [[f"T{i}", [f"gold {i}."]], [f"U{i}", [f"other {i}."]]], "supporting_facts": [[f"T{i}", 0]]}


def test_hotpot_split_uses_every_row_once(tmp_path: Path) -> None:
    f = tmp_path / "d.jsonl"
    f.write_text("".join(json.dumps(_row(i)) + "\n" for i in range(7)), encoding="utf-8")
    s = hotpot_split(f, train_rows=4, val_rows=1)
    q = s.queries.texts
    assert [q[g.query] for g in s.train] == [f"question {i}?" for i in range(3)]
    assert [q[g.query] for g in s.val] == ["question 3?"]
    assert [q[g.query] for g in s.test] == [f"question {i}?" for i in range(4, 7)]  # every row after train_rows


def test_hotpot_split_val_rows_must_leave_training_rows(tmp_path: Path) -> None:
    f = tmp_path / "d.jsonl"
    row = {"question": "q?", "answer": "a", "context": [["T", ["s."]]], "supporting_facts": [["T", 0]]}
    f.write_text(json.dumps(row) + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match="val_rows must satisfy"):
        hotpot_split(f, train_rows=4, val_rows=4)


def test_evidence_rows_with_only_blank_sentences_give_no_group() -> None:
    queries, texts = TextTable(), TextTable()
    items = [HotpotEvidence("q1?", "a", ("  ", ""), "bridge", "easy"), HotpotEvidence("q2?", "a", (" s.",), "bridge", "easy")]
    groups = evidence_groups(items, queries, texts)
    assert len(groups) == 1 and texts.texts == ["s."]


def test_cache_fingerprint_separates_text_boundaries() -> None:
    # ['ab', 'c'] and ['a', 'bc'] sharing a cache file would get each other's token vectors
    rr = MaxSimReranker(MaxSimConfig(projection_dim=4, token_dim=16), encoder=HashingEncoder(dim=16))
    assert _fingerprint(rr, "[D]", ["ab", "c"]) != _fingerprint(rr, "[D]", ["a", "bc"])


def test_cached_offsets_must_not_decrease() -> None:
    packed = PackedTokens(tokens=torch.zeros(4, 8), offsets=torch.tensor([0, 3, 1, 4]))
    with pytest.raises(ValueError, match="offsets do not split"):
        _check_packed(packed, 3, 8)


def _ex(i: int) -> HotpotExample:
    return HotpotExample(str(i), f"q{i}", "a", "bridge", "easy", ((f"T{i}", ("s.",)), (f"U{i}", ("u.",))), ((f"T{i}", 0),))


@pytest.mark.parametrize(("n", "fraction", "expected"), [(10, 0.37, 4), (10, 0.34, 3), (4, 0.5, 2)])
def test_open_split_train_size_is_rounded(n: int, fraction: float, expected: int) -> None:
    s = hotpot_open_split([_ex(i) for i in range(n)], train_fraction=fraction)  # round(train_fraction * n)
    assert len(s.train_questions) == expected and len(s.test_questions) == n - expected


@pytest.mark.parametrize("header", ["query,positive,neg", "query,positive,positive", "query,positive,query"])
def test_csv_third_column_must_be_negative(tmp_path: Path, header: str) -> None:
    f = tmp_path / "p.csv"
    f.write_text(header + "\nq1,p1,x1\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r":1: header must be 'query,positive\[,negative\]'"):
        load_pairs(f)


def test_old_mac_line_endings_are_newlines(tmp_path: Path) -> None:
    f = tmp_path / "p.jsonl"
    f.write_bytes(b'{"query": "q1", "positive": "p1"}\r{"query": "q2", "positive": "p2"}\r')
    assert [p.query for p in load_pairs(f)] == ["q1", "q2"]
    d = tmp_path / "d.txt"
    d.write_bytes(b"First doc.\r\rSecond doc.\r")
    assert read_documents(d) == ["First doc.", "Second doc."]


def test_a_blank_line_holding_spaces_separates_documents(tmp_path: Path) -> None:
    f = tmp_path / "d.txt"
    f.write_text("First doc.\n   \nSecond doc.\n\t\nThird doc.\n", encoding="utf-8")
    assert read_documents(f) == ["First doc.", "Second doc.", "Third doc."]


def test_eval_file_refuses_boolean_grades(tmp_path: Path) -> None:
    f = tmp_path / "eval.json"
    f.write_text(json.dumps({"corpus": {"d0": "x"}, "queries": {"q0": "y"}, "qrels": {"q0": {"d0": True}}}), encoding="utf-8")
    with pytest.raises(ValueError, match="numeric grades"):
        load_eval_file(f)


@pytest.mark.parametrize("key", ["corpus", "queries", "qrels"])
def test_eval_file_refuses_an_empty_section(tmp_path: Path, key: str) -> None:
    data: dict[str, Any] = {"corpus": {"d0": "x"}, "queries": {"q0": "y"}, "qrels": {"q0": {"d0": 1}}}
    data[key] = {}
    f = tmp_path / "eval.json"
    f.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(ValueError, match=f"'{key}' must be a non-empty object"):
        load_eval_file(f)
