"""MovieLens-100k loader (Harper & Konstan, 2015; GroupLens research-use terms) and its
leave-last-out split, as used for next-item retrieval in the RAILS/MoL experiments.

Files: ``movielens-100k/ml-100k.{inter,user,item}``, tab-separated with typed headers such as
``user_id:token``. Ids are kept as the integers in the files (1-based).
"""

from __future__ import annotations

import math
import os
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from rag_relax_plugins.core.scalars import check_count
from rag_relax_plugins.datasets._io import iter_lines
from rag_relax_plugins.datasets.paths import data_root, require_file

if TYPE_CHECKING:
    import torch

__all__ = ["Movie", "MovieLens", "Rating", "User", "leave_last_out", "load_movielens"]


class Rating(NamedTuple):
    """One interaction: ``(user, item, rating, timestamp)``."""

    user: int
    item: int
    rating: float
    timestamp: int


@dataclass(frozen=True)
class User:
    """A MovieLens user."""

    id: int
    age: int
    gender: str
    occupation: str
    zip_code: str


@dataclass(frozen=True)
class Movie:
    """A MovieLens movie: title, release year (0 when unknown) and genres."""

    id: int
    title: str
    year: int
    genres: tuple[str, ...]


@dataclass(frozen=True)
class MovieLens:
    """MovieLens-100k.

    Attributes:
        interactions: all ratings sorted by ``(timestamp, file order)``.
        users: ``{user_id: User}``.
        items: ``{item_id: Movie}``.
    """

    interactions: tuple[Rating, ...]
    users: dict[int, User]
    items: dict[int, Movie]

    @property
    def num_users(self) -> int:
        """Number of users in the user table."""
        return len(self.users)

    @property
    def num_items(self) -> int:
        """Number of movies in the item table."""
        return len(self.items)

    def as_tensors(
        self, ratings: tuple[Rating, ...] | list[Rating] | None = None
    ) -> dict[str, torch.Tensor]:
        """Columns of ``ratings`` (default: all interactions) as tensors.

        Returns:
            ``{"user": (N,) x long, "item": (N,) x long, "rating": (N,) x float32,
            "timestamp": (N,) x long}``.
        """
        import torch

        rows = self.interactions if ratings is None else ratings
        return {
            "user": torch.tensor([r.user for r in rows], dtype=torch.long),
            "item": torch.tensor([r.item for r in rows], dtype=torch.long),
            "rating": torch.tensor([r.rating for r in rows], dtype=torch.float32),
            "timestamp": torch.tensor([r.timestamp for r in rows], dtype=torch.long),
        }


def _read_tsv(path: Path, columns: tuple[str, ...]) -> list[tuple[int, list[str]]]:
    """``(line_number, fields)`` of a typed-header TSV after checking its header names."""
    rows: list[tuple[int, list[str]]] = []
    lineno = 0
    for lineno, line in iter_lines(path):  # each line decoded on its own: bad bytes name their line
        if lineno == 1:
            header = line.rstrip("\r\n").split("\t")
            names = tuple(h.split(":", 1)[0] for h in header)
            if names[: len(columns)] != columns:
                raise ValueError(
                    f"{path}: line 1 header must start with {list(columns)}, got {list(names)}"
                )
            continue
        if not line.strip():
            continue
        fields = line.rstrip("\r\n").split("\t")
        if len(fields) < len(columns):
            raise ValueError(
                f"{path}: line {lineno} has {len(fields)} fields, expected {len(columns)}"
            )
        rows.append((lineno, fields))
    if lineno == 0:  # an empty file
        raise ValueError(f"{path}: line 1 header must start with {list(columns)}, got ['']")
    return rows


_INT = re.compile(r"[+-]?[0-9]+")


def _int(value: str, path: Path, lineno: int, what: str) -> int:
    """An integer field: optional sign and ASCII digits (``"2.7"`` or ``"1e3"`` is an error)."""
    text = value.strip()
    if not _INT.fullmatch(text):
        raise ValueError(f"{path}: line {lineno} field {what} must be an integer, got {value!r}")
    return int(text)


def _rating(value: str, path: Path, lineno: int) -> float:
    """A finite float (``"nan"`` and ``"inf"`` are errors)."""
    try:
        rating = float(value)
    except ValueError as exc:
        raise ValueError(f"{path}: line {lineno} has a malformed rating {value!r}") from exc
    if not math.isfinite(rating):
        raise ValueError(f"{path}: line {lineno} field rating must be finite, got {value!r}")
    return rating


def _check_new_id(seen: dict[int, int], key: int, path: Path, lineno: int, what: str) -> None:
    """Raise when ``key`` is below 1 (ids are 1-based: 0 is the sequence models' padding id) or
    was already read (``seen`` maps each id to its line number)."""
    if key < 1:
        raise ValueError(f"{path}: line {lineno} has {what} {key}; ids must be >= 1")
    if key in seen:
        raise ValueError(f"{path}: line {lineno} repeats {what} {key} (first on line {seen[key]})")
    seen[key] = lineno


_FILES = ("ml-100k.inter", "ml-100k.user", "ml-100k.item")


