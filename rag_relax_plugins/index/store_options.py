"""The build options of the index a vector store creates at its first add, as the store saves them.

The LangChain and LlamaIndex stores build their :class:`~rag_relax_plugins.index.MoLIndex` (a
cosine head of the embedding's width) at the first add, with the ``first_stage`` and
``cache_dtype`` they were given. A store saved before that add has no index folder to hold them:
the store's own file records them (:func:`options_json`), so that the reloaded store builds the
index it would have built (:func:`read_options`). The device is not saved: the loader's applies.
"""

from __future__ import annotations

from typing import Any

from rag_relax_plugins.index.first_stage import FirstStageConfig, first_stage_config

__all__ = ["options_json", "read_options"]


def options_json(index_kwargs: dict[str, Any]) -> dict[str, Any]:
    """``{"first_stage": <FirstStageConfig as a dict>, "cache_dtype": str}`` of a store's index
    options (``first_stage`` a kind or a :class:`FirstStageConfig`)."""
    return {"first_stage": first_stage_config(index_kwargs["first_stage"]).to_dict(),
            "cache_dtype": index_kwargs["cache_dtype"]}


def read_options(value: object, where: str) -> dict[str, Any]:
    """The ``first_stage`` (a :class:`FirstStageConfig`) and ``cache_dtype`` that
    :func:`options_json` wrote, checked.

    Raises:
        ValueError: not such an object, or an invalid option (naming ``where``).
    """
    from rag_relax_plugins.index.mol_index import MoLIndex

    if not isinstance(value, dict) or set(value) != {"first_stage", "cache_dtype"}:
        raise ValueError(f"{where}: 'index_options' must be an object with 'first_stage' and 'cache_dtype', got {value!r}")
    try:
        config = FirstStageConfig.from_dict(value["first_stage"])
        MoLIndex.check_options(config, value["cache_dtype"], "cpu")
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{where}: invalid 'index_options': {exc}") from exc
    return {"first_stage": config, "cache_dtype": value["cache_dtype"]}
