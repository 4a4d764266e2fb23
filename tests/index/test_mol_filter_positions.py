"""Dict filters narrow one key at a time (positions_matching): the same matches as checking every
key of every item (metadata_matches), on random metadata with JSON's awkward values."""

from __future__ import annotations

import random

import numpy as np
import torch

from rag_relax_plugins.core.mol import MoLSimilarity
from rag_relax_plugins.index import MoLIndex
from rag_relax_plugins.index.filters import metadata_matches, positions_matching

VALUES = [0, 1, 1.0, 2, -0.0, float("nan"), True, False, None, "1", "a", "", [1], [True], [], {"x": 1}, {"x": True},
          np.int64(1), np.float32(1.0), np.bool_(True), np.str_("a")]


# stored values that are not JSON (the LangChain store keeps metadata as given): never a filter's
STORED = [*VALUES, np.array([2, 3]), np.array([1]), np.array(1), torch.tensor([1, 2]), torch.tensor(1)]


def test_key_by_key_narrowing_matches_the_all_keys_reference() -> None:
    rng = random.Random(3)
    keys = ["a", "b", "c"]
    metadata = [{k: rng.choice(STORED) for k in keys if rng.random() < 0.8} for _ in range(400)]
    for _ in range(1_000):  # the filter values as a filter gives them (numpy ones become plain)
        want = {k: rng.choice(VALUES) for k in rng.sample(keys, rng.randint(0, 3))}
        expected = [p for p, m in enumerate(metadata) if metadata_matches(m, want)]
        assert positions_matching(metadata, want) == expected, want


def test_a_stored_numpy_scalar_against_a_list_value_neither_matches_nor_raises() -> None:
    """np.int64(1) == [1] is array([True]) (it matched) and np.int64(1) == [1, 2] an array whose
    truth value raised; stored numpy scalars compare as the Python values they hold."""
    metadata = [{"n": np.int64(1)}, {"n": [1]}, {"n": np.bool_(True)}, {"n": np.float32(0.5)}]
    assert positions_matching(metadata, {"n": [1]}) == [1]
    assert positions_matching(metadata, {"n": [1, 2]}) == []
    assert positions_matching(metadata, {"n": 1}) == [0]  # np.bool_(True) is a boolean, not the number 1
    assert positions_matching(metadata, {"n": True}) == [2]
    assert positions_matching(metadata, {"n": 0.5}) == [3]


def test_a_stored_array_or_tensor_under_the_key_neither_matches_a_scalar_nor_raises() -> None:
    """The inline comparison of a scalar filter value ran ``stored == value`` first: for a stored
    numpy array or torch tensor that is an array, whose truth value raised (found by review: one
    such document broke every search on its key)."""
    metadata = [{"page": 1}, {"page": np.array([2, 3])}, {"page": torch.tensor([1, 1])}, {"page": np.array(1)}]
    assert positions_matching(metadata, {"page": 1}) == [0, 3]  # a 0-d array holds the number 1
    assert positions_matching(metadata, {"page": [2, 3]}) == [1]
    assert positions_matching(metadata, {"page": "1"}) == []


def test_a_filtered_search_uses_the_matching_rows() -> None:
    index = MoLIndex(MoLSimilarity.cosine(4), device="cpu", exact_filter_threshold=1)
    metas = [{"p": i % 2, "q": i % 3} for i in range(30)]
    index.add([f"d{i}" for i in range(30)], torch.randn(30, 4), metas)
    q = torch.randn(2, 4)
    allowed = [f"d{i}" for i in range(30) if i % 2 == 1 and i % 3 == 0]
    assert index.ids_where({"p": 1, "q": 0}) == allowed
    got = index.search(q, 30, filter={"p": 1, "q": 0})
    ref = index.search(q, 30, filter=allowed)
    assert got[1] == ref[1] and sorted(got[1][0]) == sorted(allowed)
    assert index.search(q, 3, filter={})[1] == index.search(q, 3)[1]  # no keys: everything
