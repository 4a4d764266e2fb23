"""GaussianEmbedding (LlamaIndex) against BaseEmbedding's contract, from the adapter review: unknown
options refused, a model instance named by its content, no shared query/text cache entry when the
two vectors differ, clear errors for non-text input."""

from __future__ import annotations

import pytest
import torch
from llama_index.core import Document
from llama_index.core.ingestion import IngestionCache, IngestionPipeline
from llama_index.core.storage.kvstore import SimpleKVStore

from rag_relax_plugins.embedders.gaussian import GaussianEmbedder
from rag_relax_plugins.embedders.gaussian_config import GaussianConfig
from rag_relax_plugins.llama_index import GaussianEmbedding


def _model(seed: int, geometry: str = "euclidean") -> GaussianEmbedder:
    torch.manual_seed(seed)
    m = GaussianEmbedder(GaussianConfig(backbone="hashing:64", output_dim=16, dropout=0.0, head_init="random",
                                        geometry=geometry), device="cpu")
    return m


@pytest.mark.parametrize("option", [{"query_instrucion": "q: "}, {"document_instruction": "d: "}, {"batch_size": 8}])
def test_unknown_options_are_refused(option: dict) -> None:
    """They were accepted and dropped: vectors without the intended prefix, and no error."""
    with pytest.raises(ValueError, match="Extra inputs are not permitted"):
        GaussianEmbedding(model=_model(0), **option)


def test_two_model_instances_do_not_share_an_ingestion_cache_entry() -> None:
    """Both serialised alike, so an IngestionPipeline cache returned model A's vectors for B."""
    a, b = GaussianEmbedding(model=_model(1)), GaussianEmbedding(model=_model(2, "inner_product"))
    assert a.to_dict() != b.to_dict() and a.model_name.startswith("gaussian-embedder@")
    assert GaussianEmbedding(model=_model(1)).model_name == a.model_name  # the same weights, the same name
    cache = IngestionCache()
    IngestionPipeline(transformations=[a], cache=cache).run(documents=[Document(text="paris", id_="d0")])
    got = IngestionPipeline(transformations=[b], cache=cache).run(documents=[Document(text="paris", id_="d0")])
    assert got[0].embedding == pytest.approx(b.get_text_embedding("paris"))
    assert got[0].embedding != pytest.approx(a.get_text_embedding("paris"))


def test_a_model_retrained_into_the_same_folder_gets_a_new_cache_entry(tmp_path) -> None:
    """Built from model_path, model_name was the folder's path: a model retrained into the same
    folder kept the name, and an IngestionPipeline cache returned the old model's vectors (review)."""
    folder = tmp_path / "best_model"
    _model(1).save(folder)
    old = GaussianEmbedding(model_path=str(folder))
    assert old.model_name.startswith("gaussian-embedder@")
    cache = IngestionCache()
    IngestionPipeline(transformations=[old], cache=cache).run(documents=[Document(text="paris", id_="d0")])
    _model(2).save(folder)  # retrained, same folder
    new = GaussianEmbedding(model_path=str(folder))
    assert new.model_name != old.model_name
    got = IngestionPipeline(transformations=[new], cache=cache).run(documents=[Document(text="paris", id_="d0")])
    assert got[0].embedding == pytest.approx(new.get_text_embedding("paris"))
    assert got[0].embedding != pytest.approx(old.get_text_embedding("paris"))
    # a config saved with the path as its name (before this change) is renamed by content too
    assert GaussianEmbedding.from_dict({**old.to_dict(), "model_name": str(folder)}).model_name == new.model_name
    assert GaussianEmbedding(model_path=str(folder), model_name="mine").model_name == "mine"  # a name you chose stays


def test_a_config_saved_from_an_instance_asks_for_the_model_again() -> None:
    e = GaussianEmbedding(model=_model(1), query_instruction="q: ")
    data = e.to_dict()
    assert data["model_instance"] is True
    with pytest.raises(ValueError, match="pass model= again"):
        GaussianEmbedding.from_dict(data)
    again = GaussianEmbedding.from_dict(data, model=_model(1))
    assert again.get_query_embedding("x") == e.get_query_embedding("x") and again.model_name == e.model_name
    other = GaussianEmbedding.from_dict(data, model=_model(3))
    assert other.model_name != e.model_name  # the saved digest is not kept for another model


def test_embeddings_cache_is_refused_when_query_and_text_vectors_differ() -> None:
    """LlamaIndex caches queries and texts under the raw string: a query equal to an embedded text
    got the text's vector."""
    with pytest.raises(ValueError, match="embeddings_cache is not supported"):
        GaussianEmbedding(model=_model(0), query_instruction="q: ", embeddings_cache=SimpleKVStore())
    with pytest.raises(ValueError, match="embeddings_cache is not supported"):
        GaussianEmbedding(model=_model(0), cosine_max_norm=100.0, embeddings_cache=SimpleKVStore())
    same = GaussianEmbedding(model=_model(0), embeddings_cache=SimpleKVStore())  # identical vectors: allowed
    assert same.get_text_embedding("a b") == same.get_query_embedding("a b")


