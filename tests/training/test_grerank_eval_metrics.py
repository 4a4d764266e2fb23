"""evaluate_reranker / evaluate_rankings refuse metrics="mrr" (a str) up front: list("mrr") asked
for the metrics "m", "r", "r" and failed with "unknown metric 'm'" after every question was scored."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "rerankers"))
from _gumbel_helpers import example

from rag_relax_plugins.training.grerank_eval import evaluate_rankings, evaluate_reranker

EXAMPLES = [example(i) for i in range(3)]


class CountingReranker:
    """Scores paragraph 0 highest and counts its calls."""

    def __init__(self) -> None:
        self.calls = 0

    def score(self, query: str, documents: list[str]) -> torch.Tensor:
        self.calls += 1
        return -torch.arange(len(documents), dtype=torch.float32)


def test_a_metric_string_is_refused_before_any_scoring() -> None:
    r = CountingReranker()
    with pytest.raises(TypeError, match=r"got the string 'mrr'; pass \['mrr'\]"):
        evaluate_reranker(r, EXAMPLES, metrics="mrr")  # type: ignore[arg-type]
    assert r.calls == 0
    with pytest.raises(TypeError, match=r"pass \['recall@2'\]"):
        evaluate_rankings(EXAMPLES, [[0, 1, 2, 3]] * 3, metrics="recall@2")


def test_a_list_of_one_metric_still_works() -> None:
    r = CountingReranker()
    res = evaluate_reranker(r, EXAMPLES, metrics=["mrr"])  # type: ignore[arg-type]
    assert r.calls == 3 and res["all"] == {"mrr": 1.0, "n": 3}


@pytest.mark.parametrize(("metrics", "match"), [(["recal@2"], "unknown metric 'recal@2'"),
                                                (["mrr", "mrr"], "'mrr' more than once")])
def test_a_misspelled_or_repeated_metric_is_refused_before_any_scoring(metrics: list[str], match: str) -> None:
    """Only a plain string was checked first: a typo was refused after every question was scored."""
    r = CountingReranker()
    with pytest.raises(ValueError, match=match):
        evaluate_reranker(r, EXAMPLES, metrics=metrics)  # type: ignore[arg-type]
    assert r.calls == 0
    res = evaluate_reranker(r, EXAMPLES, metrics=(m for m in ["mrr"]))  # type: ignore[arg-type]
    assert res["all"] == {"mrr": 1.0, "n": 3}


def test_no_example_is_refused_and_all_is_always_there() -> None:
    """``evaluate_reranker(r, [])`` returned ``{}``: ``["all"]`` then failed with a bare KeyError
    (the example's ``--test-rows 0``; review 2026-12-05)."""
    import dataclasses

    reranker = CountingReranker()
    for call in (lambda: evaluate_reranker(reranker, []), lambda: evaluate_rankings([], [])):
        with pytest.raises(ValueError, match="examples must hold at least one question"):
            call()
    assert reranker.calls == 0
    unjudged = [dataclasses.replace(ex, supporting_facts=()) for ex in EXAMPLES]
    assert all(not ex.gold_indices for ex in unjudged)
    out = evaluate_reranker(reranker, unjudged)
    assert set(out) == {"all"} and out["all"]["n"] == 0 and out["all"]["mrr"] == 0.0
