"""Documented behaviour of the Gaussian embedder, its geometry, wrappers and prefix cache that hand
mutants changed unnoticed (review 2026-12-05). Each test fails on one mutant and passes on the code."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from rag_relax_plugins.embedders.gaussian import GaussianEmbedder
from rag_relax_plugins.embedders.gaussian_config import GaussianConfig
from rag_relax_plugins.embedders.gaussian_geometry import geometry_scores, relevance_from_scores

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _model(**kw: object) -> GaussianEmbedder:
    base: dict[str, object] = dict(backbone="hashing:64", output_dim=16, dropout=0.0, head_init="random")
    return GaussianEmbedder(GaussianConfig(**{**base, **kw}), device="cpu")  # type: ignore[arg-type]


def test_encode_normalize_gives_unit_rows_in_the_same_directions() -> None:
    model = _model()
    texts = ["a cat sat", "dogs bark loudly", "the stock market fell"]
    raw, unit = model.encode(texts), model.encode(texts, normalize=True)
    assert torch.allclose(unit.norm(dim=1), torch.ones(3), atol=1e-5)
    assert not torch.allclose(raw.norm(dim=1), torch.ones(3), atol=1e-3)  # the raw rows are not unit
    assert torch.allclose(unit, torch.nn.functional.normalize(raw, dim=1), atol=1e-6)


def test_load_refuses_a_head_init_override(tmp_path: Path) -> None:
    path = _model().save(tmp_path / "m")
    with pytest.raises(ValueError, match="cannot override"):
        GaussianEmbedder.load(path, device="cpu", head_init="identity")


def test_relevance_mappings_match_their_documented_anchors() -> None:
    d = 64
    # euclidean: exp(-dist^2 / (2 D)); two independent N(0, I_D) vectors are sqrt(2 D) apart -> exp(-1)
    eu = relevance_from_scores(torch.tensor([0.0, -math.sqrt(2 * d)], dtype=torch.float64), "euclidean", d)
    assert torch.allclose(eu, torch.tensor([1.0, math.exp(-1)], dtype=torch.float64))
    # inner product: sigmoid(score / sqrt(D)); one standard deviation above 0 -> sigmoid(1)
    ip = relevance_from_scores(torch.tensor([0.0, math.sqrt(d)], dtype=torch.float64), "inner_product", d)
    assert torch.allclose(ip, torch.tensor([0.5, 1 / (1 + math.exp(-1))], dtype=torch.float64))


def test_euclidean_scores_are_exact_for_nearby_points() -> None:
    q = torch.full((1, 64), 100.0)
    d = torch.cat([q + 1e-2, q - 2e-2])  # true distances 0.08 and 0.16 (8 = sqrt(64))
    s = geometry_scores(q, d, "euclidean")
    assert torch.allclose(s, torch.tensor([[-0.08, -0.16]]), rtol=1e-3)  # the matmul shortcut cancels


def _recording_model() -> tuple[GaussianEmbedder, list[int]]:
    model = _model()
    seen: list[int] = []
    encode = model.encode

    def recording(texts: list[str], **kw: object) -> torch.Tensor:
        seen.append(kw.get("batch_size", 32))  # type: ignore[arg-type]
        return encode(texts, **kw)  # type: ignore[arg-type]

    model.encode = recording  # type: ignore[method-assign]
    return model, seen


def test_wrappers_pass_their_batch_size_to_the_model() -> None:
    pytest.importorskip("langchain_core")
    pytest.importorskip("llama_index.core")
    from rag_relax_plugins.langchain.embeddings import GaussianEmbeddings
    from rag_relax_plugins.llama_index.embeddings import GaussianEmbedding

    model, seen = _recording_model()
    GaussianEmbeddings(model=model, batch_size=5).embed_documents(["a", "b"])
    assert seen == [5]
    model, seen = _recording_model()
    GaussianEmbedding(model=model, embed_batch_size=7).get_text_embedding_batch(["a", "b"])
    assert seen == [7]


def test_langchain_wrapper_names_the_matching_distance_strategy_and_uses_eval_mode() -> None:
    pytest.importorskip("langchain_core")
    from rag_relax_plugins.langchain.embeddings import GaussianEmbeddings

    for geometry, want in (("euclidean", "EUCLIDEAN_DISTANCE"), ("inner_product", "MAX_INNER_PRODUCT")):
        assert GaussianEmbeddings(model=_model(geometry=geometry)).distance_strategy == want
    assert not GaussianEmbeddings(model=_model(dropout=0.3).train()).model.training


def test_a_prefix_cache_hit_makes_the_text_most_recent(minilm_path: str) -> None:
    torch.manual_seed(0)
    model = GaussianEmbedder(GaussianConfig(output_dim=32, freeze="first_n", freeze_layers=4, dropout=0.0),
                             device="cpu").eval()
    cache = model.enable_prefix_cache(max_texts=2)
    a, b, c = "cats purr softly", "rain is expected tomorrow", "the stock market fell"
    model([a])
    model([b])
    model([a])  # a hit: a is now the most recently used
    model([c])  # evicts b, the least recently used (not a, the first inserted)
    assert (cache.hits, cache.misses) == (1, 3)
    model([a])
    assert (cache.hits, cache.misses) == (2, 3)
