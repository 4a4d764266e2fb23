"""Loaders for the shared data sets (HotpotQA, SNLI, MovieLens-100k); no torch at import.

The data folder is ``$RAG_RELAX_DATA``, else ``../shared/data`` (see :mod:`.paths`). Every loader
also takes an explicit path.
"""

from __future__ import annotations

from rag_relax_plugins.datasets.hotpotqa import (
    HotpotEvidence,
    HotpotExample,
    hotpot_open_corpus,
    load_hotpotqa_distractor,
    load_hotpotqa_evidence,
)
from rag_relax_plugins.datasets.movielens import (
    Movie,
    MovieLens,
    Rating,
    User,
    leave_last_out,
    load_movielens,
)
from rag_relax_plugins.datasets.paths import DATA_ENV_VAR, data_root
from rag_relax_plugins.datasets.snli import SNLI_LABELS, SNLIPair, load_snli

__all__ = [
    "DATA_ENV_VAR",
    "SNLI_LABELS",
    "HotpotEvidence",
    "HotpotExample",
    "Movie",
    "MovieLens",
    "Rating",
    "SNLIPair",
    "User",
    "data_root",
    "hotpot_open_corpus",
    "leave_last_out",
    "load_hotpotqa_distractor",
    "load_hotpotqa_evidence",
    "load_movielens",
    "load_snli",
]
