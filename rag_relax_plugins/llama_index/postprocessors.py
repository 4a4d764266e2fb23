"""LlamaIndex node postprocessors over any :class:`~rag_relax_plugins.rerankers.base.BaseReranker`.

One implementation (:class:`RerankerPostprocessor`) does the LlamaIndex side; :class:`MaxSimRerank`
and :class:`GumbelRerank` only say how to build their reranker from a saved folder. They are
pydantic components: ``to_dict()`` / ``from_dict()`` round-trip their configuration (a reranker
passed as an instance is not serialised: its config says so, ``reranker_instance: true``, and
``from_dict`` then needs ``reranker=`` again instead of silently building an untrained one; pass
``model_path`` for a declarable config). Unknown keyword arguments are refused.
"""

from __future__ import annotations

import os
from typing import Any, ClassVar

from llama_index.core.bridge.pydantic import (
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationInfo,
    field_validator,
    model_validator,
)
from llama_index.core.callbacks import CBEventType, EventPayload
from llama_index.core.postprocessor.types import BaseNodePostprocessor
from llama_index.core.schema import MetadataMode, NodeWithScore, QueryBundle

from rag_relax_plugins.llama_index._class_name import without_own_class_name
from rag_relax_plugins.rerankers.base import (
    ADAPTER_FIELDS,
    OWN_VALUE_FIELDS,
    BaseReranker,
    adapter_field,
    check_unused_build_fields,
    reranker_own_fields,
)

__all__ = ["GumbelRerank", "MaxSimRerank", "RerankerPostprocessor"]

RETRIEVAL_SCORE_KEY = "retrieval_score"


