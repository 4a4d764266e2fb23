"""Fixtures of the MoL training tests: one intra-op thread (tiny tensors; the CI box is shared), a toy MovieLens."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch

from rag_relax_plugins.datasets.movielens import Movie, MovieLens, Rating


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    """Tiny training runs are overhead-bound; extra threads only contend. Restored afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def toy_movielens() -> MovieLens:
    """Three users: user 1 rates items 1,2,3,4,6 by time; user 2 rates 2,5,3; user 3 rates only 6."""
    rows = [(1, 1, 0), (1, 2, 1), (2, 2, 2), (1, 3, 3), (2, 5, 4), (1, 4, 5), (2, 3, 6), (3, 6, 7), (1, 6, 8)]
    ratings = tuple(Rating(u, i, 4.0, t) for u, i, t in rows)
    items = {i: Movie(i, f"m{i}", 1990, ("Drama",)) for i in range(1, 7)}
    return MovieLens(interactions=ratings, users={}, items=items)