def test_non_text_input_is_named() -> None:
    e = GaussianEmbedding(model=_model(0))
    with pytest.raises(TypeError, match=r"texts\[1\] must be a str, got NoneType"):
        e.get_text_embedding_batch(["a", None])  # type: ignore[list-item]
    with pytest.raises(TypeError, match="query must be a str, got int"):
        e.get_query_embedding(3)  # type: ignore[arg-type]


async def test_a_non_text_is_named_by_its_place_in_the_whole_batch() -> None:
    """get_text_embedding_batch cuts texts into embed_batch_size batches, and the fourth text was
    named texts[1] (its place in the second batch); one text was named texts[0] (review)."""
    e = GaussianEmbedding(model=_model(0), embed_batch_size=2)
    with pytest.raises(TypeError, match=r"texts\[3\] must be a str, got NoneType"):
        e.get_text_embedding_batch(["a", "b", "c", None])  # type: ignore[list-item]
    with pytest.raises(TypeError, match=r"texts\[3\] must be a str, got NoneType"):
        await e.aget_text_embedding_batch(["a", "b", "c", None])  # type: ignore[list-item]
    with pytest.raises(TypeError, match=r"^text must be a str, got int"):
        e.get_text_embedding(5)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="texts must be a list of str, got a single str"):
        e.get_text_embedding_batch("abc")  # type: ignore[arg-type]
    import json

    bad = json.loads('"q \\ud800"')  # a lone surrogate: named by its place too (review)
    with pytest.raises(ValueError, match=r"^texts\[3\] is not valid Unicode text"):
        e.get_text_embedding_batch(["a", "b", "c", bad])
    with pytest.raises(ValueError, match=r"^query is not valid Unicode text"):
        e.get_query_embedding(bad)
    with pytest.raises(ValueError, match=r"^text is not valid Unicode text"):
        e.get_text_embedding(bad)
    batch = e.get_text_embedding_batch(t for t in ["a", "b", "c"])  # type: ignore[arg-type]
    one = [e.get_text_embedding(t) for t in "abc"]
    assert all(row == pytest.approx(ref, abs=1e-6) for row, ref in zip(batch, one, strict=True))  # matmul rounding


def test_model_dump_round_trip_and_explicit_names() -> None:
    """extra="forbid" refused the class_name that LlamaIndex's model_dump adds; an explicit
    model_name that merely started with "gaussian-embedder" was replaced by the digest."""
    m = _model(4)
    e = GaussianEmbedding(model=m, query_instruction="q: ")
    again = GaussianEmbedding(**e.model_dump(), model=m)
    assert again.model_name == e.model_name and again.query_instruction == "q: "
    named = GaussianEmbedding(model=m, model_name="gaussian-embedder-finetuned-v3")
    assert named.model_name == "gaussian-embedder-finetuned-v3"


def test_an_assignment_is_checked_as_the_constructor_checks_it() -> None:
    """Assignments were not validated: ``emb.embeddings_cache = kv`` beside a query instruction
    brought back the shared query/text cache entry, and ``cosine_max_norm = -1`` was kept."""
    e = GaussianEmbedding(model=_model(0), query_instruction="q: ")
    with pytest.raises(ValueError, match="embeddings_cache is not supported"):
        e.embeddings_cache = SimpleKVStore()
    assert e.embeddings_cache is None  # the refused value is not kept
    cached = GaussianEmbedding(model=_model(0), embeddings_cache=SimpleKVStore())
    with pytest.raises(ValueError, match=r"embeddings_cache is not supported.*set embeddings_cache = None first"):
        cached.query_instruction = "q: "
    assert cached.query_instruction == ""
    cached.embeddings_cache = None  # the way to change both instructions
    cached.query_instruction = cached.text_instruction = "x: "
    cached.embeddings_cache = SimpleKVStore()
    with pytest.raises(ValueError, match="greater than 0"):
        e.cosine_max_norm = -1.0
    assert e.cosine_max_norm is None
    e.cosine_max_norm, e.embed_batch_size = 100.0, 4  # valid assignments still work
    assert len(e.get_query_embedding("x")) == len(e.get_text_embedding("x"))


@pytest.mark.parametrize(("field", "value"), [("model_path", "elsewhere"), ("device", "cpu"), ("model_instance", False)])
def test_fields_read_at_loading_are_frozen(field: str, value: object) -> None:
    """Assigning them after the model was loaded changed nothing but the config."""
    e = GaussianEmbedding(model=_model(0))
    with pytest.raises(ValueError, match="frozen"):
        setattr(e, field, value)


def test_options_are_checked_before_a_model_path_is_loaded(tmp_path) -> None:
    """Today's first version loaded the folder before pydantic saw the options: a misspelt option
    beside a missing folder said "no Gaussian embedder at ..." (review)."""
    with pytest.raises(ValueError, match="Extra inputs are not permitted"):
        GaussianEmbedding(model_path=str(tmp_path / "missing"), query_instrucion="q: ")