class RerankerPostprocessor(BaseNodePostprocessor):
    """Reorder retrieved nodes with a reranker and keep the best ``top_n``.

    Returned ``NodeWithScore`` objects are new; their ``score`` is the reranker's raw score. With
    ``keep_retrieval_score=True`` the node is copied with the incoming (retrieval) score in
    ``metadata["retrieval_score"]`` (excluded from the embed and LLM metadata modes, so later
    rerankers and the LLM do not read it); the caller's nodes are never mutated. Node text is
    taken with ``MetadataMode.EMBED`` (as LlamaIndex's own rerankers do).

    Setup:
        ``pip install "rag-relax-plugins[llamaindex,st]"``

    Key init args:
        reranker: a ready :class:`~rag_relax_plugins.rerankers.base.BaseReranker`.
        top_n: nodes kept (``None``: all, reordered). Default 3.
        keep_retrieval_score: copy the retrieval score into the node metadata.

    Instantiate:
        .. code-block:: python

            query_engine = index.as_query_engine(
                similarity_top_k=10, node_postprocessors=[RerankerPostprocessor(reranker=r, top_n=3)]
            )
    """

    model_config = ConfigDict(arbitrary_types_allowed=True, extra="forbid", validate_assignment=True)

    _build_fields: ClassVar[tuple[str, ...]] = ()  # fields read only by _build_reranker
    top_n: int | None = Field(default=3, description="nodes kept after reranking (None: all)")
    keep_retrieval_score: bool = Field(
        default=False, description="copy the retrieval score into metadata['retrieval_score']"
    )
    reranker_instance: bool = Field(
        default=False,
        description="built around a reranker= instance, which to_dict cannot hold (set by __init__)",
    )
    _reranker: BaseReranker = PrivateAttr()

    def __init__(self, *, reranker: BaseReranker | None = None, **kwargs: Any) -> None:
        from_instance = bool(kwargs.pop("reranker_instance", False))  # a dump of an instance-built one
        if reranker is None and from_instance:
            raise ValueError(
                f"this {type(self).__name__} configuration was saved from a postprocessor built around a "
                "reranker instance, which is not serialised: pass reranker= again (from_dict(data, "
                "reranker=...)), or build it with model_path= for a self-contained config"
            )
        kwargs["reranker_instance"] = reranker is not None
        own = {} if reranker is None else reranker_own_fields(reranker, self._build_fields)
        if from_instance:  # its batch size was the earlier reranker's, not a choice: the new one's stands
            kwargs = {k: v for k, v in kwargs.items() if k not in OWN_VALUE_FIELDS}
        super().__init__(**{**own, **kwargs})  # the field reports the reranker's own batch size
        if reranker is None:
            reranker = self._build_reranker()
        else:
            check_unused_build_fields(self, self._build_fields, own)
        if not isinstance(reranker, BaseReranker):
            raise TypeError(f"reranker must be a BaseReranker, got {type(reranker).__name__}")
        self._reranker = reranker

    @model_validator(mode="before")
    @classmethod
    def _drop_class_name(cls, data: Any) -> Any:
        """``model_dump()`` adds LlamaIndex's ``class_name``: accept it back (it names this class)."""
        return without_own_class_name(cls, data)

    @field_validator(*ADAPTER_FIELDS, mode="before", check_fields=False)  # some on subclasses only
    @classmethod
    def _shared_field(cls, value: object, info: ValidationInfo) -> object:
        return adapter_field(info.field_name or "", value)

    @classmethod
    def class_name(cls) -> str:
        return "RerankerPostprocessor"

    def _build_reranker(self) -> BaseReranker:
        raise ValueError(f"{type(self).__name__} needs reranker= (a BaseReranker instance)")

    @property
    def reranker(self) -> BaseReranker:
        """The wrapped reranker."""
        return self._reranker

    @property
    def model_name(self) -> str:
        """What the ``RERANKING`` callback event names as the model: the saved model's folder
        (``model_path``), else the wrapped reranker's class name."""
        path = getattr(self, "model_path", None)
        return str(path) if path else type(self._reranker).__name__

    def relevance(self, score: float) -> float:
        """Map a raw score to ``[0, 1]``: the wrapped reranker's ``relevance_of(score)`` (the
        sigmoid unless the reranker knows its score's range)."""
        return self._reranker.relevance_of(score)

    def _postprocess_nodes(
        self,
        nodes: list[NodeWithScore],
        query_bundle: QueryBundle | None = None,
    ) -> list[NodeWithScore]:
        if query_bundle is None:
            raise ValueError("query_bundle is required: pass query_bundle= or query_str=")
        if not isinstance(query_bundle.query_str, str):
            raise TypeError(f"query_bundle.query_str must be a str, got {type(query_bundle.query_str).__name__}")
        if isinstance(nodes, (str, bytes)) or not isinstance(nodes, (list, tuple)):
            raise TypeError(f"nodes must be a list of NodeWithScore, got {type(nodes).__name__}")
        texts = []
        for i, n in enumerate(nodes):
            if not isinstance(n, NodeWithScore):
                raise TypeError(f"nodes[{i}] must be a NodeWithScore, got {type(n).__name__}")
            text = n.node.get_content(metadata_mode=MetadataMode.EMBED)
            if not isinstance(text, str):
                raise TypeError(f"nodes[{i}] content must be a str, got {type(text).__name__}")
            texts.append(text)
        if not texts:
            return []
        with self.callback_manager.event(
            CBEventType.RERANKING,
            payload={
                EventPayload.NODES: nodes,
                EventPayload.QUERY_STR: query_bundle.query_str,
                EventPayload.TOP_K: self.top_n,
                EventPayload.MODEL_NAME: self.model_name,  # as core's rerankers label the event
            },
        ) as event:
            out = []
            for r in self._reranker.rerank(query_bundle.query_str, texts, top_n=self.top_n):
                src = nodes[r.index]
                node = src.node
                if self.keep_retrieval_score:  # an earlier reranking stage's copy keeps the retriever's score
                    node = node.model_copy(update={
                        "metadata": {RETRIEVAL_SCORE_KEY: src.score, **node.metadata},
                        "excluded_embed_metadata_keys": _with_key(node.excluded_embed_metadata_keys),
                        "excluded_llm_metadata_keys": _with_key(node.excluded_llm_metadata_keys),
                    })
                out.append(NodeWithScore(node=node, score=r.score))
            event.on_end(payload={EventPayload.NODES: out})
        return out


