"""SNLI loader (Bowman et al., EMNLP 2015; CC BY-SA 4.0): gzip JSON lines of premise/hypothesis pairs.

Files: ``snli/snli_1.0_train_100k.jsonl.gz`` (100,000 pairs) and ``snli/snli_1.0_test.jsonl.gz``
(10,000 pairs). ``gold_label`` is ``entailment``, ``neutral``, ``contradiction`` or ``-`` (no
annotator majority); ``-`` pairs are kept unless ``labels`` leaves them out.
"""

from __future__ import annotations

import os
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

from rag_relax_plugins.datasets._io import check_limit, iter_jsonl, require_keys
from rag_relax_plugins.datasets.paths import data_root, require_file

__all__ = ["SNLI_LABELS", "SNLIPair", "load_snli"]

SNLI_LABELS = ("entailment", "neutral", "contradiction", "-")
_FILES = {"train": "snli_1.0_train_100k.jsonl.gz", "test": "snli_1.0_test.jsonl.gz"}


@dataclass(frozen=True)
class SNLIPair:
    """One SNLI pair: ``premise`` (sentence1), ``hypothesis`` (sentence2), ``label`` (gold_label)."""

    premise: str
    hypothesis: str
    label: str
    pair_id: str = ""


def load_snli(
    split: str = "train",
    path: str | os.PathLike[str] | None = None,
    limit: int | None = None,
    labels: Collection[str] | None = None,
) -> list[SNLIPair]:
    """Load SNLI pairs.

    Args:
        split: ``"train"`` (the 100k sample) or ``"test"``.
        path: the ``.jsonl.gz`` file, a folder holding ``snli/<file>`` or the ``snli`` folder itself;
            default ``data_root()``.
        limit: stop after this many kept pairs.
        labels: keep only these gold labels, e.g. ``("entailment", "neutral", "contradiction")``
            to drop the ``-`` pairs; ``None`` keeps all.

    Raises:
        ValueError: unknown ``split`` or label, or a malformed line (with its number).
        FileNotFoundError: no such file (names the path and ``RAG_RELAX_DATA``).
    """
    if split not in _FILES:
        raise ValueError(f"split must be one of {sorted(_FILES)}, got {split!r}")
    limit = check_limit(limit)
    keep: frozenset[str] | None = None
    if labels is not None:
        if isinstance(labels, str):
            raise TypeError("labels must be a collection of label strings, not a single str")
        keep = frozenset(labels)
        unknown = sorted(keep - set(SNLI_LABELS))
        if unknown:
            raise ValueError(f"labels must be among {SNLI_LABELS}, got unknown {unknown}")
    default = Path("snli") / _FILES[split]
    if path is None:
        file = require_file(data_root() / default, f"SNLI {split} file")
    else:
        p = Path(path)
        if p.is_dir():  # the data root (holding snli/) or the snli folder itself
            p = p / default if (p / default).is_file() else p / default.name
        file = require_file(p, f"SNLI {split} file")
    out: list[SNLIPair] = []
    if limit == 0:
        return out
    for n, obj in iter_jsonl(file):
        require_keys(obj, ("sentence1", "sentence2", "gold_label"), file, n)
        label = obj["gold_label"]
        if label not in SNLI_LABELS:
            raise ValueError(f"{file}: line {n} has unknown gold_label {label!r}")
        if keep is not None and label not in keep:
            continue
        premise, hypothesis = obj["sentence1"], obj["sentence2"]
        if not isinstance(premise, str) or not isinstance(hypothesis, str):
            raise ValueError(f"{file}: line {n} sentence1/sentence2 must be strings")
        pair_id = obj.get("pairID")  # optional: missing or null is ""
        if pair_id is not None and not isinstance(pair_id, str):
            raise ValueError(f"{file}: line {n} pairID must be a string, got {pair_id!r}")
        out.append(SNLIPair(premise=premise, hypothesis=hypothesis, label=label, pair_id=pair_id or ""))
        if limit is not None and len(out) >= limit:
            break
    return out