def load_movielens(path: str | os.PathLike[str] | None = None) -> MovieLens:
    """Load MovieLens-100k.

    Args:
        path: the folder holding ``ml-100k.{inter,user,item}``, its parent, or one of those
            three files (read with the other two beside it); default
            ``data_root()/movielens-100k``.

    Raises:
        FileNotFoundError: a file is missing (names the path and ``RAG_RELAX_DATA``).
        ValueError: a malformed line (the message names the file and the line number): an
            integer field (ids, timestamp, age) that is not an integer, a rating that is not a
            finite number, an id below 1, an id repeated in the user or item table, or an
            interaction whose user or item is not in those tables (the first such line).
    """
    folder = data_root() / "movielens-100k" if path is None else Path(path)
    if folder.is_file():  # one of the three files names its folder; any other file is a mistake
        if folder.name not in _FILES:
            raise ValueError(f"{folder} is a file; MovieLens is read from the folder holding {', '.join(_FILES)}")
        folder = folder.parent
    if not (folder / "ml-100k.inter").exists() and (folder / "movielens-100k").is_dir():
        folder = folder / "movielens-100k"
    inter = require_file(folder / "ml-100k.inter", "MovieLens interactions file")
    user_file = require_file(folder / "ml-100k.user", "MovieLens user file")
    item_file = require_file(folder / "ml-100k.item", "MovieLens item file")

    lines_and_ratings = []
    for n, f in _read_tsv(inter, ("user_id", "item_id", "rating", "timestamp")):
        rating = _rating(f[2], inter, n)
        user, item = _int(f[0], inter, n, "user_id"), _int(f[1], inter, n, "item_id")
        if user < 1 or item < 1:  # ids are 1-based; 0 is the padding id of the sequence models
            raise ValueError(
                f"{inter}: line {n} has user_id {user} / item_id {item}; ids must be >= 1"
            )
        lines_and_ratings.append((n, Rating(user, item, rating, _int(f[3], inter, n, "timestamp"))))

    users = {}
    user_lines: dict[int, int] = {}
    for n, f in _read_tsv(user_file, ("user_id", "age", "gender", "occupation", "zip_code")):
        uid = _int(f[0], user_file, n, "user_id")
        _check_new_id(user_lines, uid, user_file, n, "user_id")
        users[uid] = User(uid, _int(f[1], user_file, n, "age"), f[2], f[3], f[4])

    items = {}
    item_lines: dict[int, int] = {}
    for n, f in _read_tsv(item_file, ("item_id", "movie_title", "release_year", "class")):
        iid = _int(f[0], item_file, n, "item_id")
        _check_new_id(item_lines, iid, item_file, n, "item_id")
        year_text = f[2].strip()  # the file has "unkonwn" and blanks
        year = int(year_text) if year_text.isascii() and year_text.isdigit() else 0
        items[iid] = Movie(iid, f[1], year, tuple(f[3].split()))

    for n, r in lines_and_ratings:  # file order, so the first offending line is named
        if r.user not in users:
            raise ValueError(f"{inter}: line {n} has user_id {r.user}, which is not in {user_file}")
        if r.item not in items:
            raise ValueError(f"{inter}: line {n} has item_id {r.item}, which is not in {item_file}")
    ratings = [r for _, r in lines_and_ratings]
    ratings.sort(key=lambda r: r.timestamp)  # stable: ties keep file order
    return MovieLens(interactions=tuple(ratings), users=users, items=items)


def leave_last_out(
    ml: MovieLens, *, valid: bool = True, min_train: int = 1
) -> tuple[list[Rating], list[Rating], list[Rating]]:
    """Per-user chronological split: last rating -> test, second last -> valid, rest -> train.

    Ratings are ordered by ``(timestamp, order in ml.interactions)`` (a stable sort, so an
    unsorted hand-built ``MovieLens`` is split by time too) and ties are broken deterministically. A
    user keeps at least ``min_train`` training ratings: with too few ratings the valid and then
    the test item are not held out.

    Args:
        ml: the data set.
        valid: hold out a validation item per user; ``False`` returns an empty valid list.
        min_train: training ratings each user keeps (>= 0).

    Returns:
        ``(train, valid, test)`` lists of :class:`Rating`, each sorted by time.
    """
    min_train = check_count("min_train", min_train, 0)
    ratings = sorted(ml.interactions, key=lambda r: r.timestamp)  # stable: ties keep their order
    by_user: dict[int, list[int]] = defaultdict(list)
    for pos, r in enumerate(ratings):
        by_user[r.user].append(pos)
    role: dict[int, int] = {}  # position -> 1 valid, 2 test
    for positions in by_user.values():
        held = 2 if valid else 1
        held = max(0, min(held, len(positions) - min_train))
        if held >= 1:
            role[positions[-1]] = 2
        if held >= 2:
            role[positions[-2]] = 1
    train: list[Rating] = []
    val: list[Rating] = []
    test: list[Rating] = []
    for pos, r in enumerate(ratings):
        (train, val, test)[role.get(pos, 0)].append(r)
    return train, val, test
