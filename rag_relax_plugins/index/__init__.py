"""The MoL / RAILS index (Ding & Zhai, "Retrieval with Learned Similarities", WWW 2025).

Public names::

    from rag_relax_plugins.index import (
        MoLIndex, FirstStageConfig,
        BruteForce, TopKPerEmbd, TopKAvg, Combined, ExactTwoPass,
    )

See ``docs/mol.md`` for the algorithms and ``docs/dev/mol_api.md`` for the API contract.
"""

from __future__ import annotations

from rag_relax_plugins.index.first_stage import FirstStageConfig
from rag_relax_plugins.index.mol_index import Filter, MoLIndex
from rag_relax_plugins.index.persistence import FORMAT_VERSION
from rag_relax_plugins.index.strategies import (
    BruteForce,
    Combined,
    ExactTwoPass,
    Strategy,
    TopKAvg,
    TopKPerEmbd,
)

__all__ = [
    "FORMAT_VERSION",
    "BruteForce",
    "Combined",
    "ExactTwoPass",
    "Filter",
    "FirstStageConfig",
    "MoLIndex",
    "Strategy",
    "TopKAvg",
    "TopKPerEmbd",
]
