"""Data pipelines: history windows, MovieLens next-item pairs, HotpotQA open-corpus split."""

from __future__ import annotations

import pytest
import torch

from rag_relax_plugins.datasets.hotpotqa import HotpotExample
from rag_relax_plugins.datasets.movielens import Movie, MovieLens, Rating
from rag_relax_plugins.training.mol_data import (
    hotpot_open_split,
    movielens_next_item,
    sequence_windows,
)


def test_sequence_windows_right_aligned():
    w = sequence_windows(torch.tensor([7, 8, 9]), 2)
    assert w.tolist() == [[0, 7], [7, 8], [8, 9]]
    with pytest.raises(ValueError, match="max_len"):
        sequence_windows(torch.tensor([1]), 0)


def _ml() -> MovieLens:
    # user 1: items 1,2,3,4 (4 is the test item); user 2: 2,5,3; user 3: a single rating
    rows = [(1, 1, 0), (1, 2, 1), (2, 2, 2), (1, 3, 3), (2, 5, 4), (1, 4, 5), (2, 3, 6), (3, 6, 7)]
    ratings = tuple(Rating(u, i, 4.0, t) for u, i, t in rows)
    items = {i: Movie(i, f"m{i}", 1990, ("Drama",)) for i in range(1, 7)}
    return MovieLens(interactions=ratings, users={}, items=items)


def test_movielens_next_item_pairs_and_test_queries():
    d = movielens_next_item(_ml(), max_len=2)
    assert d.num_items == 7
    assert d.train.queries.tolist() == [[0, 1], [1, 2], [0, 2]]
    assert d.train.items.tolist() == [2, 3, 5]
    assert d.train.excluded_items == (0,)
    # user 1's test query: last 2 training items (2, 3) -> target 4; user 2: (2, 5) -> 3
    assert d.test_histories.tolist() == [[2, 3], [2, 5]]
    assert d.test_targets.tolist() == [4, 3]
    assert d.test_seen[0].nonzero().flatten().tolist() == [0, 1, 2, 3]
    assert d.test_seen[1].nonzero().flatten().tolist() == [0, 2, 5]
    assert not bool(d.test_seen[torch.arange(2), d.test_targets].any())
    with pytest.raises(ValueError, match="max_len"):
        movielens_next_item(_ml(), max_len=0)


def test_item_ids_of_no_movie_are_never_candidates():
    # a catalogue with id gaps (MovieLens-1M: 3,883 movies, ids up to 3,952): the missing ids were
    # ranked (untrained, all tied) and drawn as negatives (review 2026-12-05)
    from rag_relax_plugins.training.mol_eval import target_ranks

    items = {i: Movie(i, f"m{i}", 1990, ()) for i in (1, 2, 3, 1000)}
    rows = [(1, 1, 0), (1, 2, 1), (1, 3, 2), (2, 2, 3), (2, 3, 4), (2, 1000, 5)]
    d = movielens_next_item(MovieLens(tuple(Rating(u, i, 4.0, t) for u, i, t in rows), {}, items), max_len=2)
    assert d.num_items == 1001
    assert set(d.train.excluded_items) == set(range(1001)) - {1, 2, 3, 1000}
    assert (~d.test_seen).sum(1).tolist() == [2, 2]  # the catalogue minus each user's training items
    assert target_ranks(torch.zeros(2, d.num_items), d.test_targets, d.test_seen).tolist() == [1, 2]
    # a rated id missing from the movie table is still an item
    d = movielens_next_item(MovieLens(tuple(Rating(u, i, 4.0, t) for u, i, t in rows), {}, {1: items[1]}), max_len=2)
    assert set(d.train.excluded_items) == set(range(1001)) - {1, 2, 3, 1000}


def _examples(n: int = 6) -> list[HotpotExample]:
    out = []
    for i in range(n):
        paras = ((f"T{i}", ("gold a.",)), (f"U{i}", ("gold b.",)), ("Shared", ("distractor.",)))
        facts = ((f"T{i}", 0), (f"U{i}", 0), ("Missing", 0))
        out.append(HotpotExample(f"q{i}", f"question {i}?", "x", "bridge", "easy", paras, facts))
    return out


def test_hotpot_open_split_is_fixed_and_disjoint():
    a = hotpot_open_split(_examples(), split_seed=0)
    b = hotpot_open_split(_examples(), split_seed=0)
    assert a.train_questions == b.train_questions
    assert len(a.train_questions) == len(a.test_questions) == 3
    assert not set(a.train_questions) & set(a.test_questions)
    assert len(a.doc_ids) == 13  # 2 gold per question + one shared distractor
    # two present gold paragraphs per training question; "Missing" is not in the corpus
    assert a.train_pairs.items.shape == (6,)
    assert all(set(q.values()) == {1} and len(q) == 2 for q in a.test_qrels)  # two gold paragraphs each
    for qi, di in zip(a.train_pairs.queries.tolist(), a.train_pairs.items.tolist()):
        assert a.doc_ids[di] in a.train_qrels[qi]
    assert torch.equal(a.train_pairs.query_keys, a.train_pairs.queries)
    with pytest.raises(ValueError, match="train_fraction"):
        hotpot_open_split(_examples(), train_fraction=1.0)


@pytest.mark.data
def test_hotpot_split_on_the_shared_file(data_dir):
    from rag_relax_plugins.datasets.hotpotqa import load_hotpotqa_distractor

    split = hotpot_open_split(load_hotpotqa_distractor(data_dir / "hotpotqa" / "distractor_500.jsonl"))
    assert len(split.train_questions) == len(split.test_questions) == 250
    assert len(split.doc_ids) > 4000
    assert split.train_pairs.items.shape[0] > 200


@pytest.mark.slow
@pytest.mark.data
def test_movielens_next_item_on_the_shared_data(data_dir):
    from rag_relax_plugins.datasets.movielens import load_movielens

    d = movielens_next_item(load_movielens(data_dir / "movielens-100k"), max_len=50)
    assert d.num_items == 1683
    assert d.test_targets.shape == (943,)
    assert d.train.items.shape == (100_000 - 943 - 943,)  # one test item and one first item per user
    assert not bool(d.test_seen[torch.arange(943), d.test_targets].any())
