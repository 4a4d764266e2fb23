"""Data pipelines for learned-similarity retrieval: MovieLens next item, HotpotQA open corpus.

- :func:`movielens_next_item`: leave-last-out next-item retrieval (the RAILS/MoL recommendation
  setting). Training pairs are ``(last L items before t, item at t)`` for every position ``t >= 2``
  of each user's training sequence; each user's test query is the last ``L`` training items and
  the target is the held-out last item. Item ids are MovieLens ids (1-based); id 0 is padding.
  ``split="valid"`` is the matching validation protocol (leave-second-to-last-out): the last
  item is dropped, the second-to-last is the target, training stops before it. Every pair and
  query also records its user; :meth:`NextItemData.with_user_ids` prefixes the queries with that
  id for a query tower with a per-user embedding
  (:class:`~rag_relax_plugins.training.mol_user_tower.UserQueryTower`).
- :func:`hotpot_open_split`: all unique paragraphs of the HotpotQA distractor file as the
  corpus, questions as queries, present gold paragraphs as relevant; a fixed seeded split puts
  half of the questions in training (one pair per question and gold paragraph) and half in test.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import torch

from rag_relax_plugins.core.scalars import check_count
from rag_relax_plugins.datasets.hotpotqa import HotpotExample, hotpot_open_corpus
from rag_relax_plugins.datasets.movielens import MovieLens, leave_last_out
from rag_relax_plugins.training.mol_train import PairData

__all__ = ["NextItemData", "OpenCorpusSplit", "hotpot_open_split", "movielens_next_item", "sequence_windows"]


def sequence_windows(seq: torch.Tensor, max_len: int) -> torch.Tensor:
    """Right-aligned windows of the last ``max_len`` items ending at each position.

    Args:
        seq: ``(n,) x long`` item ids (no zeros), oldest first.
        max_len: ``L``.

    Returns:
        ``(n, L) x long``: row ``t`` holds ``seq[max(0, t-L+1) : t+1]`` left-padded with 0.
    """
    if seq.dim() != 1:
        raise ValueError(f"seq must be 1-D, got shape {tuple(seq.shape)}")
    if max_len < 1:
        raise ValueError(f"max_len must be >= 1, got {max_len}")
    padded = torch.cat([seq.new_zeros(max_len - 1), seq])  # (L - 1 + n,)
    return padded.unfold(0, max_len, 1).contiguous()  # (n, L), window t ends at seq[t]


@dataclass(frozen=True)
class NextItemData:
    """Leave-last-out next-item retrieval data.

    Attributes:
        train: pairs with ``queries`` ``(N, L) x long`` histories and ``items`` ``(N,)`` next items.
        test_histories: ``(U, L) x long`` each test user's last ``L`` training items.
        test_targets: ``(U,) x long`` held-out last item of each test user.
        test_seen: ``(U, num_items) x bool`` True at the user's training items and at id 0: these
            are excluded from the ranking.
        num_items: ``max item id + 1``. Id 0 is padding; it and the ids of no movie (gaps in the
            catalogue's ids, as in MovieLens-1M) are never candidates: they are ``train``'s
            ``excluded_items`` and set in every row of ``test_seen``.
        max_len: ``L``.
        split: ``"test"`` (the ``test_*`` fields hold each user's last item) or ``"valid"``
            (they hold the second-to-last item; the last one is in no field).
        train_users: ``(N,) x long`` the user of each training pair (``None``: unknown).
        test_users: ``(U,) x long`` the user of each test query (``None``: unknown).
        num_users: ``max user id + 1``; id 0 is never a real user (MovieLens ids are 1-based).
        user_column: ``True`` when ``train.queries`` and ``test_histories`` are
            ``(., 1 + L)``: the user id, then the history (see :meth:`with_user_ids`).
    """

    train: PairData
    test_histories: torch.Tensor
    test_targets: torch.Tensor
    test_seen: torch.Tensor
    num_items: int
    max_len: int
    split: str = "test"
    train_users: torch.Tensor | None = None
    test_users: torch.Tensor | None = None
    num_users: int = 0
    user_column: bool = False

    def with_user_ids(self) -> NextItemData:
        """The same data with every query prefixed by its user id: ``(N, 1 + L) x long``.

        The input of :class:`~rag_relax_plugins.training.mol_user_tower.UserQueryTower`. Returns
        ``self`` when the column is already there.

        Raises:
            ValueError: the data carries no user ids.
        """
        if self.user_column:
            return self
        if self.train_users is None or self.test_users is None:
            raise ValueError("this NextItemData has no user ids (train_users / test_users are None)")
        t = self.train
        queries = torch.cat([self.train_users[:, None], t.queries], dim=1)  # (N, 1 + L)
        pairs = PairData(queries, t.items, t.num_items, excluded_items=t.excluded_items, query_keys=t.query_keys)
        histories = torch.cat([self.test_users[:, None], self.test_histories], dim=1)  # (U, 1 + L)
        return replace(self, train=pairs, test_histories=histories, user_column=True)


def movielens_next_item(ml: MovieLens, *, max_len: int = 50, split: str = "test") -> NextItemData:
    """Build next-item pairs and a leave-last-out evaluation set from MovieLens.

    ``split="test"`` uses :func:`~rag_relax_plugins.datasets.movielens.leave_last_out` with
    ``valid=False``: each user's last rating (by time) is the target, all others are training
    interactions. ``split="valid"`` (for choosing hyper-parameters without touching the test
    item) uses ``valid=True``: the last rating is discarded, the second-to-last is the target,
    the rest are training interactions. Users whose target was not held out (too few ratings)
    have no evaluation query.

    Args:
        ml: the loaded data set.
        max_len: history length ``L`` of a query.
        split: ``"test"`` or ``"valid"``.
    """
    max_len = check_count("max_len", max_len, 1)
    if split not in ("test", "valid"):
        raise ValueError(f"split must be 'test' or 'valid', got {split!r}")
    train, valid, test = leave_last_out(ml, valid=split == "valid")
    if split == "valid":
        test = valid  # the held-out last items (``test``) are not used at all
    num_items = max(max(ml.items, default=0), max((r.item for r in ml.interactions), default=0)) + 1
    seqs: dict[int, list[int]] = {}
    for r in train:  # already sorted by time
        seqs.setdefault(r.user, []).append(r.item)
    hist, nxt, users = [], [], []
    for user, items in seqs.items():
        if len(items) < 2:
            continue
        windows = sequence_windows(torch.tensor(items, dtype=torch.long), max_len)
        hist.append(windows[:-1])  # history ending at t - 1
        nxt.append(torch.tensor(items[1:], dtype=torch.long))  # predicts item t
        users.append(torch.full((len(items) - 1,), user, dtype=torch.long))
    if not hist:
        raise ValueError("no user has two training interactions; nothing to train on")
    test_users = [r.user for r in test if r.user in seqs]
    targets = torch.tensor([r.item for r in test if r.user in seqs], dtype=torch.long)
    histories = torch.stack(
        [sequence_windows(torch.tensor(seqs[u], dtype=torch.long), max_len)[-1] for u in test_users]
    ) if test_users else torch.zeros(0, max_len, dtype=torch.long)
    seen = torch.zeros(len(test_users), num_items, dtype=torch.bool)
    for row, u in enumerate(test_users):
        seen[row, torch.tensor(seqs[u], dtype=torch.long)] = True
    real = set(ml.items) | {r.item for r in ml.interactions}
    ghosts = tuple(i for i in range(num_items) if i not in real)  # padding 0 and ids of no movie: never candidates
    seen[:, list(ghosts)] = True
    pairs = PairData(torch.cat(hist), torch.cat(nxt), num_items, excluded_items=ghosts)
    num_users = max(max(ml.users, default=0), max(seqs, default=0)) + 1
    return NextItemData(
        pairs, histories, targets, seen, num_items, max_len, split,
        train_users=torch.cat(users), test_users=torch.tensor(test_users, dtype=torch.long), num_users=num_users,
    )


@dataclass(frozen=True)
class OpenCorpusSplit:
    """HotpotQA open-corpus retrieval with a train/test split of the questions.

    Attributes:
        doc_ids: corpus ids (paragraph titles), index = item id.
        doc_texts: ``"title: sentences"`` per document.
        train_questions / test_questions: question texts.
        train_qrels / test_qrels: ``{doc_id: 1}`` per question (present gold paragraphs).
        train_pairs: ``(question index, doc index)`` pairs as :class:`PairData` (``queries`` is
            ``(N,) x long`` into ``train_questions``).
    """

    doc_ids: list[str]
    doc_texts: list[str]
    train_questions: list[str]
    train_qrels: list[dict[str, int]]
    test_questions: list[str]
    test_qrels: list[dict[str, int]]
    train_pairs: PairData


def hotpot_open_split(
    examples: Sequence[HotpotExample], *, train_fraction: float = 0.5, split_seed: int = 0
) -> OpenCorpusSplit:
    """Split HotpotQA questions into train/test over one open corpus of all unique paragraphs.

    The split is a seeded permutation of the questions (``split_seed``, independent of the
    training seed), the first ``round(train_fraction * n)`` go to training.

    Raises:
        ValueError: fewer than 2 questions, a fraction outside (0, 1), or fewer than two
            training pairs.
    """
    if not 0 < train_fraction < 1:
        raise ValueError(f"train_fraction must be in (0, 1), got {train_fraction!r}")
    if len(examples) < 2:
        raise ValueError(f"examples must hold at least 2 questions, got {len(examples)}")
    corpus, queries, qrels = hotpot_open_corpus(list(examples))
    doc_ids = list(corpus)
    position = {d: i for i, d in enumerate(doc_ids)}
    qids = list(queries)
    perm = torch.randperm(len(qids), generator=torch.Generator().manual_seed(split_seed)).tolist()
    n_train = min(len(qids) - 1, max(1, round(train_fraction * len(qids))))
    train_q = [qids[i] for i in perm[:n_train]]
    test_q = [qids[i] for i in perm[n_train:]]
    q_idx, d_idx = [], []
    for qi, qid in enumerate(train_q):
        for doc in qrels[qid]:
            q_idx.append(qi)
            d_idx.append(position[doc])
    q_t = torch.tensor(q_idx, dtype=torch.long)
    pairs = PairData(q_t, torch.tensor(d_idx, dtype=torch.long), len(doc_ids), query_keys=q_t)
    return OpenCorpusSplit(
        doc_ids=doc_ids,
        doc_texts=[corpus[d] for d in doc_ids],
        train_questions=[queries[q] for q in train_q],
        train_qrels=[dict(qrels[q]) for q in train_q],
        test_questions=[queries[q] for q in test_q],
        test_qrels=[dict(qrels[q]) for q in test_q],
        train_pairs=pairs,
    )
