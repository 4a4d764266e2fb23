"""Documented behaviour of inverse-cloze synthesis, prepare-data and the HotpotQA rerank baselines
that hand mutants changed unnoticed (review 2026-12-05). Each test fails on one mutant and passes
on the code."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from rag_relax_plugins._cli import prepare_data as cli
from rag_relax_plugins.datasets.hotpotqa import HotpotExample
from rag_relax_plugins.embedders.hashing import HashingEncoder
from rag_relax_plugins.evals.hotpot_rerank import rerank_hotpot
from rag_relax_plugins.training.gaussian_data import (
    Pair,
    prepare_data,
    read_documents,
    split_pairs,
    synthesize_pairs,
)

DOCS = [f"Doc {i} opens here. It goes on with fact {i}. It ends on point {i}!" for i in range(12)]


def _sentences(text: str) -> list[str]:
    return text.replace("! ", "!|").replace(". ", ".|").split("|")


def test_inverse_cloze_positive_is_the_rest_of_the_document() -> None:
    for seed in range(5):
        for doc, p in zip(DOCS, synthesize_pairs(DOCS, seed=seed), strict=True):
            assert p.query not in p.positive
            assert sorted([p.query, *_sentences(p.positive)]) == sorted(_sentences(doc))


def test_single_sentence_document_query_is_its_first_half() -> None:
    (p,) = synthesize_pairs(["one two three four five six"])
    assert (p.query, p.positive) == ("one two three", "one two three four five six")
    (p,) = synthesize_pairs(["alone"])
    assert (p.query, p.positive) == ("alone", "alone")


def test_synthetic_negative_is_never_the_pairs_own_positive() -> None:
    for seed in range(20):
        for p in synthesize_pairs(DOCS[:3], negatives=True, seed=seed):
            assert p.negative is not None and p.negative != p.positive


def _examples() -> list[HotpotExample]:
    out = []
    for i in range(30):
        paras = tuple((f"T{i}-{j}", (f"sentence {i} {j}.",)) for j in range(10))
        out.append(HotpotExample(str(i), f"question {i}?", "a", "bridge", "easy", paras, ((f"T{i}-0", 0),)))
    return out


def test_data_order_baseline_is_the_file_order_and_random_follows_the_seed() -> None:
    # the gold paragraph is first in every context: "data order" scores MRR 1
    enc = HashingEncoder(dim=32)
    r0, r1 = rerank_hotpot(_examples(), enc, seed=0), rerank_hotpot(_examples(), enc, seed=1)
    assert r0.metrics["data order"]["mrr"] == 1.0 and r0.metrics["random"]["mrr"] < 1.0
    assert r0.metrics["random"] != r1.metrics["random"]
    assert r0.metrics["encoder"] == r1.metrics["encoder"]


def test_split_gives_val_and_test_a_query_when_possible() -> None:
    train, val, test = split_pairs([Pair(f"q{i}", f"p{i}") for i in range(5)])
    assert (len(train), len(val), len(test)) == (3, 1, 1)


def test_fractions_must_sum_to_one() -> None:
    with pytest.raises(ValueError, match="summing to 1"):
        split_pairs([Pair(f"q{i}", f"p{i}") for i in range(20)], (0.8, 0.1, 0.05))


def test_cli_seed_reaches_prepare_data(tmp_path: Path) -> None:
    src = tmp_path / "pairs.jsonl"
    src.write_text("".join(f'{{"query": "q{i}", "positive": "p{i}"}}\n' for i in range(30)), encoding="utf-8")
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    assert cli.run(parser.parse_args([str(src), "-o", str(tmp_path / "cli"), "--seed", "7"])) == 0
    prepare_data(src, tmp_path / "api", seed=7)
    prepare_data(src, tmp_path / "zero", seed=0)
    for name in ("train.jsonl", "val.jsonl", "test.jsonl", "eval.json"):
        assert (tmp_path / "cli" / name).read_text() == (tmp_path / "api" / name).read_text()
    assert (tmp_path / "api" / "test.jsonl").read_text() != (tmp_path / "zero" / "test.jsonl").read_text()


def test_auto_kind_reads_an_upper_case_txt_as_documents(tmp_path: Path) -> None:
    src = tmp_path / "NOTES.TXT"
    src.write_text("\n\n".join(f"Doc {i} starts. It ends {i}." for i in range(6)), encoding="utf-8")
    paths = prepare_data(src, tmp_path / "out")
    assert paths["train"].read_text().count("\n") >= 1


def test_prepare_data_seed_also_picks_the_query_sentences(tmp_path: Path) -> None:
    src = tmp_path / "docs.txt"
    src.write_text("\n\n".join(f"Doc {i} starts. It goes on {i}. It ends {i}." for i in range(10)), encoding="utf-8")
    for seed in (1, 2):
        paths = prepare_data(src, tmp_path / f"o{seed}", seed=seed)
        got = {json.loads(line)["query"] for k in ("train", "val", "test") for line in paths[k].read_text().splitlines()}
        assert got == {p.query for p in synthesize_pairs(read_documents(src), seed=seed)}


def test_eval_corpus_holds_the_negatives_too(tmp_path: Path) -> None:
    src = tmp_path / "pairs.jsonl"
    src.write_text("".join(f'{{"query": "q{i}", "positive": "p{i}", "negative": "n{i}"}}\n' for i in range(10)),
                   encoding="utf-8")
    ev = json.loads(prepare_data(src, tmp_path / "o")["eval"].read_text())
    assert set(ev["corpus"].values()) == {f"p{i}" for i in range(10)} | {f"n{i}" for i in range(10)}
