"""LangChain compressors (GumbelReranker, MaxSimReranker) over BaseReranker: contract and pipeline."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import torch

pytest.importorskip("langchain_core")

from langchain_core.documents import BaseDocumentCompressor, Document
from langchain_core.embeddings import DeterministicFakeEmbedding
from langchain_core.vectorstores import InMemoryVectorStore

from rag_relax_plugins.embedders.hashing import HashingEncoder
from rag_relax_plugins.langchain import GumbelReranker, MaxSimReranker
from rag_relax_plugins.langchain.compressors import RerankerCompressor
from rag_relax_plugins.rerankers.base import BaseReranker
from rag_relax_plugins.rerankers.maxsim import MaxSimConfig
from rag_relax_plugins.rerankers.maxsim import MaxSimReranker as MaxSimModel


class OverlapReranker(BaseReranker):
    """Test double: score = number of distinct query words in the document (deterministic)."""

    def __init__(self) -> None:
        self.calls = 0

    def score(self, query: str, documents: Sequence[str]) -> torch.Tensor:
        self.calls += 1
        q = set(query.lower().split())
        return torch.tensor([float(len(q & set(d.lower().split()))) for d in documents])


TEXTS = [
    "bananas are yellow",
    "the capital of france is paris",
    "paris has the eiffel tower",
    "tokyo is the capital of japan",
]
QUERY = "what is the capital of france"


def docs() -> list[Document]:
    return [Document(page_content=t, metadata={"i": i, "tags": ["x"]}, id=f"d{i}") for i, t in enumerate(TEXTS)]


def maxsim_model() -> MaxSimModel:
    return MaxSimModel(MaxSimConfig(projection_dim=None, token_dim=64), encoder=HashingEncoder(dim=64, seed=1))


@pytest.mark.parametrize("cls", [RerankerCompressor, MaxSimReranker, GumbelReranker])
def test_is_a_document_compressor(cls: type) -> None:
    comp = cls(reranker=OverlapReranker(), top_n=2)
    assert isinstance(comp, BaseDocumentCompressor)
    assert isinstance(comp, RerankerCompressor) and isinstance(comp.reranker, OverlapReranker)


def test_order_top_n_scores_and_no_mutation() -> None:
    inputs = docs()
    snapshot = copy.deepcopy(inputs)
    comp = RerankerCompressor(reranker=OverlapReranker(), top_n=2)
    out = comp.compress_documents(inputs, QUERY)
    # overlaps with the query: [0, 5, 1, 4] -> docs 1 then 3
    assert [d.id for d in out] == ["d1", "d3"]
    assert [d.metadata["rerank_score"] for d in out] == [5.0, 4.0]
    assert all(0.0 <= d.metadata["relevance_score"] <= 1.0 for d in out)
    assert out[0].metadata["relevance_score"] > out[1].metadata["relevance_score"]
    assert out[0].metadata["i"] == 1 and out[0].page_content == TEXTS[1]
    assert inputs == snapshot  # caller's documents untouched
    assert "relevance_score" not in inputs[1].metadata
    out[0].metadata["tags"].append("y")  # a shallow copy of metadata: values are shared,
    assert inputs[1].metadata["tags"] == ["x", "y"]  # the dict itself is new
    assert out[0].metadata is not inputs[1].metadata


def test_top_n_none_keeps_all_and_is_deterministic() -> None:
    comp = RerankerCompressor(reranker=OverlapReranker(), top_n=None)
    a = comp.compress_documents(docs(), QUERY)
    b = comp.compress_documents(docs(), QUERY)
    assert [d.id for d in a] == ["d1", "d3", "d2", "d0"]  # ties keep input order
    assert a == b


def test_bad_input() -> None:
    comp = RerankerCompressor(reranker=OverlapReranker(), top_n=2)
    assert comp.compress_documents([], QUERY) == []
    with pytest.raises(ValueError, match="top_n"):
        RerankerCompressor(reranker=OverlapReranker(), top_n=0)
    with pytest.raises(ValueError, match="top_n"):
        MaxSimReranker(reranker=OverlapReranker(), top_n=-3)
    with pytest.raises(TypeError, match=r"documents\[1\]"):
        comp.compress_documents([docs()[0], "plain string"], QUERY)  # type: ignore[list-item]
    bad = Document.model_construct(page_content=123, metadata={})  # bypasses pydantic validation
    with pytest.raises(TypeError, match=r"documents\[0\]\.page_content"):
        comp.compress_documents([bad], QUERY)
    with pytest.raises(TypeError, match="query"):
        comp.compress_documents(docs(), 42)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="documents"):
        comp.compress_documents("not a list", QUERY)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="reranker"):
        RerankerCompressor(reranker=object())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="reranker"):
        RerankerCompressor(top_n=2)


async def test_async_matches_sync() -> None:
    comp = MaxSimReranker(reranker=maxsim_model(), top_n=3)
    sync = comp.compress_documents(docs(), QUERY)
    got = await comp.acompress_documents(docs(), QUERY)
    assert got == sync
    both = await asyncio.gather(comp.acompress_documents(docs(), QUERY), comp.acompress_documents(docs(), "tokyo"))
    assert both[0] == sync and both[1][0].id == "d3"


def test_maxsim_relevance_mapping() -> None:
    comp = MaxSimReranker(reranker=maxsim_model(), top_n=None)
    out = comp.compress_documents(docs(), QUERY)
    for d in out:
        assert d.metadata["relevance_score"] == pytest.approx((d.metadata["rerank_score"] + 1) / 2)
    assert out[0].id == "d1"


def test_maxsim_from_saved_folder(tmp_path: Path, minilm_path: str) -> None:
    # a saved folder is loaded through model_path (MiniLM backbone, loaded once here)
    model = MaxSimModel(MaxSimConfig(backbone=minilm_path, projection_dim=32, max_seq_length=32), device="cpu")
    model.save(tmp_path / "m")
    comp = MaxSimReranker(model_path=tmp_path / "m", device="cpu", top_n=2)
    assert comp.model_path == str(tmp_path / "m")
    out = comp.compress_documents(docs(), QUERY)
    assert len(out) == 2
    ref = model.rerank(QUERY, TEXTS, top_n=2)
    assert [d.id for d in out] == [f"d{r.index}" for r in ref]


def test_in_contextual_compression_retriever() -> None:
    from langchain_classic.retrievers import ContextualCompressionRetriever

    store = InMemoryVectorStore(DeterministicFakeEmbedding(size=16))
    store.add_documents(docs())
    base = store.as_retriever(search_kwargs={"k": 4})
    for comp in (RerankerCompressor(reranker=OverlapReranker(), top_n=2),
                 MaxSimReranker(reranker=maxsim_model(), top_n=2)):
        retriever = ContextualCompressionRetriever(base_compressor=comp, base_retriever=base)
        got = retriever.invoke(QUERY)
        assert len(got) == 2 and got[0].page_content == TEXTS[1]
        assert all("relevance_score" in d.metadata for d in got)
        # the vector store's own documents are unchanged
        assert all("relevance_score" not in d.metadata for d in store.get_by_ids(["d0", "d1", "d2", "d3"]))


async def test_in_retriever_chain_async() -> None:
    from langchain_classic.retrievers import ContextualCompressionRetriever
    from langchain_core.runnables import RunnableLambda

    store = InMemoryVectorStore(DeterministicFakeEmbedding(size=16))
    store.add_documents(docs())
    retriever = ContextualCompressionRetriever(
        base_compressor=GumbelReranker(reranker=OverlapReranker(), top_n=1),
        base_retriever=store.as_retriever(search_kwargs={"k": 4}),
    )
    chain: Any = retriever | RunnableLambda(_join)
    assert await chain.ainvoke(QUERY) == TEXTS[1]


def _join(ds: list[Document]) -> str:
    return " | ".join(d.page_content for d in ds)


def test_gumbel_from_saved_folder(tmp_path: Path, minilm_path: str) -> None:
    from rag_relax_plugins.rerankers.gumbel import GumbelReranker as GumbelModel
    from rag_relax_plugins.rerankers.gumbel import relevance

    model = GumbelModel(backbone=minilm_path, max_length=32, device="cpu", seed=3)
    model.save_pretrained(tmp_path / "g")
    comp = GumbelReranker(model_path=tmp_path / "g", device="cpu", top_n=3)
    out = comp.compress_documents(docs(), QUERY)
    ref = model.rerank(QUERY, TEXTS, top_n=3)
    assert [d.id for d in out] == [f"d{r.index}" for r in ref]
    assert [d.metadata["rerank_score"] for d in out] == pytest.approx([r.score for r in ref], abs=1e-5)
    assert out[0].metadata["relevance_score"] == pytest.approx(relevance(ref[0].score), abs=1e-6)


def test_gumbel_relevance_uses_the_wrapped_rerankers_mapping(minilm_path: str) -> None:
    """Bi-encoder scorer: score = scale * cos, relevance = (cos + 1) / 2, not sigmoid(score)."""
    from rag_relax_plugins.rerankers.gumbel import GumbelReranker as GumbelModel
    from rag_relax_plugins.rerankers.gumbel import relevance

    model = GumbelModel("bi", backbone=minilm_path, max_length=32, device="cpu", seed=3)
    out = GumbelReranker(reranker=model, top_n=None).compress_documents(docs(), QUERY)
    scale = float(model.scorer.log_scale.detach().exp())  # type: ignore[union-attr, operator]
    for d in out:
        raw = d.metadata["rerank_score"]
        assert d.metadata["relevance_score"] == pytest.approx((raw / scale + 1) / 2, abs=1e-6)
    raws = [d.metadata["rerank_score"] for d in out]
    assert any(abs(d.metadata["relevance_score"] - relevance(r)) > 0.05 for d, r in zip(out, raws))


def test_gumbel_compressor_wrapping_maxsim_uses_its_mapping() -> None:
    comp = GumbelReranker(reranker=maxsim_model(), top_n=2)
    out = comp.compress_documents(docs(), "capital of france")  # was an AttributeError
    assert len(out) == 2
    for d in out:
        assert d.metadata["relevance_score"] == pytest.approx((d.metadata["rerank_score"] + 1) / 2)


@pytest.mark.parametrize(("cls", "kw"), [(MaxSimReranker, {"model_path": "m"}), (MaxSimReranker, {"device": "cpu"}),
                                         (GumbelReranker, {"model_path": "m"})])
def test_build_fields_beside_a_reranker_instance_are_refused(cls: type, kw: dict[str, object]) -> None:
    """model_path= (or device, batch_size) with reranker= was accepted and silently unused."""
    with pytest.raises(ValueError, match="only build a reranker; with reranker= they would be ignored"):
        cls(reranker=maxsim_model(), **kw)
    with pytest.raises(ValueError, match="batch_size"):
        MaxSimReranker(reranker=maxsim_model(), batch_size=True)  # was taken as 1


def test_top_n_is_checked_on_assignment_too() -> None:
    """c.top_n = 0 was accepted and failed only at the next call."""
    c = RerankerCompressor(reranker=maxsim_model(), top_n=2)
    with pytest.raises(ValueError, match="top_n must be >= 1"):
        c.top_n = 0
    c.top_n = None
    assert len(c.compress_documents(docs(), "cat")) == len(docs())
