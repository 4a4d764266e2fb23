"""BaseReranker.rerank refuses non-finite scores from a subclass (a NaN would sort first)."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
import torch

from rag_relax_plugins.rerankers.base import BaseReranker


class Broken(BaseReranker):
    def score(self, query: str, documents: Sequence[str]) -> torch.Tensor:
        return torch.tensor([1.0, float("nan"), 0.5])[: len(documents)]


def test_non_finite_scores_are_an_error_naming_the_document() -> None:
    with pytest.raises(RuntimeError, match=r"non-finite score \(nan\) for documents\[1\]"):
        Broken().rerank("q", ["a", "b", "c"])
    assert [r.index for r in Broken().rerank("q", ["a"])] == [0]