def _with_key(keys: list[str]) -> list[str]:
    """``keys`` plus :data:`RETRIEVAL_SCORE_KEY` (a new list)."""
    return list(keys) if RETRIEVAL_SCORE_KEY in keys else [*keys, RETRIEVAL_SCORE_KEY]


class MaxSimRerank(RerankerPostprocessor):
    """ColBERT-style late-interaction reranking (:class:`rag_relax_plugins.rerankers.maxsim.MaxSimReranker`).

    Node scores are the mean over query tokens of the best cosine, in ``[-1, 1]``
    (:meth:`relevance` maps them to ``[0, 1]`` as ``(s + 1) / 2``).

    Key init args:
        model_path: folder written by ``MaxSimReranker.save`` / ``rag-relax train-maxsim``
            (``None`` with no ``reranker``: untrained MaxSim over the offline MiniLM).
        reranker: a ready reranker instead of ``model_path``.
        device, batch_size, top_n, keep_retrieval_score.

    Instantiate:
        .. code-block:: python

            from rag_relax_plugins.llama_index import MaxSimRerank
            engine = index.as_query_engine(
                similarity_top_k=10,
                node_postprocessors=[MaxSimRerank(model_path="runs/maxsim/best_model", top_n=3)],
            )
    """

    # build fields: read once, to build the reranker, so frozen (a later assignment would not reach it)
    model_path: str | None = Field(default=None, frozen=True, description="saved MaxSim reranker folder")
    device: str | None = Field(default=None, frozen=True, description="cpu, cuda, mps or None")
    batch_size: int = Field(default=32, ge=1, strict=True, frozen=True, description="texts per forward pass")
    _build_fields: ClassVar[tuple[str, ...]] = ("model_path", "device", "batch_size")

    def __init__(self, model_path: str | os.PathLike[str] | None = None, **kwargs: Any) -> None:
        super().__init__(model_path=None if model_path is None else str(model_path), **kwargs)

    @classmethod
    def class_name(cls) -> str:
        return "MaxSimRerank"

    def _build_reranker(self) -> BaseReranker:
        from rag_relax_plugins.rerankers.maxsim import MaxSimConfig, MaxSimReranker

        if self.model_path is None:
            return MaxSimReranker(MaxSimConfig(projection_dim=None), device=self.device, batch_size=self.batch_size)
        return MaxSimReranker.load(self.model_path, device=self.device, batch_size=self.batch_size)


class GumbelRerank(RerankerPostprocessor):
    """Reranking with a (G-Rerank trained) Gumbel reranker's scorer, deterministic at inference.

    Node scores are the scorer's raw scores; :meth:`relevance` is the wrapped reranker's own
    mapping (sigmoid of the cross-encoder logit, ``(cos + 1) / 2`` for the bi-encoder scorer).

    Key init args:
        model_path: folder written by ``GumbelReranker.save_pretrained`` /
            ``rag-relax train-reranker`` (``None`` with no ``reranker``: an untrained scorer).
        reranker: a ready :class:`rag_relax_plugins.rerankers.gumbel.GumbelReranker` (or any
            ``BaseReranker``).
        device, top_n, keep_retrieval_score.

    Instantiate:
        .. code-block:: python

            from rag_relax_plugins.llama_index import GumbelRerank
            engine = index.as_query_engine(
                similarity_top_k=10,
                node_postprocessors=[GumbelRerank(model_path="runs/grerank/final_model", top_n=3)],
            )
    """

    model_path: str | None = Field(default=None, frozen=True, description="saved Gumbel reranker folder")
    device: str | None = Field(default=None, frozen=True, description="cpu, cuda, mps or None")
    _build_fields: ClassVar[tuple[str, ...]] = ("model_path", "device")

    def __init__(self, model_path: str | os.PathLike[str] | None = None, **kwargs: Any) -> None:
        super().__init__(model_path=None if model_path is None else str(model_path), **kwargs)

    @classmethod
    def class_name(cls) -> str:
        return "GumbelRerank"

    def _build_reranker(self) -> BaseReranker:
        from rag_relax_plugins.rerankers.gumbel import GumbelReranker

        if self.model_path is None:
            return GumbelReranker(device=self.device)
        return GumbelReranker.from_pretrained(self.model_path, device=self.device)

