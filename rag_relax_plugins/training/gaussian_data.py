"""Data preparation for the Gaussian embedder: pairs from CSV, JSON/JSONL or raw documents.

Inputs:

- CSV with a header ``query,positive[,negative]``;
- JSON (a list of objects) or JSONL (one object per line) with ``query``, ``positive`` and an
  optional ``negative``;
- raw documents (``.txt``: one document per paragraph, separated by blank lines; or a folder of
  ``.txt`` files; or, with ``"kind": "documents"`` passed explicitly, JSONL with a ``text`` field
  or another prose file such as ``.md``; structured suffixes like ``.json`` / ``.csv`` are refused).
  Synthetic pairs follow the inverse cloze task (Lee et al., ACL 2019): one sentence of the
  document is the query and the rest of the document the positive; a random other document *of
  the same split* is the optional negative (so no validation or test positive is ever a
  training negative).

Malformed rows (and bytes that are not UTF-8, lone surrogate escapes, keys repeated in one JSON
object) are reported with their line number (never skipped). Repeated documents are kept once.
The split is made by query: all pairs of a query text land in the same split. Outputs in
``output_dir``: ``train.jsonl``, ``val.jsonl``, ``test.jsonl`` and ``eval.json`` (``corpus``,
``queries`` with one id per distinct test query, ``qrels`` listing all of its positives, with
every document of every split in the corpus).
With a test fraction of 0, ``test.jsonl`` is empty and ``eval.json`` is built from the
*validation* queries (a warning says so): ``train --val-file val.jsonl`` then picks
``best_model/`` on the very queries ``evaluate`` reports, an optimistic score.
The file readers are :mod:`.gaussian_files` (re-exported here).
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import re
import stat
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rag_relax_plugins._io import atomic_write_text
from rag_relax_plugins.training.gaussian_files import (
    DocumentsNotPairs,
    Pair,
    load_eval_file,
    load_pairs,
    read_documents,
)

__all__ = [
    "Pair",
    "add_negatives",
    "load_eval_file",
    "load_pairs",
    "prepare_data",
    "read_documents",
    "split_pairs",
    "synthesize_pairs",
]

log = logging.getLogger(__name__)

# a sentence ends at . ! ? and whitespace, except after an initial ("George A. Smith", "e.g.") or a
# common abbreviation ("St. Louis", "Dr. Who"): those cut queries such as "St." (Python's lookbehinds
# are fixed-width, so one per abbreviation)
_ABBREVIATIONS = ("Mr", "Ms", "Mrs", "Dr", "St", "Jr", "Sr", "Mt", "Co", "vs", "No", "Inc", "Ltd", "Gen", "Col",
                  "Rev", "Sgt", "Prof", "Capt", "Lt", "Gov", "Sen", "Rep", "Fr")
_SENT = re.compile(r"(?<=[.!?])(?<!\b[A-Za-z]\.)" + "".join(rf"(?<!\b{a}\.)" for a in _ABBREVIATIONS) + r"\s+")


def synthesize_pairs(docs: Sequence[str], *, negatives: bool = False, seed: int = 0) -> list[Pair]:
    """Inverse-cloze pairs (Lee et al., ACL 2019): a random sentence as query, the rest as positive.

    A document with a single sentence gives (first half of its words, the whole document). With
    ``negatives``, each pair's negative is the *positive* text of a random other document, so
    every text of the evaluation corpus has the same form (no full document that still contains
    a query sentence verbatim). The negatives come from all of ``docs``: split first and use
    :func:`add_negatives` per split to keep held-out documents out of the training negatives
    (what :func:`prepare_data` does).

    Args:
        docs: ``N`` non-empty documents.
        negatives: add a negative to every pair (needs ``N >= 2``): never a positive of the
            pair's query text (``None`` when no other document is left).
        seed: seed of the sentence and negative choices.
    """
    if len(docs) == 0:
        raise ValueError("docs must not be empty")
    if negatives and len(docs) < 2:
        raise ValueError("negatives need at least 2 documents")
    rng = random.Random(seed)
    base: list[tuple[str, str]] = []
    for doc in docs:
        sents = [s for s in _SENT.split(doc) if s.strip()]
        if len(sents) >= 2:
            j = rng.randrange(len(sents))
            base.append((sents[j], " ".join(sents[:j] + sents[j + 1 :])))
        else:
            words = doc.split()
            base.append((" ".join(words[: max(1, len(words) // 2)]), doc))
    relevant: dict[str, set[str]] = {}  # query text -> the positives of its documents
    for query, positive in base:
        relevant.setdefault(query, set()).add(positive)
    redraw = random.Random(f"synthesize_pairs/{seed}")  # only for a draw that hit a positive of the query
    pairs = []
    for i, (query, positive) in enumerate(base):
        neg = None
        if negatives:
            k = rng.randrange(len(base) - 1)
            neg = base[k if k < i else k + 1][1]
            if neg in relevant[query]:  # a repeated document, or two with one query: both relevant to it
                allowed = [b[1] for j, b in enumerate(base) if j != i and b[1] not in relevant[query]]
                neg = allowed[redraw.randrange(len(allowed))] if allowed else None
        pairs.append(Pair(query, positive, neg))
    return pairs


def add_negatives(pairs: Sequence[Pair], *, pool: Sequence[Pair] | None = None, seed: int = 0) -> list[Pair]:
    """Give every pair the positive of another pair as its negative (same form as the corpus).

    Args:
        pairs: the pairs of one split; their existing negatives are replaced.
        pool: pairs whose positives are drawn from; ``None`` uses ``pairs`` themselves. A pair's
            own positive is never its negative, nor is another positive of the same query text
            (two documents with one synthetic query, e.g. boilerplate: both are relevant to it).
        seed: seed of the draws.

    Returns:
        New pairs; a pair whose pool holds no other allowed positive keeps ``negative=None``.
    """
    source = pairs if pool is None else pool
    candidates = list(dict.fromkeys(p.positive for p in source))
    index = {c: i for i, c in enumerate(candidates)}
    relevant: dict[str, set[str]] = {}  # query text -> its positives (in the split and the pool)
    for p in (*pairs, *source):
        relevant.setdefault(p.query, set()).add(p.positive)
    rng = random.Random(seed)
    redraw = random.Random(f"add_negatives/{seed}")  # only for a draw that hit another positive of the query
    out = []
    for p in pairs:
        own = index.get(p.positive)
        n = len(candidates) - (own is not None)  # candidates other than the pair's own positive
        neg = None
        if n > 0:  # the draw of every pair, as before (later pairs' draws do not move)
            k = rng.randrange(n)
            neg = candidates[k + 1 if own is not None and k >= own else k]
        others = relevant[p.query] - {p.positive}
        if neg is not None and neg in others:  # uniform over the allowed texts
            allowed = [c for c in candidates if c != p.positive and c not in others]
            neg = allowed[redraw.randrange(len(allowed))] if allowed else None
        out.append(Pair(p.query, p.positive, neg))
    return out


def split_pairs(pairs: Sequence[Pair], fractions: tuple[float, float, float] = (0.8, 0.1, 0.1), *, seed: int = 0) -> tuple[list[Pair], list[Pair], list[Pair]]:
    """Seeded split into train / val / test *by query*; val and test get >= 1 query when possible.

    Pairs are grouped by query text first (a query with several positives is one group), the
    groups are shuffled and the fractions count groups: every pair of a query lands in the same
    split, so no test query is also a training query. With one pair per query this is the
    row-level split of earlier versions (same seed, same order).

    Raises:
        ValueError: bad fractions, fewer than 3 distinct queries, or no training query left.
    """
    if (len(fractions) != 3 or not all(math.isfinite(f) and f >= 0 for f in fractions)
            or abs(sum(fractions) - 1.0) > 1e-6):
        raise ValueError(f"fractions must be three non-negative numbers summing to 1, got {fractions}")
    groups: dict[str, list[Pair]] = {}
    for p in pairs:
        groups.setdefault(p.query, []).append(p)
    if len(groups) < 3:
        raise ValueError(f"need at least 3 distinct queries to split, got {len(groups)} (in {len(pairs)} pairs)")
    keys = list(groups)
    order = list(range(len(keys)))
    random.Random(seed).shuffle(order)
    n = len(keys)
    n_val = max(1, round(n * fractions[1])) if fractions[1] > 0 else 0
    n_test = max(1, round(n * fractions[2])) if fractions[2] > 0 else 0
    n_train = n - n_val - n_test
    if n_train < 1:
        raise ValueError(f"fractions {fractions} leave no training query out of {n}")

    def flat(idx: list[int]) -> list[Pair]:
        return [p for i in idx for p in groups[keys[i]]]

    return flat(order[:n_train]), flat(order[n_train : n_train + n_val]), flat(order[n_train + n_val :])


def build_eval(test: Sequence[Pair], everything: Sequence[Pair]) -> dict[str, Any]:
    """Evaluation set: every document of ``everything`` as the corpus, ``test`` queries and qrels.

    One qid per distinct query text of ``test``; its qrels list every positive it has there.
    """
    ids: dict[str, str] = {}
    for p in everything:
        for text in (p.positive, p.negative):
            if text is not None and text not in ids:
                ids[text] = f"d{len(ids)}"
    qids: dict[str, str] = {}
    qrels: dict[str, dict[str, int]] = {}
    for p in test:
        qid = qids.setdefault(p.query, f"q{len(qids)}")
        qrels.setdefault(qid, {})[ids[p.positive]] = 1
    return {"corpus": {v: k for k, v in ids.items()}, "queries": {v: k for k, v in qids.items()}, "qrels": qrels}


def _jsonl(pairs: Sequence[Pair]) -> str:
    return "".join(json.dumps(p.to_dict(), ensure_ascii=False) + "\n" for p in pairs)


def prepare_data(
    input_path: str | os.PathLike[str],
    output_dir: str | os.PathLike[str],
    *,
    kind: str = "auto",
    fractions: tuple[float, float, float] = (0.8, 0.1, 0.1),
    negatives: bool = False,
    seed: int = 0,
    overwrite: bool = False,
) -> dict[str, Path]:
    """Read ``input_path``, split it and write train/val/test JSONL plus ``eval.json``.

    Args:
        input_path: CSV/JSON/JSONL pairs, or raw documents.
        output_dir: created if needed.
        kind: ``"pairs"``, ``"documents"`` or ``"auto"`` (``.txt`` and folders are documents).
        fractions: train / val / test fractions.
        negatives: for documents, add as the negative a random other document of the same
            split (a single-pair validation or test split draws from the training documents,
            never the reverse); refused for pairs, which bring their own.
        seed: shuffling and synthesis seed.
        overwrite: replace output files that already exist (refused otherwise).

    Returns:
        ``{"train", "val", "test", "eval"}`` -> written paths.

    Raises:
        ValueError: an output file is the input itself (never overwritten), output files exist and
            ``overwrite`` is False, ``negatives`` with pairs, a malformed input (with its line),
            or the fractions leave no validation or test pair for ``eval.json``; nothing is
            written then, and earlier outputs are kept (every new file is built and encoded
            before any earlier one is removed).
    """
    src = Path(input_path)
    out = Path(output_dir)
    paths = {"train": out / "train.jsonl", "val": out / "val.jsonl", "test": out / "test.jsonl", "eval": out / "eval.json"}
    # a folder input is read as its *.txt files, never the .jsonl / .json written here
    clash = [str(p) for p in paths.values() if src.is_file() and p.resolve() == src.resolve()]
    if clash:
        raise ValueError(f"refusing to write {', '.join(clash)}: it is an input file; choose another --output")
    odd = [str(p) for p in paths.values() if p.exists() and not p.is_file()]  # a dangling link is replaced
    if odd:  # refused before the earlier files are removed (an overwrite replaces all four or none)
        raise ValueError(f"refusing to write {', '.join(odd)}: not a regular file; move it away first")
    existing = [str(p) for p in paths.values() if p.exists()]
    if existing and not overwrite:
        raise ValueError(f"{', '.join(existing)} already exist; pass overwrite=True (--overwrite) to replace them")
    guessed = kind == "auto"
    if guessed:
        kind = "documents" if src.is_dir() or src.suffix.lower() == ".txt" else "pairs"
    if kind == "pairs":
        if negatives:
            raise ValueError("negatives=True (--negatives) applies to raw documents only (--kind documents); "
                             "a pairs file brings its own optional 'negative' field")
        try:
            pairs = load_pairs(src)
        except DocumentsNotPairs as exc:  # a .md, or JSONL with 'text': documents the guess took for pairs
            if not guessed:
                raise
            raise ValueError(f"{exc}; {src} was read as pairs (--kind auto reads only .txt files and folders as "
                             "documents): for documents pass kind='documents' (--kind documents)") from exc
    elif kind == "documents":
        docs = read_documents(src)
        if negatives and len(docs) < 2:
            raise ValueError("negatives need at least 2 documents")
        pairs = synthesize_pairs(docs, seed=seed)
    else:
        raise ValueError(f"kind must be 'auto', 'pairs' or 'documents', got {kind!r}")
    train, val, test = split_pairs(pairs, fractions, seed=seed)
    if kind == "documents" and negatives:  # within each split: held-out positives never train
        train = add_negatives(train, seed=seed)
        val, test = (add_negatives(part, pool=part if len(part) > 1 else part + train, seed=seed + k)
                     for k, part in ((1, val), (2, test)))
    if not val and not test:
        raise ValueError(f"fractions {fractions} leave no validation or test pair to build eval.json from")
    ev = build_eval(test if test else val, pairs)
    texts = {"train": _jsonl(train), "val": _jsonl(val), "test": _jsonl(test),
             "eval": json.dumps(ev, indent=1, allow_nan=False) + "\n"}
    # every text is encoded before anything is removed: one UTF-8 cannot hold (a lone surrogate past
    # the readers' checks) fails here with the earlier files intact, not after they were deleted
    for text in texts.values():
        text.encode("utf-8")
    out.mkdir(parents=True, exist_ok=True)
    # the earlier files go first: an interrupt then leaves some files missing, never new splits
    # beside an old eval.json (whose test queries the new train.jsonl may hold); each new file
    # gets the mode the earlier one had (a chmod 600 kept, as every rewrite of the package does)
    modes = {name: stat.S_IMODE(path.stat().st_mode) for name, path in paths.items() if path.is_file()}
    for path in paths.values():
        path.unlink(missing_ok=True)
    for name, path in paths.items():
        atomic_write_text(path, texts[name], mode=modes.get(name))
    if len(val) == 1:  # too few for train(val_file=...), which needs an in-batch negative
        log.warning("fractions %s leave 1 validation pair: train cannot select best_model by it (no in-batch "
                    "negative) and uses the training loss; raise the validation fraction to use %s as --val-file",
                    fractions, paths["val"])
    if not test:
        log.warning("fractions %s leave no test pair: %s is built from the validation queries, so a run trained "
                    "with --val-file %s picks best_model on the queries evaluate then reports (an optimistic "
                    "score); keep a test fraction above 0 for a held-out evaluation", fractions, paths["eval"],
                    paths["val"])
    return paths
